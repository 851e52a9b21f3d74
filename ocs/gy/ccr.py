"""Decoding a Credit-Control-Request (RFC 4006 section 3.1) in full.

This is the general path: every CCR the compiled decoder declines comes
here, and the compiled decoder is tested against it. Grammar violations
raise ProtocolError with the Result-Code and Failed-AVP RFC 6733 section 7
prescribes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..diameter import avp as A
from ..diameter import constants as c
from ..diameter.errors import ProtocolError
from ..diameter.message import Header

AVP_REQUESTED_ACTION = 436
MAX_OCTETS = 2**63 - 1       # the engine's octet columns are int64

_CCR_RULES = {
    c.AVP_SESSION_ID: (1, 1), c.AVP_ORIGIN_HOST: (1, 1), c.AVP_ORIGIN_REALM: (1, 1),
    c.AVP_DESTINATION_REALM: (1, 1), c.AVP_AUTH_APPLICATION_ID: (1, 1),
    c.AVP_SERVICE_CONTEXT_ID: (1, 1), c.AVP_CC_REQUEST_TYPE: (1, 1), c.AVP_CC_REQUEST_NUMBER: (1, 1),
    c.AVP_DESTINATION_HOST: (0, 1), c.AVP_USER_NAME: (0, 1), c.AVP_ORIGIN_STATE_ID: (0, 1),
    c.AVP_EVENT_TIMESTAMP: (0, 1), c.AVP_TERMINATION_CAUSE: (0, 1),
    c.AVP_REQUESTED_SERVICE_UNIT: (0, 1), AVP_REQUESTED_ACTION: (0, 1),
    c.AVP_MULTIPLE_SERVICES_INDICATOR: (0, 1), c.AVP_SERVICE_IDENTIFIER: (0, 1),
}
_MSCC_RULES = {c.AVP_REQUESTED_SERVICE_UNIT: (0, 1), c.AVP_RATING_GROUP: (0, 1)}
_SUBID_RULES = {c.AVP_SUBSCRIPTION_ID_TYPE: (1, 1), c.AVP_SUBSCRIPTION_ID_DATA: (1, 1)}
_UNIT_RULES = {c.AVP_CC_TIME: (0, 1), c.AVP_CC_TOTAL_OCTETS: (0, 1),
               c.AVP_CC_INPUT_OCTETS: (0, 1), c.AVP_CC_OUTPUT_OCTETS: (0, 1)}


@dataclass
class ServiceUnits:
    """One MSCC, or the top-level units of a CCR without MSCC."""
    rating_group: int = -1
    service_ids: list[int] = field(default_factory=list)
    has_rsu: bool = False
    rsu_octets: int = 0
    rsu_time: int = 0
    used: int = -1          # octets reported; -1: no Used-Service-Unit
    used_time: int = 0


@dataclass
class CreditControlRequest:
    header: Header
    session_id: bytes
    origin_host: bytes
    request_type: int
    request_number: int
    subscription_ids: list[tuple[int, bytes]]
    units: list[ServiceUnits]
    top_level: bool           # no MSCC: the units are at the top level (Open5GS style)
    requested_action: int = -1
    proxy_info: bytes = b""   # the Proxy-Info AVPs, echoed in the answer (RFC 6733 6.7.3)
    apn: int = 0              # context for rates: fastccr.apn_key of the Called-Station-Id, 0 absent
    rat: int = -1             # 3GPP-RAT-Type, -1 absent
    plmn: int = -1            # fastccr.plmn_key of 3GPP-SGSN-MCC-MNC, -1 absent


def _context(avps: list[A.RawAvp]) -> tuple[int, int, int]:
    """(apn, rat, plmn) from the first PS-Information of the first
    Service-Information (TS 32.299 7.2.158), the Called-Station-Id at the
    top level when the PS-Information has none."""
    from ..diameter.fastccr import apn_key, plmn_key
    apn, rat, plmn = 0, -1, -1
    si = next((a for a in avps if a.vendor == c.VENDOR_3GPP and a.code == 873), None)
    ps = next((a for a in si.children or [] if a.vendor == c.VENDOR_3GPP and a.code == 874), None) if si else None
    if ps is not None:
        kids = ps.children or []
        x = next((a for a in kids if a.vendor == 0 and a.code == 30), None)
        apn = apn_key(x.data) if x is not None else 0
        x = next((a for a in kids if a.vendor == c.VENDOR_3GPP and a.code == 21), None)
        rat = (x.data[0] if len(x.data) == 1 else -1) if x is not None else -1
        x = next((a for a in kids if a.vendor == c.VENDOR_3GPP and a.code == 18), None)
        plmn = plmn_key(x.data) if x is not None else -1
    if apn == 0:
        x = next((a for a in avps if a.vendor == 0 and a.code == 30), None)
        apn = apn_key(x.data) if x is not None else 0
    return apn, rat, plmn


def _enum(a: A.RawAvp, allowed: range) -> int:
    v = a.u32
    if v not in allowed:
        raise ProtocolError(c.INVALID_AVP_VALUE, f"AVP {a.code} has value {v}", a.raw)
    return v


def _units(a: A.RawAvp) -> tuple[int, int]:
    """(octets, seconds) of a Requested/Used-Service-Unit."""
    got = A.check_occurrences(a.children or [], _UNIT_RULES, f"AVP {a.code}")
    octets = -1
    if c.AVP_CC_TOTAL_OCTETS in got:
        octets = got[c.AVP_CC_TOTAL_OCTETS][0].uint()
    elif c.AVP_CC_INPUT_OCTETS in got or c.AVP_CC_OUTPUT_OCTETS in got:
        octets = sum(got[k][0].uint() for k in (c.AVP_CC_INPUT_OCTETS, c.AVP_CC_OUTPUT_OCTETS) if k in got)
    seconds = got[c.AVP_CC_TIME][0].u32 if c.AVP_CC_TIME in got else 0
    if octets > MAX_OCTETS:
        raise ProtocolError(c.INVALID_AVP_VALUE, f"AVP {a.code} holds {octets} octets, more than 2**63-1", a.raw)
    return octets, seconds


def _service_units(avps: dict[int, list[A.RawAvp]], su: ServiceUnits) -> ServiceUnits:
    if c.AVP_REQUESTED_SERVICE_UNIT in avps:
        su.has_rsu = True
        octets, su.rsu_time = _units(avps[c.AVP_REQUESTED_SERVICE_UNIT][0])
        su.rsu_octets = max(octets, 0)
    for usu in avps.get(c.AVP_USED_SERVICE_UNIT, ()):
        octets, seconds = _units(usu)
        su.used = max(su.used, 0) + max(octets, 0)
        if su.used > c.MAX_REPORTED_OCTETS:
            raise ProtocolError(c.INVALID_AVP_VALUE, f"Used-Service-Unit reports {su.used} octets in one MSCC, "
                                f"more than {c.MAX_REPORTED_OCTETS} (16 TiB)", usu.raw)
        su.used_time += seconds
    su.service_ids = [a.u32 for a in avps.get(c.AVP_SERVICE_IDENTIFIER, ())]
    return su


def decode_ccr(header: Header, frame: bytes, realm: bytes = b"", host: bytes = b"") -> CreditControlRequest:
    """The CCR, validated (RFC 4006 3.1); a ProtocolError carrying the
    answer's Result-Code and Failed-AVP otherwise. A request for another
    realm than `realm`, or another host than `host` (empty: any), gets
    3003 DIAMETER_REALM_NOT_SERVED or 3002 DIAMETER_UNABLE_TO_DELIVER (RFC
    6733 6.1: we serve our realm and host, and relay nothing)."""
    avps = A.walk(frame, c.HEADER_LEN, len(frame))
    got = A.check_occurrences(avps, _CCR_RULES, "CCR")
    if not got[c.AVP_SESSION_ID][0].data:
        raise ProtocolError(c.INVALID_AVP_VALUE, "the Session-Id is empty", got[c.AVP_SESSION_ID][0].raw)
    A.check_identities(got, "CCR")
    dest = got[c.AVP_DESTINATION_REALM][0].data
    if realm and dest.lower() != realm.lower():
        raise ProtocolError(c.REALM_NOT_SERVED, f"realm {dest.decode()} is not served here (we serve "
                            f"{realm.decode()})")
    if host and c.AVP_DESTINATION_HOST in got and got[c.AVP_DESTINATION_HOST][0].data.lower() != host.lower():
        raise ProtocolError(c.UNABLE_TO_DELIVER, f"Destination-Host {got[c.AVP_DESTINATION_HOST][0].data.decode()}"
                            f" is not this server ({host.decode()}), which relays nothing")
    rtype = _enum(got[c.AVP_CC_REQUEST_TYPE][0], range(1, 5))
    app = got[c.AVP_AUTH_APPLICATION_ID][0]
    if app.u32 != c.APP_CREDIT_CONTROL:
        raise ProtocolError(c.INVALID_AVP_VALUE, f"Auth-Application-Id {app.u32} in a CCR", app.raw)
    action = -1
    if AVP_REQUESTED_ACTION in got:
        action = _enum(got[AVP_REQUESTED_ACTION][0], range(0, 4))
    elif rtype == c.EVENT_REQUEST:
        # RFC 4006 3.1: an event request says what it wants (6.1-6.5)
        raise ProtocolError(c.MISSING_AVP, "a CCR-Event needs Requested-Action",
                            A.u32(AVP_REQUESTED_ACTION, c.DIRECT_DEBITING))
    msi = got.get(c.AVP_MULTIPLE_SERVICES_INDICATOR)
    if msi and msi[0].u32 == 0 and c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL in got:
        # RFC 4006 8.40: a client that cannot handle multiple services sends none
        raise ProtocolError(c.CONTRADICTING_AVPS, "Multiple-Services-Indicator MULTIPLE_SERVICES_NOT_SUPPORTED "
                            "with Multiple-Services-Credit-Control", msi[0].raw)
    sub_ids = []
    for s in got.get(c.AVP_SUBSCRIPTION_ID, ()):
        inner = A.check_occurrences(s.children or [], _SUBID_RULES, "Subscription-Id")
        t = _enum(inner[c.AVP_SUBSCRIPTION_ID_TYPE][0], range(0, 5))
        if not inner[c.AVP_SUBSCRIPTION_ID_DATA][0].data:
            raise ProtocolError(c.INVALID_AVP_VALUE, "a Subscription-Id-Data is empty", s.raw)
        sub_ids.append((t, inner[c.AVP_SUBSCRIPTION_ID_DATA][0].data))
    units = []
    for m in got.get(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, ()):
        inner = A.check_occurrences(m.children or [], _MSCC_RULES, "Multiple-Services-Credit-Control")
        rg = inner[c.AVP_RATING_GROUP][0].u32 if c.AVP_RATING_GROUP in inner else -1
        units.append(_service_units(inner, ServiceUnits(rating_group=rg)))
    top_level = not units
    if top_level and (c.AVP_REQUESTED_SERVICE_UNIT in got or c.AVP_USED_SERVICE_UNIT in got):
        units.append(_service_units(got, ServiceUnits()))
    apn, rat, plmn = _context(avps)
    return CreditControlRequest(
        apn=apn, rat=rat, plmn=plmn,
        header=header,
        session_id=got[c.AVP_SESSION_ID][0].data,
        origin_host=got[c.AVP_ORIGIN_HOST][0].data,
        request_type=rtype,
        request_number=got[c.AVP_CC_REQUEST_NUMBER][0].u32,
        subscription_ids=sub_ids,
        units=units,
        top_level=top_level,
        requested_action=action,
        proxy_info=b"".join(a.raw for a in got.get(c.AVP_PROXY_INFO, ())),
    )
