"""A pipelined Gy client for tests, made of python-diameter's messages.

It encodes requests and decodes answers with python-diameter (independent of
our codec), keeps many requests outstanding on one TCP connection, and can
retransmit with the T-flag after a reconnect (RFC 6733 section 5.5.4).
"""
from __future__ import annotations

import itertools

import trio
from diameter.message import Message
from diameter.message.avp.grouped import (MultipleServicesCreditControl, RequestedServiceUnit, SubscriptionId,
                                          UsedServiceUnit)
from diameter.message.commands.capabilities_exchange import CapabilitiesExchangeRequest
from diameter.message.commands.credit_control import CreditControlRequest, PsInformation, ServiceInformation
from diameter.message.commands.device_watchdog import DeviceWatchdogAnswer

CCR_CODE, CER_CODE, DWR_CODE, DPR_CODE, RAR_CODE = 272, 257, 280, 282, 258
_e2e = itertools.count(0x1000)


def build_ccr(origin_host: str, session_id: str, rtype: int, number: int, msisdn: str | None,
              msccs: list[dict], realm: str = "test.example", imsi: str | None = None,
              top: dict | None = None, action: int | None = None, apn: str | None = None,
              rat: int | None = None, plmn: str | None = None) -> CreditControlRequest:
    """A CCR. Each MSCC dict may hold rg (absent: no Rating-Group), rsu (0:
    empty), used, used_time; `top` puts RSU/USU at the top level instead.
    apn, rat and plmn go in Service-Information/PS-Information (TS 32.299)."""
    req = CreditControlRequest()
    req.header.is_request = True
    req.header.is_proxyable = True
    req.header.application_id = 4
    req.header.end_to_end_identifier = next(_e2e) & 0xFFFFFFFF
    req.session_id = session_id
    req.origin_host = origin_host.encode()
    req.origin_realm = realm.encode()
    req.destination_realm = b"localdomain"
    req.auth_application_id = 4
    req.service_context_id = "32251@3gpp.org"
    req.cc_request_type = rtype
    req.cc_request_number = number
    ids = []
    if msisdn:
        ids.append(SubscriptionId(subscription_id_type=0, subscription_id_data=msisdn))
    if imsi:
        ids.append(SubscriptionId(subscription_id_type=1, subscription_id_data=imsi))
    if ids:
        req.subscription_id = ids
    if action is not None:
        req.requested_action = action
    for m in msccs:
        x = MultipleServicesCreditControl()
        if "rg" in m:
            x.rating_group = m["rg"]
        if m.get("rsu") is not None:
            x.requested_service_unit = RequestedServiceUnit(cc_total_octets=m["rsu"]) if m["rsu"] else RequestedServiceUnit()
        if m.get("used") is not None or m.get("used_time"):
            x.used_service_unit = [_used(m)]
        req.multiple_services_credit_control.append(x)
    if apn is not None or rat is not None or plmn is not None:
        ps = PsInformation()
        if apn is not None:
            ps.called_station_id = apn
        if rat is not None:
            ps.tgpp_rat_type = bytes([rat])
        if plmn is not None:
            ps.tgpp_sgsn_mcc_mnc = plmn
        req.service_information = ServiceInformation(ps_information=ps)
    if top:
        if top.get("rsu") is not None:
            req.requested_service_unit = RequestedServiceUnit(cc_total_octets=top["rsu"]) if top["rsu"] else RequestedServiceUnit()
        if top.get("used") is not None:
            req.used_service_unit = [_used(top)]
    return req


def _used(m: dict) -> UsedServiceUnit:
    u = UsedServiceUnit()
    if m.get("used") is not None:
        u.cc_total_octets = m["used"]
    if m.get("used_time"):
        u.cc_time = m["used_time"]
    return u


class GyConnection:
    """One peer connection; `request()` may be called from many tasks at once."""

    def __init__(self, origin_host: str = "pgw.raw.example", realm: str = "test.example"):
        self.origin_host = origin_host
        self.realm = realm
        self.stream: trio.SocketStream | None = None
        self._waiting: dict[int, trio.MemorySendChannel] = {}
        self._hbh = itertools.count(1)
        self.closed = trio.Event()
        self._send_lock = trio.StrictFIFOLock()
        self.held = False
        self.dpr_seen = False
        # Re-Auth-Requests received: each is answered with `raa_result` (None:
        # not answered, as a gateway that lost it) and its Message is sent here
        self.raa_result: int | None = 2001
        self.rars_in, self.rars = trio.open_memory_channel(float("inf"))

    def hold_answers(self) -> None:
        """Stop taking answers off the socket: what the server sends from now
        on stays unread, as if lost with the connection."""
        self.held = True

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(data)

    async def connect(self, port: int, nursery: trio.Nursery) -> None:
        self.stream = await trio.open_tcp_stream("127.0.0.1", port)
        cer = CapabilitiesExchangeRequest()
        cer.header.is_request = True
        cer.header.hop_by_hop_identifier = next(self._hbh)
        cer.header.end_to_end_identifier = next(_e2e)
        cer.origin_host = self.origin_host.encode()
        cer.origin_realm = self.realm.encode()
        cer.host_ip_address = ["127.0.0.1"]
        cer.vendor_id = 0
        cer.product_name = "rawclient"
        cer.auth_application_id = [4]
        await self.stream.send_all(cer.as_bytes())
        self.closed = trio.Event()
        buf = bytearray()
        while True:
            frame, buf = await self._read_frame(buf)
            msg = Message.from_bytes(frame)
            if msg.header.command_code == CER_CODE:
                assert msg.result_code == 2001, f"CEA {msg.result_code}"
                break
        nursery.start_soon(self._reader, buf)

    async def _read_frame(self, buf: bytearray):
        while True:
            if len(buf) >= 4:
                n = int.from_bytes(buf[1:4], "big")
                if len(buf) >= n:
                    return bytes(buf[:n]), buf[n:]
            data = await self.stream.receive_some(1 << 16)
            if not data:
                raise trio.BrokenResourceError("connection closed")
            buf += data

    async def _reader(self, buf: bytearray) -> None:
        try:
            while True:
                frame, buf = await self._read_frame(buf)
                if self.held:
                    await trio.sleep_forever()
                msg = Message.from_bytes(frame)
                if msg.header.is_request and msg.header.command_code == DPR_CODE:
                    self.dpr_seen = True
                    await self._send(_dpa(msg, self.origin_host, self.realm))
                    continue
                if msg.header.is_request and msg.header.command_code == DWR_CODE:
                    dwa = DeviceWatchdogAnswer()
                    dwa.header.hop_by_hop_identifier = msg.header.hop_by_hop_identifier
                    dwa.header.end_to_end_identifier = msg.header.end_to_end_identifier
                    dwa.result_code = 2001
                    dwa.origin_host = self.origin_host.encode()
                    dwa.origin_realm = self.realm.encode()
                    await self._send(dwa.as_bytes())
                    continue
                if msg.header.is_request and msg.header.command_code == RAR_CODE:
                    if self.raa_result is not None:
                        await self._send(_raa(msg, self.origin_host, self.realm, self.raa_result))
                    self.rars_in.send_nowait(msg)
                    continue
                ch = self._waiting.pop(msg.header.hop_by_hop_identifier, None)
                if ch is not None:
                    ch.send_nowait(msg)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.closed.set()
            for ch in self._waiting.values():
                ch.close()
            self._waiting.clear()

    async def request(self, req: Message, retransmit: bool = False) -> Message | None:
        """Send and wait for the answer; None if the connection dies first."""
        if self.closed.is_set():
            return None
        req.header.hop_by_hop_identifier = next(self._hbh) & 0xFFFFFFFF
        req.header.is_retransmit = retransmit
        send, recv = trio.open_memory_channel(1)
        self._waiting[req.header.hop_by_hop_identifier] = send
        try:
            await self._send(req.as_bytes())
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._waiting.pop(req.header.hop_by_hop_identifier, None)
            return None
        try:
            return await recv.receive()
        except trio.EndOfChannel:
            return None

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


def _dpa(dpr: Message, host: str, realm: str) -> bytes:
    from diameter.message.commands.disconnect_peer import DisconnectPeerAnswer
    dpa = DisconnectPeerAnswer()
    dpa.header.hop_by_hop_identifier = dpr.header.hop_by_hop_identifier
    dpa.header.end_to_end_identifier = dpr.header.end_to_end_identifier
    dpa.result_code = 2001
    dpa.origin_host = host.encode()
    dpa.origin_realm = realm.encode()
    return dpa.as_bytes()


def _raa(rar: Message, host: str, realm: str, result: int) -> bytes:
    from diameter.message.commands.re_auth import ReAuthAnswer
    raa = ReAuthAnswer()
    raa.header.application_id = 4
    raa.header.is_proxyable = True
    raa.header.hop_by_hop_identifier = rar.header.hop_by_hop_identifier
    raa.header.end_to_end_identifier = rar.header.end_to_end_identifier
    raa.session_id = rar.session_id
    raa.result_code = result
    raa.origin_host = host.encode()
    raa.origin_realm = realm.encode()
    return raa.as_bytes()


def mscc_values(answer: Message) -> dict[int, dict]:
    """Per rating group: result, granted octets, validity, and the
    Final-Unit-Indication: action (None: absent) and Filter-Ids."""
    out = {}
    for m in answer.multiple_services_credit_control or []:
        gsu = m.granted_service_unit
        fui = m.final_unit_indication
        filters = [f.decode() if isinstance(f, bytes) else f for f in (fui.filter_id or [])] if fui else []
        out[m.rating_group] = {"result": m.result_code,
                               "granted": gsu.cc_total_octets if gsu is not None else None,
                               "validity": m.validity_time,
                               "fui": fui.final_unit_action if fui is not None else None,
                               "filters": filters}
    return out
