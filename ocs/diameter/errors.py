"""Protocol errors carry the answer the peer should get (RFC 6733 section 7).

Only the edge (the peer connection) turns them into answers; 3xxx answers
carry the E-bit (section 7.1.3), 5xxx are ordinary answers with a Result-Code.
"""
from __future__ import annotations


class ProtocolError(Exception):
    """A request that must be answered with `result_code`.

    `failed_avp` is the encoded AVP (or AVPs) to place inside Failed-AVP, per
    RFC 6733 section 7.5: the offending AVP, or for a missing AVP one with the
    missing code and a minimal value.
    """

    def __init__(self, result_code: int, message: str, failed_avp: bytes = b""):
        super().__init__(message)
        self.result_code = result_code
        self.message = message
        self.failed_avp = failed_avp

    @property
    def e_bit(self) -> bool:
        return 3000 <= self.result_code < 4000


class FramingError(Exception):
    """The byte stream cannot be split into messages; the connection must close."""
