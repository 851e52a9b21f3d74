"""split_frames: whole messages, and which of them are not plain Gy
requests (those go through the peer's state machine); Frames, the batch's
messages in one buffer."""
import pytest

from ocs.diameter import constants as c
from ocs.diameter.errors import FramingError
from ocs.diameter.message import Frames, split_frames


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
    assert list(frames) == [message(), frame, message()] and used == len(buf)
    assert [frames[i] for i in range(-3, 3)] == [message(), frame, message()] * 2
    assert others == ([] if plain else [1])


def test_a_partial_message_waits_and_a_bad_length_is_refused():
    whole = message()
    frames, used, others = split_frames(bytearray(whole + whole[:7]))
    assert (list(frames), used, others) == ([whole], len(whole), [])
    frames, used, others = split_frames(bytearray(whole[:3]))
    assert (list(frames), used, others) == ([], 0, [])
    with pytest.raises(FramingError):
        split_frames(bytearray(b"\x01\x00\x00\x08" + bytes(16)))


def test_frames_joined_keep_every_message():
    a, b, c3 = message(), message(body=b"\1" * 12), message(body=b"\2" * 4)
    joined = Frames.join([Frames.of([a, b]), Frames.of([]), Frames.of([c3])])
    assert list(joined) == [a, b, c3] and len(joined) == 3
    assert joined.starts.tolist() == [0, len(a), len(a) + len(b)]
    assert joined.ends.tolist() == [len(a), len(a) + len(b), len(a) + len(b) + len(c3)]
