"""split_frames: whole messages, and which of them are not plain Gy
requests (those go through the peer's state machine)."""
import pytest

from ocs.diameter import constants as c
from ocs.diameter.errors import FramingError
from ocs.diameter.message import split_frames


def message(version=1, flags=0x80, code=c.CMD_CREDIT_CONTROL, app=c.APP_CREDIT_CONTROL, body=b"\0" * 8, pad=True):
    length = 20 + len(body)
    return (bytes([version]) + length.to_bytes(3, "big") + bytes([flags]) + code.to_bytes(3, "big")
            + app.to_bytes(4, "big") + (1).to_bytes(4, "big") + (2).to_bytes(4, "big") + body)


@pytest.mark.parametrize("frame, plain", [
    (message(), True),
    (message(flags=0xC0), True),                        # P-bit: still a plain request
    (message(flags=0xA0), False),                       # E-bit on a request
    (message(flags=0x81), False),                       # a reserved bit
    (message(flags=0x00), False),                       # an answer (an RAA)
    (message(code=c.CMD_CAPABILITIES_EXCHANGE, app=0), False),
    (message(app=16777238), False),                     # another application
    (message(version=2), False),
    (message(body=b"\0" * 6), False),                   # length not a multiple of 4
])
def test_plain_gy_requests_are_told_apart(frame, plain):
    buf = bytearray(message() + frame + message())
    frames, used, others = split_frames(buf)
    assert frames == [message(), frame, message()] and used == len(buf)
    assert others == ([] if plain else [1])


def test_a_partial_message_waits_and_a_bad_length_is_refused():
    whole = message()
    assert split_frames(bytearray(whole + whole[:7])) == ([whole], len(whole), [])
    assert split_frames(bytearray(whole[:3])) == ([], 0, [])
    with pytest.raises(FramingError):
        split_frames(bytearray(b"\x01\x00\x00\x08" + bytes(16)))
