"""A small Gy server that answers correctly except for one chosen fault.

The harness must judge it failing for every fault but "none" and "dwr":
a load test that cannot fail proves nothing. Answers follow RFC 4006
section 3.2: Session-Id, Result-Code, CC-Request-Type/-Number echoed, one
MSCC per requested rating group with a grant of `grant` octets (less when
the Requested-Service-Unit asks for less), none in the CCA-T.
"""
from __future__ import annotations

import functools

import trio

from loadtest import codec
from ocs.diameter.constants import (AVP_AUTH_APPLICATION_ID, AVP_CC_REQUEST_NUMBER,
                                    AVP_CC_REQUEST_TYPE, AVP_CC_TOTAL_OCTETS,
                                    AVP_GRANTED_SERVICE_UNIT,
                                    AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, AVP_RATING_GROUP,
                                    AVP_RESULT_CODE, AVP_SESSION_ID, CMD_CREDIT_CONTROL)

FAULTS = ("none", "session-id", "request-number", "result-code", "over-grant",
          "missing-mscc", "silent", "dwr", "dpr")
HOST, REALM = "faulty.ocs.example", "ocs.example"


def answer(ccr: codec.Answer, fault: str, grant: int, hbh: int, e2e: int) -> bytes:
    sid = ccr.session_id + ("x" if fault == "session-id" else "")
    reqno = ccr.request_number + (1 if fault == "request-number" else 0)
    avps = [codec.avp_str(AVP_SESSION_ID, sid),
            codec.avp_u32(AVP_RESULT_CODE, 5012 if fault == "result-code" else 2001),
            codec.avp_str(codec.AVP_ORIGIN_HOST, HOST),
            codec.avp_str(codec.AVP_ORIGIN_REALM, REALM),
            codec.avp_u32(AVP_AUTH_APPLICATION_ID, codec.APP_CREDIT_CONTROL),
            codec.avp_u32(AVP_CC_REQUEST_TYPE, ccr.request_type),
            codec.avp_u32(AVP_CC_REQUEST_NUMBER, reqno)]
    if ccr.request_type != codec.TERMINATE:
        msccs = ccr.msccs[:-1] if fault == "missing-mscc" else ccr.msccs
        octets = 100 << 20 if fault == "over-grant" else grant  # the scenarios ask for 10 MB
        avps += [codec.avp_group(
            AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
            codec.avp_group(AVP_GRANTED_SERVICE_UNIT, codec.avp_u64(AVP_CC_TOTAL_OCTETS, octets)),
            codec.avp_u32(AVP_RATING_GROUP, m.rating_group),
            codec.avp_u32(AVP_RESULT_CODE, 2001)) for m in msccs]
    return codec.encode_message(CMD_CREDIT_CONTROL, codec.FLAG_PROXYABLE,
                                codec.APP_CREDIT_CONTROL, hbh, e2e, avps)


async def handle(stream: trio.SocketStream, fault: str, grant: int) -> None:
    buf = bytearray()
    answered = 0
    async with stream:
        try:
            while True:
                data = await stream.receive_some(1 << 16)
                if not data:
                    return
                buf += data
                frames, used = codec.split_frames(buf)
                out = []
                for start, end in frames:
                    msg = codec.parse_answer(bytes(buf[start:end]))
                    if not msg.is_request:
                        continue  # the DWA to our DWR
                    if msg.command == codec.CMD_CAPABILITIES_EXCHANGE:
                        out.append(codec.encode_cea(HOST, REALM, msg.hop_by_hop, msg.end_to_end))
                        if fault == "dwr":
                            out.append(codec.encode_message(
                                codec.CMD_DEVICE_WATCHDOG, codec.FLAG_REQUEST, 0, 7, 7,
                                [codec.avp_str(codec.AVP_ORIGIN_HOST, HOST),
                                 codec.avp_str(codec.AVP_ORIGIN_REALM, REALM)]))
                    elif msg.command == codec.CMD_DISCONNECT_PEER:
                        out.append(codec.encode_dpa(HOST, REALM, msg.hop_by_hop, msg.end_to_end))
                    elif msg.command == CMD_CREDIT_CONTROL and fault != "silent":
                        out.append(answer(msg, fault, grant, msg.hop_by_hop, msg.end_to_end))
                        answered += 1
                        if fault == "dpr" and answered == 50:
                            out.append(codec.encode_dpr(HOST, REALM, 9, 9))
                del buf[:used]
                if out:
                    await stream.send_all(b"".join(out))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def serve(fault: str, grant: int = 1 << 20, *, task_status=trio.TASK_STATUS_IGNORED):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners,
                            functools.partial(handle, fault=fault, grant=grant), listeners)
        task_status.started(listeners[0].socket.getsockname()[1])
