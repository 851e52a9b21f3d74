"""The protocol's numbers the engine decides with, named once (RFC 6733
section 7.1, RFC 4006 sections 8.3, 8.41 and 9). The kernels compare and
store them as integers (numba reads IntEnum members as constants); the
codec and gy use them through `ocs.diameter.constants`. A leaf module: it
imports nothing of ocs, so engine and diameter both stand above it."""
from __future__ import annotations

from enum import IntEnum


class RequestType(IntEnum):
    """CC-Request-Type (RFC 4006 8.3)."""
    INITIAL = 1
    UPDATE = 2
    TERMINATION = 3
    EVENT = 4


class RequestedAction(IntEnum):
    """Requested-Action of a CCR-Event (RFC 4006 8.41)."""
    DIRECT_DEBITING = 0
    REFUND_ACCOUNT = 1
    CHECK_BALANCE = 2
    PRICE_ENQUIRY = 3


class ResultCode(IntEnum):
    """Result-Code values the server sends (RFC 6733 7.1, RFC 4006 9)."""
    SUCCESS = 2001
    COMMAND_UNSUPPORTED = 3001
    UNABLE_TO_DELIVER = 3002
    REALM_NOT_SERVED = 3003
    TOO_BUSY = 3004
    APPLICATION_UNSUPPORTED = 3007
    INVALID_HDR_BITS = 3008
    INVALID_AVP_BITS = 3009
    UNKNOWN_PEER = 3010
    END_USER_SERVICE_DENIED = 4010
    CREDIT_LIMIT_REACHED = 4012
    AVP_UNSUPPORTED = 5001
    UNKNOWN_SESSION_ID = 5002
    AUTHORIZATION_REJECTED = 5003
    INVALID_AVP_VALUE = 5004
    MISSING_AVP = 5005
    RESOURCES_EXCEEDED = 5006
    CONTRADICTING_AVPS = 5007
    AVP_OCCURS_TOO_MANY_TIMES = 5009
    NO_COMMON_APPLICATION = 5010
    UNSUPPORTED_VERSION = 5011
    UNABLE_TO_COMPLY = 5012
    INVALID_AVP_LENGTH = 5014
    INVALID_MESSAGE_LENGTH = 5015
    USER_UNKNOWN = 5030
    RATING_FAILED = 5031
