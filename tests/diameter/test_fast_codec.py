"""The compiled CCR decoder and CCA encoder against the full path (DESIGN.md,
"Throughput comes from batches").

`fastccr.decode_batch` must extract exactly what `ocs.gy.ccr.decode_ccr`
extracts from every CCR it does not flag `fallback`, and must flag every CCR
the full path refuses: whatever the fast path does not handle goes to the
full path, never a wrong answer. python-diameter's own decoder reads the same
basic values. `fastcca.encode_batch` must give, byte for byte, the answer
`ocs.gy.answers.Answers.full` builds from the same engine output,
and python-diameter must read it back.

CCRs are built with python-diameter's `Avp` from an editable tree, so that a
mutation (RFC 6733 section 7 errors, RFC 4006 grammar errors) can be applied
anywhere before the bytes are made; what python-diameter will not encode
(bad lengths, a V-bit with Vendor-Id 0) is packed by hand.
"""
from __future__ import annotations

import copy
import datetime
import struct
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
from diameter.message import Message
from diameter.message.avp import Avp
from diameter.message.avp.avp import get_avp_dictionary_entry
from diameter.message.commands.credit_control import CreditControlAnswer, CreditControlRequest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from ocs.diameter import constants as c
from ocs.diameter import fastcca, fastccr
from ocs.diameter.avp import MAX_NESTING
from ocs.diameter.errors import ProtocolError
from ocs.diameter.message import parse_header
from ocs.diameter.peer import LocalIdentity
from ocs.engine.tables import MSCC, REQUEST
from ocs.gy.answers import Answers
from ocs.gy.ccr import decode_ccr
from ocs.subscriber import subscriber_key

TGPP = c.VENDOR_3GPP
PER_FRAME = 4                  # decode_batch's default MSCC rows per frame
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT64_MAX = 2**63 - 1


# ------------------------------------------------------------ building CCRs

@dataclass
class Group:
    """A grouped AVP whose children stay editable until `build`."""
    code: int
    vendor: int = 0
    children: list = field(default_factory=list)
    extra_flags: int = 0

    def build(self) -> Avp:
        a = Avp.new(self.code, self.vendor, value=[build(ch) for ch in self.children])
        a.flags |= self.extra_flags
        return a


class RawAvp(Avp):
    """Bytes python-diameter will not produce, placed as they are."""

    def __init__(self, data: bytes):
        super().__init__()
        self.data = data

    def as_packed(self, packer):
        packer.pack_fopaque(len(self.data), self.data)
        return packer


def build(node) -> Avp:
    return node.build() if isinstance(node, Group) else node


def avp_bytes(node) -> bytes:
    return build(node).as_bytes()


def frame(nodes, flags=0xC0, hbh=0x01020304, e2e=0xA0B0C0D0) -> bytes:
    body = b"".join(avp_bytes(n) for n in nodes)
    return struct.pack(">IIIII", (1 << 24) | (20 + len(body)), (flags << 24) | c.CMD_CREDIT_CONTROL,
                       c.APP_CREDIT_CONTROL, hbh, e2e) + body


def raw_u32(code: int, value: int) -> Avp:
    """An Unsigned32-sized AVP with any value (Integer32 enums included)."""
    return Avp(code, 0, struct.pack(">I", value), 0x40)


def unknown_code(vendor: int):
    gaps = [code for code in range(1, 3000) if get_avp_dictionary_entry(code, vendor) is None][:300]
    return st.one_of(st.sampled_from(gaps), st.integers(3000, 2**32 - 1)).filter(
        lambda code: get_avp_dictionary_entry(code, vendor) is None)


@st.composite
def unknown_avps(draw, mandatory=False):
    vendor = draw(st.sampled_from([0, TGPP, 99999]))
    payload = draw(st.binary(max_size=11))
    return Avp(draw(unknown_code(vendor)), vendor, payload, 0x40 if mandatory else 0)


u32 = st.integers(0, 2**32 - 1)
octets = st.integers(0, 2**60)          # four of them still fit an int64
# what an MSCC's Used-Service-Units may report in all: at most 2**44 (constants.MAX_REPORTED_OCTETS)
used_octets_values = st.integers(0, 2**41)
utf8 = st.text(st.characters(codec="utf-8"), max_size=24)
identity = st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,30}", fullmatch=True).map(str.encode)
digits = st.one_of(st.text("0123456789", max_size=18),      # and the length limits exactly:
                   st.sampled_from([1, 15, 16]).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)))


def few(usual: int, rarely: int):
    """A list bound: mostly `usual`, sometimes `rarely` (shapes the fast path may decline)."""
    return st.sampled_from([usual] * 5 + [rarely])


@st.composite
def units(draw, code):
    """A Requested- or Used-Service-Unit: empty, total, time, input/output, or a mix."""
    kids = []
    for avp_code in (c.AVP_CC_TOTAL_OCTETS, c.AVP_CC_INPUT_OCTETS, c.AVP_CC_OUTPUT_OCTETS):
        if draw(st.booleans()):
            kids.append(Avp.new(avp_code, value=draw(used_octets_values if code == c.AVP_USED_SERVICE_UNIT
                                                     else octets)))
    if draw(st.booleans()):
        kids.append(Avp.new(c.AVP_CC_TIME, value=draw(u32)))
    if draw(st.booleans()):
        kids.append(Avp.new(c.AVP_CC_SERVICE_SPECIFIC_UNITS, value=draw(octets)))
    if code == c.AVP_USED_SERVICE_UNIT and draw(st.booleans()):
        kids.append(Avp.new(872, TGPP, value=draw(st.integers(0, 10))))     # Reporting-Reason
    if draw(st.booleans()):
        kids.append(draw(unknown_avps()))
    return Group(code, children=draw(st.permutations(kids)))


@st.composite
def msccs(draw):
    kids = []
    if draw(st.booleans()):
        kids.append(Avp.new(c.AVP_RATING_GROUP, value=draw(u32)))
    if draw(st.booleans()):
        kids.append(draw(units(c.AVP_REQUESTED_SERVICE_UNIT)))
    kids += draw(st.lists(units(c.AVP_USED_SERVICE_UNIT), max_size=2))
    kids += [Avp.new(c.AVP_SERVICE_IDENTIFIER, value=v) for v in draw(st.lists(u32, max_size=draw(few(1, 2))))]
    if draw(st.booleans()):
        kids.append(Avp.new(872, TGPP, value=draw(st.integers(0, 10))))     # Reporting-Reason
    kids += draw(st.lists(unknown_avps(), max_size=1))
    return Group(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, children=draw(st.permutations(kids)))


@st.composite
def subscription_ids(draw):
    # an empty Subscription-Id-Data is refused (5004): a valid CCR names someone
    data = draw(st.one_of(digits, st.text("0123456789/:+#a \u0663", max_size=16), utf8).filter(bool))
    kids = [Avp.new(c.AVP_SUBSCRIPTION_ID_TYPE, value=draw(st.integers(0, 4))),
            Avp.new(c.AVP_SUBSCRIPTION_ID_DATA, value=data)]
    kids += draw(st.lists(unknown_avps(), max_size=1))
    return Group(c.AVP_SUBSCRIPTION_ID, children=draw(st.permutations(kids)))


apns = st.one_of(st.sampled_from(["cmnet", "CMWAP", "cmnet.mnc000.mcc460.gprs", "internet.MNC01.mcc310.gprs",
                                  ".mnc", "", "a.mn"]), utf8)


@st.composite
def ps_information(draw):
    """PS-Information (TS 32.299): the context rates match on."""
    kids = []
    for _ in range(draw(st.integers(0, 2))):
        kids.append(Avp.new(30, value=draw(apns)))                                      # Called-Station-Id
    for _ in range(draw(st.integers(0, 2))):
        kids.append(Avp.new(21, TGPP, value=draw(st.binary(min_size=0, max_size=2))))   # 3GPP-RAT-Type
    for _ in range(draw(st.integers(0, 2))):
        kids.append(Avp.new(18, TGPP, value=draw(st.sampled_from(["46000", "310260", "4600", "46a00", ""]))))
    kids += draw(st.lists(unknown_avps(), max_size=1))
    return Group(874, TGPP, draw(st.permutations(kids)))


@dataclass
class Shape:
    """What a generated CCR holds that the fast path may decline (legal but rare)."""
    rare: bool
    rows: int                    # MSCC rows the fast decoder needs


@st.composite
def ccrs(draw):
    """A valid CCR (RFC 4006 section 3.1) as an editable AVP list, and its shape."""
    nodes = [Avp.new(c.AVP_SESSION_ID, value=draw(utf8.filter(bool))),     # empty: 5004
             Avp.new(c.AVP_ORIGIN_HOST, value=draw(identity)),
             Avp.new(c.AVP_ORIGIN_REALM, value=draw(identity)),
             Avp.new(c.AVP_DESTINATION_REALM, value=draw(identity)),
             Avp.new(c.AVP_AUTH_APPLICATION_ID, value=c.APP_CREDIT_CONTROL),
             Avp.new(c.AVP_SERVICE_CONTEXT_ID, value=draw(st.sampled_from(["32251@3gpp.org", "x", ""]))),
             Avp.new(c.AVP_CC_REQUEST_TYPE, value=draw(st.integers(1, 4))),
             Avp.new(c.AVP_CC_REQUEST_NUMBER, value=draw(u32))]
    optional = {
        c.AVP_DESTINATION_HOST: identity, c.AVP_USER_NAME: utf8, c.AVP_ORIGIN_STATE_ID: u32,
        c.AVP_EVENT_TIMESTAMP: st.datetimes(datetime.datetime(1970, 1, 2), datetime.datetime(2100, 1, 1)),
        c.AVP_TERMINATION_CAUSE: st.integers(1, 8), c.AVP_MULTIPLE_SERVICES_INDICATOR: st.integers(0, 1),
        c.AVP_SERVICE_IDENTIFIER: u32, 436: st.integers(0, 3),      # Requested-Action
    }
    subs = draw(st.lists(subscription_ids(), max_size=draw(few(fastccr.MAX_SUB_IDS, 6))))
    groups = draw(st.lists(msccs(), max_size=draw(few(PER_FRAME, 6))))
    event = nodes[6].value == c.EVENT_REQUEST
    for code, values in optional.items():
        # an event names its Requested-Action (5005 otherwise); MSCCs need MSI, if present, SUPPORTED (5007)
        if (code == 436 and event) or draw(st.booleans()):
            value = draw(values)
            if code == c.AVP_MULTIPLE_SERVICES_INDICATOR and groups:
                value = 1
            nodes.append(Avp.new(code, value=value))
    nodes += subs + groups
    # top-level units (Open5GS style); beside MSCCs both paths ignore them
    top_units = []
    if draw(st.booleans()):
        top_units.append(draw(units(c.AVP_REQUESTED_SERVICE_UNIT)))
    top_units += draw(st.lists(units(c.AVP_USED_SERVICE_UNIT), max_size=2))
    nodes += top_units
    if draw(st.booleans()):
        nodes.append(Avp.new(21, TGPP, value=bytes([draw(st.integers(0, 255))])))    # 3GPP-RAT-Type
    if draw(st.booleans()):
        nodes.append(Avp.new(30, value=draw(apns)))                                 # Called-Station-Id, top level
    for _ in range(draw(st.sampled_from([0, 1, 1, 2]))):                           # Service-Information
        nodes.append(Group(873, TGPP, [draw(ps_information()) for _ in range(draw(st.integers(0, 2)))]
                           + draw(st.lists(unknown_avps(), max_size=1))))
    nodes += draw(st.lists(unknown_avps(), max_size=2))
    # a relay's Proxy-Info, to be echoed (RFC 6733 6.7.3): the full path's job
    proxies = draw(st.lists(st.builds(lambda host, state: Group(c.AVP_PROXY_INFO, children=[
        Avp.new(280, value=host), Avp.new(33, value=state)]), identity, st.binary(max_size=9)),
        max_size=draw(few(0, 2))))
    nodes = draw(st.permutations(nodes + proxies))
    n_si = [sum(1 for k in g.children if getattr(k, "code", None) == c.AVP_SERVICE_IDENTIFIER) for g in groups]
    rows = len(groups) or (1 if top_units else 0)
    rare = len(subs) > fastccr.MAX_SUB_IDS or any(n > 1 for n in n_si) or bool(proxies)
    return nodes, Shape(rare=rare, rows=rows)


# ------------------------------------------------------------ corrupting CCRs

_ONCE = {c.AVP_SESSION_ID, c.AVP_ORIGIN_HOST, c.AVP_ORIGIN_REALM, c.AVP_DESTINATION_REALM,
         c.AVP_AUTH_APPLICATION_ID, c.AVP_SERVICE_CONTEXT_ID, c.AVP_CC_REQUEST_TYPE, c.AVP_CC_REQUEST_NUMBER,
         c.AVP_DESTINATION_HOST, c.AVP_USER_NAME, c.AVP_ORIGIN_STATE_ID, c.AVP_EVENT_TIMESTAMP,
         c.AVP_TERMINATION_CAUSE, c.AVP_REQUESTED_SERVICE_UNIT, 436, c.AVP_MULTIPLE_SERVICES_INDICATOR,
         c.AVP_SERVICE_IDENTIFIER}
_REQUIRED = [c.AVP_SESSION_ID, c.AVP_ORIGIN_HOST, c.AVP_ORIGIN_REALM, c.AVP_DESTINATION_REALM,
             c.AVP_AUTH_APPLICATION_ID, c.AVP_SERVICE_CONTEXT_ID, c.AVP_CC_REQUEST_TYPE, c.AVP_CC_REQUEST_NUMBER]
_SINGLE_IN = {None: _ONCE,
              c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL: {c.AVP_RATING_GROUP, c.AVP_REQUESTED_SERVICE_UNIT},
              c.AVP_REQUESTED_SERVICE_UNIT: {c.AVP_CC_TOTAL_OCTETS, c.AVP_CC_INPUT_OCTETS,
                                             c.AVP_CC_OUTPUT_OCTETS, c.AVP_CC_TIME},
              c.AVP_SUBSCRIPTION_ID: {c.AVP_SUBSCRIPTION_ID_TYPE, c.AVP_SUBSCRIPTION_ID_DATA}}
_SINGLE_IN[c.AVP_USED_SERVICE_UNIT] = _SINGLE_IN[c.AVP_REQUESTED_SERVICE_UNIT]
_FIXED = {"AvpUnsigned32": 4, "AvpInteger32": 4, "AvpTime": 4, "AvpFloat32": 4,
          "AvpUnsigned64": 8, "AvpInteger64": 8, "AvpFloat64": 8}


def containers(nodes, depth=0, parent=None):
    """(children list, walk depth, parent code) for the message and every group in it."""
    yield nodes, depth, parent
    for n in nodes:
        if isinstance(n, Group):
            yield from containers(n.children, depth + 1, n.code)


def places(nodes):
    """(list, index, node, parent code, walk depth) of every AVP."""
    return [(lst, i, n, parent, depth) for lst, depth, parent in containers(nodes) for i, n in enumerate(lst)]


def with_length(raw: bytes, length: int) -> RawAvp:
    return RawAvp(raw[:5] + length.to_bytes(3, "big") + raw[8:])


def vendor_zero(node) -> RawAvp:
    """The same AVP with the V-bit set and Vendor-Id 0 (RFC 6733 4.1.1 forbids it)."""
    raw = avp_bytes(node)
    length = int.from_bytes(raw[5:8], "big") + 4
    return RawAvp(raw[:4] + bytes([raw[4] | 0x80]) + length.to_bytes(3, "big") + b"\0\0\0\0" + raw[8:])


@st.composite
def corrupt_ccrs(draw):
    """A CCR with one mutation, and whether the full path must refuse it
    (None: it may or may not; only the differential holds)."""
    nodes, _ = draw(ccrs())
    kind = draw(st.sampled_from(["unknown_m", "reserved_bits", "short_length", "long_length", "shifted_length",
                                 "fixed_size", "trailing", "duplicate", "missing", "deep", "bad_value",
                                 "huge_octets", "vendor_zero", "header_bits"]))
    flags = 0xC0
    must_fail = True
    if kind == "unknown_m":
        lst, _, _ = draw(st.sampled_from(list(containers(nodes))))
        lst.insert(draw(st.integers(0, len(lst))), draw(unknown_avps(mandatory=True)))
    elif kind == "reserved_bits":
        lst, i, n, _, _ = draw(st.sampled_from(places(nodes)))
        bit = draw(st.sampled_from([1, 2, 4, 8, 16]))
        if isinstance(n, Group):
            n.extra_flags |= bit
        else:
            lst[i] = Avp.from_bytes(n.as_bytes())
            lst[i].flags |= bit
    elif kind in ("short_length", "long_length", "shifted_length"):
        lst, i, n, _, _ = draw(st.sampled_from(places(nodes)))
        raw = avp_bytes(n)
        length = int.from_bytes(raw[5:8], "big")
        if kind == "short_length":
            new = draw(st.integers(0, (12 if raw[4] & 0x80 else 8) - 1))
        elif kind == "long_length":
            new = draw(st.integers(len(frame(nodes)) + 1, 0xFFFFFF))
        else:
            new = max(0, length + draw(st.sampled_from([-7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7])))
            must_fail = None
        lst[i] = with_length(raw, new)
    elif kind == "fixed_size":
        fixed = [p for p in places(nodes) if not isinstance(p[2], Group)
                 and type(p[2]).__name__ in _FIXED | {"AvpAddress": 0}]
        lst, i, n, _, _ = draw(st.sampled_from(fixed))
        size = _FIXED.get(type(n).__name__)
        payload = draw(st.binary(max_size=20).filter(lambda b: len(b) != size and len(b) not in (6, 18)))
        lst[i] = Avp(n.code, n.vendor_id, payload, n.flags)
    elif kind == "trailing":
        lst, _, _ = draw(st.sampled_from(list(containers(nodes))))
        lst.append(RawAvp(draw(st.binary(min_size=4, max_size=4))))
    elif kind == "duplicate":
        has_mscc = any(n.code == c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL for n in nodes)
        # units at the top level beside MSCCs are never read, so neither are their duplicates
        single = [p for p in places(nodes) if p[3] in _SINGLE_IN and p[2].code in _SINGLE_IN[p[3]]
                  and build(p[2]).vendor_id == 0
                  and not (has_mscc and p[3] in (c.AVP_REQUESTED_SERVICE_UNIT, c.AVP_USED_SERVICE_UNIT)
                           and p[4] == 1)]
        lst, i, n, _, _ = draw(st.sampled_from(single))
        lst.insert(draw(st.integers(0, len(lst))), copy.deepcopy(n))
    elif kind == "missing":
        required = [p for p in places(nodes) if (p[3] is None and p[2].code in _REQUIRED)
                    or p[3] == c.AVP_SUBSCRIPTION_ID and p[2].code in _SINGLE_IN[c.AVP_SUBSCRIPTION_ID]]
        lst, i, _, _, _ = draw(st.sampled_from(required))
        del lst[i]
    elif kind == "deep":
        lst, depth, _ = draw(st.sampled_from(list(containers(nodes))))
        levels = max(1, MAX_NESTING - depth + draw(st.integers(-2, 2)))     # around the limit
        inner = Group(873, TGPP, draw(st.lists(unknown_avps(), max_size=1)))
        for _ in range(levels - 1):
            inner = Group(873, TGPP, [inner])
        lst.insert(draw(st.integers(0, len(lst))), inner)
        must_fail = depth + levels > MAX_NESTING
    elif kind == "bad_value":
        bad = {c.AVP_CC_REQUEST_TYPE: st.sampled_from([0, 5, 2**31, 2**32 - 1]),
               436: st.sampled_from([4, 2**31 - 1, 2**31, 2**32 - 1]),
               c.AVP_AUTH_APPLICATION_ID: u32.filter(lambda v: v != c.APP_CREDIT_CONTROL),
               c.AVP_SUBSCRIPTION_ID_TYPE: st.sampled_from([5, 2**31, 2**32 - 1])}
        targets = [p for p in places(nodes) if p[2].code in bad and build(p[2]).vendor_id == 0]
        if not targets or draw(st.booleans()):
            nodes[:] = [n for n in nodes if n.code != 436]
            nodes.insert(draw(st.integers(0, len(nodes))), raw_u32(436, draw(bad[436])))
        else:
            lst, i, n, _, _ = draw(st.sampled_from(targets))
            lst[i] = raw_u32(n.code, draw(bad[n.code]))
    elif kind == "huge_octets":
        # octets that do not fit the engine's int64: one value, or a sum
        groups = [n for n in nodes if isinstance(n, Group) and n.code == c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL]
        lst = draw(st.sampled_from(groups)).children if groups else nodes
        way = draw(st.sampled_from(["total", "in+out", "two usu"]))
        if way == "total":
            kids = [Avp.new(c.AVP_CC_TOTAL_OCTETS, value=draw(st.integers(2**63, 2**64 - 1)))]
        else:
            a = draw(st.integers(2**62, INT64_MAX))
            b = draw(st.integers(2**63 - a, INT64_MAX))
            kids = [Avp.new(c.AVP_CC_INPUT_OCTETS, value=a), Avp.new(c.AVP_CC_OUTPUT_OCTETS, value=b)]
        code = draw(st.sampled_from([c.AVP_REQUESTED_SERVICE_UNIT, c.AVP_USED_SERVICE_UNIT]))
        lst[:] = [n for n in lst if n.code not in (c.AVP_REQUESTED_SERVICE_UNIT, c.AVP_USED_SERVICE_UNIT)]
        if way == "two usu":
            code = c.AVP_USED_SERVICE_UNIT
            kids = [Group(code, children=[Avp.new(c.AVP_CC_TOTAL_OCTETS, value=k.value)]) for k in kids]
            lst[draw(st.integers(0, len(lst))):0] = kids
        else:
            lst.insert(draw(st.integers(0, len(lst))), Group(code, children=kids))
    elif kind == "vendor_zero":
        lst, i, n, _, _ = draw(st.sampled_from([p for p in places(nodes) if not build(p[2]).vendor_id]))
        lst[i] = vendor_zero(n)
        must_fail = None
    elif kind == "header_bits":
        flags |= draw(st.sampled_from([0x20, 0x08, 0x04, 0x02, 0x01]))
        must_fail = None                # the peer's header check refuses these, not decode_ccr
    return frame(nodes, flags), must_fail, kind


# ------------------------------------------------------------ the two decoders' views

def fast_view(buf, fr, rows, i) -> dict:
    f = fr[i]
    b = buf.tobytes()
    units = [(int(m["rg"]), int(m["has_rsu"]), int(m["rsu_octets"]), int(m["rsu_time"]), int(m["used"]),
              int(m["used_time"]), int(m["service_id"]))
             for m in rows[f["mscc_start"]:f["mscc_start"] + f["mscc_count"]]]
    return dict(flags=int(f["flags"]), hbh=int(f["hbh"]), e2e=int(f["e2e"]),
                session_id=b[f["sid_off"]:f["sid_off"] + f["sid_len"]],
                origin_host=b[f["host_off"]:f["host_off"] + f["host_len"]],
                type=int(f["type"]), number=int(f["number"]), action=int(f["action"]),
                keys=[int(k) for k in f["sub_key"][:f["n_sub"]]], units=units, top_level=int(f["top_level"]),
                context=(int(f["apn"]), int(f["rat"]), int(f["plmn"])))


def subscriber_key_of(t: int, data: bytes) -> int:
    """The engine's key for an E.164 or IMSI made of 1..15 ASCII digits; -1 for any other identity."""
    if t in (c.END_USER_E164, c.END_USER_IMSI) and data.isdigit() and 1 <= len(data) <= 15:
        return subscriber_key(t, data.decode())
    return -1


def full_view(f: bytes, ccr) -> dict:
    for u in ccr.units:    # what the fast path must have declined
        assert len(u.service_ids) <= 1
    units = [(u.rating_group, int(u.has_rsu), u.rsu_octets, u.rsu_time, u.used, u.used_time,
              u.service_ids[0] if u.service_ids else -1) for u in ccr.units]
    h = ccr.header
    return dict(flags=h.flags, hbh=h.hbh, e2e=h.e2e, session_id=ccr.session_id, origin_host=ccr.origin_host,
                type=ccr.request_type, number=ccr.request_number, action=ccr.requested_action,
                keys=[subscriber_key_of(t, d) for t, d in ccr.subscription_ids], units=units,
                top_level=int(ccr.top_level), context=(ccr.apn, ccr.rat, ccr.plmn))


def assert_fits_engine(ccr) -> None:
    """Every value the full path hands the engine fits its int64 columns
    (a larger one would raise OverflowError in the charging loop)."""
    for u in ccr.units:
        for v in (u.rating_group, u.rsu_octets, u.rsu_time, u.used, u.used_time, *u.service_ids):
            assert -1 <= v <= INT64_MAX, ccr


def full_decode(f: bytes):
    """decode_ccr's result, or the ProtocolError it raised (anything else fails the test)."""
    try:
        ccr = decode_ccr(parse_header(f), f)
    except ProtocolError as e:
        return e
    assert_fits_engine(ccr)
    return ccr


def check_batch(frames, must_fail, allowed_fallback) -> list[str]:
    """Hold the two decoders equal on one batch; returns what happened to each frame."""
    outcomes = []
    buf, fr, rows, used = fastccr.decode_batch(frames, MSCC)
    assert used == sum(int(fr[i]["mscc_count"]) for i in range(len(frames)) if not fr[i]["fallback"])
    keys, _, _ = fastccr.duplicate_keys(buf, fr)
    for i, f in enumerate(frames):
        full = full_decode(f)
        outcomes.append(f"full path {'refuses' if isinstance(full, ProtocolError) else 'accepts'}, "
                        f"fast path {'falls back' if fr[i]['fallback'] else 'decodes'}")
        if must_fail[i]:
            assert isinstance(full, ProtocolError), f"the full path accepted a broken CCR: {f.hex()}"
        if isinstance(full, ProtocolError):
            assert fr[i]["fallback"], f"fast path accepted what the full path refuses ({full}): {f.hex()}"
        elif fr[i]["fallback"]:
            assert allowed_fallback(i), f"fast path declined an ordinary CCR: {f.hex()}"
        else:
            assert fast_view(buf, fr, rows, i) == full_view(f, full), f.hex()
            assert keys[i] == full.origin_host + full.header.e2e.to_bytes(4, "big")
    return outcomes


def used_octets(usus) -> int:
    if not usus:
        return -1
    return sum(u.cc_total_octets if u.cc_total_octets is not None
               else (u.cc_input_octets or 0) + (u.cc_output_octets or 0) for u in usus)


def assert_python_diameter_agrees(f: bytes, ccr) -> None:
    msg = Message.from_bytes(f)
    assert isinstance(msg, CreditControlRequest)
    assert msg.session_id.encode() == ccr.session_id
    assert msg.origin_host == ccr.origin_host
    assert (msg.cc_request_type, msg.cc_request_number) == (ccr.request_type, ccr.request_number)
    assert (-1 if msg.requested_action is None else msg.requested_action) == ccr.requested_action
    assert [(s.subscription_id_type, s.subscription_id_data.encode()) for s in msg.subscription_id] \
        == ccr.subscription_ids
    if ccr.top_level:
        pd_units = [(-1, [] if msg.service_identifier is None else [msg.service_identifier],
                     msg.requested_service_unit, msg.used_service_unit)] if ccr.units else []
    else:
        pd_units = [(-1 if m.rating_group is None else m.rating_group, m.service_identifier,
                     m.requested_service_unit, m.used_service_unit)
                    for m in msg.multiple_services_credit_control]
    assert len(pd_units) == len(ccr.units)
    for (rg, sids, rsu, usus), u in zip(pd_units, ccr.units):
        assert (rg, sids, rsu is not None) == (u.rating_group, u.service_ids, u.has_rsu)
        if rsu is not None:
            assert (rsu.cc_time or 0) == u.rsu_time
            if rsu.cc_total_octets is not None:
                assert rsu.cc_total_octets == u.rsu_octets
        assert used_octets(usus) == u.used
        assert sum(usu.cc_time or 0 for usu in usus) == u.used_time


# ------------------------------------------------------------ decoder tests

@SETTINGS
@given(st.lists(ccrs(), min_size=1, max_size=4))
def test_valid_ccrs_decode_alike(batch):
    frames = [frame(nodes, hbh=i, e2e=i + 7) for i, (nodes, _) in enumerate(batch)]
    for f in frames:
        ccr = decode_ccr(parse_header(f), f)      # every generated CCR is valid
        assert_fits_engine(ccr)
        assert_python_diameter_agrees(f, ccr)
    _, fr, _, _ = fastccr.decode_batch(frames, MSCC)
    room, taken = PER_FRAME * len(frames), 0
    allowed = []
    for i, (_, shape) in enumerate(batch):
        allowed.append(shape.rare or taken + shape.rows > room)
        if not fr[i]["fallback"]:
            taken += shape.rows
    for outcome in check_batch(frames, [False] * len(frames), allowed.__getitem__):
        event(outcome)


@settings(SETTINGS, max_examples=200)
@given(st.lists(st.one_of(corrupt_ccrs(), ccrs().map(lambda v: (frame(v[0]), False, "valid"))),
                min_size=1, max_size=4))
def test_broken_ccrs_fall_back(batch):
    frames = [f for f, _, _ in batch]
    outcomes = check_batch(frames, [bool(m) for _, m, _ in batch], lambda i: True)
    for (_, _, kind), outcome in zip(batch, outcomes):
        event(f"{kind}: {outcome}")


def _ccr(*extra, drop=()):
    required = [Avp.new(c.AVP_SESSION_ID, value="gw;1;2"), Avp.new(c.AVP_ORIGIN_HOST, value=b"gw"),
                Avp.new(c.AVP_ORIGIN_REALM, value=b"realm"), Avp.new(c.AVP_DESTINATION_REALM, value=b"ocs"),
                Avp.new(c.AVP_AUTH_APPLICATION_ID, value=4), Avp.new(c.AVP_SERVICE_CONTEXT_ID, value="32251@3gpp.org"),
                Avp.new(c.AVP_CC_REQUEST_TYPE, value=2), Avp.new(c.AVP_CC_REQUEST_NUMBER, value=1)]
    return frame([a for a in required if a.code not in drop] + list(extra))


def _mscc(*kids):
    return Group(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, children=list(kids))


def _usu(*kids):
    return Group(c.AVP_USED_SERVICE_UNIT, children=list(kids))


# Disagreements the differential tests found, kept as a table (and shapes near them).
FOUND = {
    # V-bit with Vendor-Id 0: the full path reads the IETF AVP, the fast path skipped it.
    "vendor-0 Rating-Group": (_ccr(_mscc(vendor_zero(Avp.new(c.AVP_RATING_GROUP, value=7)))), False),
    "vendor-0 second Session-Id": (_ccr(vendor_zero(Avp.new(c.AVP_SESSION_ID, value="x"))), True),
    "vendor-0 only Session-Id": (_ccr(vendor_zero(Avp.new(c.AVP_SESSION_ID, value="x")),
                                      drop={c.AVP_SESSION_ID}), False),
    # Requested-Action >= 2**31 wrapped to a negative int32 and passed as "absent".
    "Requested-Action 2**32-1": (_ccr(raw_u32(436, 2**32 - 1)), True),
    "Requested-Action 2**31": (_ccr(raw_u32(436, 2**31)), True),
    # Unsigned64 octets >= 2**63 wrapped negative in the fast path (charged as 0)
    # and overflowed the engine's int64 columns in the full path (OverflowError).
    "CC-Total-Octets 2**63": (_ccr(_mscc(_usu(Avp.new(c.AVP_CC_TOTAL_OCTETS, value=2**63)))), True),
    "CC-Total-Octets 2**64-1 twice": (_ccr(_mscc(Group(c.AVP_REQUESTED_SERVICE_UNIT, children=[
        Avp.new(c.AVP_CC_TOTAL_OCTETS, value=2**64 - 1), Avp.new(c.AVP_CC_TOTAL_OCTETS, value=3)]))), True),
    "input+output past 2**63-1": (_ccr(_usu(Avp.new(c.AVP_CC_INPUT_OCTETS, value=INT64_MAX),
                                            Avp.new(c.AVP_CC_OUTPUT_OCTETS, value=1))), True),
    "two USU past 2**63-1": (_ccr(_mscc(_usu(Avp.new(c.AVP_CC_TOTAL_OCTETS, value=INT64_MAX)),
                                        _usu(Avp.new(c.AVP_CC_TOTAL_OCTETS, value=1)))), True),
    # a report past any physical volume (more than 2**44 octets in one MSCC) is refused (5004)
    # empty and malformed identities are refused (5004): the fast path declines them
    "empty Session-Id": (_ccr(Avp.new(c.AVP_SESSION_ID, value=""), drop={c.AVP_SESSION_ID}), True),
    "empty Origin-Realm": (_ccr(Avp.new(c.AVP_ORIGIN_REALM, value=b""), drop={c.AVP_ORIGIN_REALM}), True),
    "newline in Origin-Host": (_ccr(Avp.new(c.AVP_ORIGIN_HOST, value=b"gw\nx"), drop={c.AVP_ORIGIN_HOST}), True),
    "CC-Total-Octets 2**63-1": (_ccr(_mscc(_usu(Avp.new(c.AVP_CC_TOTAL_OCTETS, value=INT64_MAX)))), True),
    "CC-Total-Octets 2**44": (_ccr(_mscc(_usu(Avp.new(c.AVP_CC_TOTAL_OCTETS, value=2**44)))), False),
    "CC-Total-Octets 2**44+1": (_ccr(_mscc(_usu(Avp.new(c.AVP_CC_TOTAL_OCTETS, value=2**44 + 1)))), True),
}


@pytest.mark.parametrize("name", FOUND)
def test_found_disagreements(name):
    f, must_fail = FOUND[name]
    check_batch([f], [must_fail], lambda i: True)


# ------------------------------------------------------------ encoder test

host_names = st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,20}", fullmatch=True)
results = st.sampled_from([c.SUCCESS, c.END_USER_SERVICE_DENIED, c.CREDIT_LIMIT_REACHED, c.USER_UNKNOWN,
                           c.RATING_FAILED, c.UNKNOWN_SESSION_ID])


@SETTINGS
@given(st.lists(ccrs(), min_size=1, max_size=4), st.data())
def test_answers_encode_alike(batch, data):
    frames = [frame(nodes, flags=data.draw(st.sampled_from([0x80, 0xC0, 0xD0])), hbh=data.draw(u32),
                    e2e=data.draw(u32)) for nodes, _ in batch]
    buf, fr, rows, _ = fastccr.decode_batch(frames, MSCC)
    sel = [i for i in range(len(frames)) if not fr[i]["fallback"]]
    assume(sel)
    sel = data.draw(st.permutations(sel))
    # an engine outcome for every request and every MSCC row
    reqs = np.zeros(len(frames), REQUEST)
    for name in ("type", "action", "mscc_start", "mscc_count"):
        reqs[name] = fr[name]
    for i in sel:
        reqs["result"][i] = data.draw(results)
        reqs["check_balance"][i] = data.draw(st.sampled_from([-1, 0, 1]))
        for j in range(fr[i]["mscc_start"], fr[i]["mscc_start"] + fr[i]["mscc_count"]):
            rows["result"][j] = data.draw(results)
            rows["granted"][j] = data.draw(st.one_of(st.just(-1), st.integers(0, INT64_MAX)))
            rows["granted_time"][j] = data.draw(st.one_of(st.just(0), u32))
            rows["validity"][j] = data.draw(st.integers(0, 2**31 - 1))
            rows["final"][j] = data.draw(st.sampled_from([0, 1, 2]))
            rows["filter"][j] = data.draw(st.sampled_from([-1, 0, 1]))
    local = LocalIdentity(origin_host=data.draw(host_names), origin_realm=data.draw(host_names))
    ccfh = data.draw(st.integers(0, 2))
    filters = data.draw(st.lists(st.from_regex(r"[a-z0-9\-]{1,40}", fullmatch=True), min_size=2, max_size=2))

    out, offsets = fastcca.encode_batch(buf, fr, reqs, rows, np.array(sel, dtype=np.int64), local.origin_avps, ccfh,
                                        fastcca.FilterIds(filters))
    python = Answers(None, SimpleNamespace(filters=filters), local.origin_avps, ccfh)
    for k, i in enumerate(sel):
        answer = out[offsets[k]:offsets[k + 1]]
        ccr = decode_ccr(parse_header(frames[i]), frames[i])
        assert answer == python.full(ccr, reqs[i], rows), frames[i].hex()
        assert_python_diameter_reads_answer(answer, ccr, reqs[i], rows, local, ccfh, filters)


def assert_python_diameter_reads_answer(answer, ccr, r, rows, local, ccfh, filters) -> None:
    msg = Message.from_bytes(answer)
    assert isinstance(msg, CreditControlAnswer)
    h, req = msg.header, ccr.header
    assert (h.command_code, h.application_id, h.length) == (c.CMD_CREDIT_CONTROL, c.APP_CREDIT_CONTROL, len(answer))
    # flags from the bytes: python-diameter's CreditControlAnswer sets the P-bit on whatever it decodes
    assert answer[4] == req.flags & c.FLAG_PROXIABLE
    assert (h.hop_by_hop_identifier, h.end_to_end_identifier) == (req.hbh, req.e2e)
    assert msg.session_id.encode() == ccr.session_id
    assert (msg.origin_host, msg.origin_realm) == (local.origin_host.encode(), local.origin_realm.encode())
    assert (msg.auth_application_id, msg.cc_request_type, msg.cc_request_number) == (
        c.APP_CREDIT_CONTROL, ccr.request_type, ccr.request_number)
    assert msg.credit_control_failure_handling == ccfh
    assert msg.check_balance_result == (None if r["check_balance"] < 0 else r["check_balance"])
    units = rows[r["mscc_start"]:r["mscc_start"] + r["mscc_count"]]
    if ccr.top_level:
        assert msg.result_code == (units[0]["result"] if len(units) else r["result"])
        assert msg.multiple_services_credit_control == []
        expect_units(msg.granted_service_unit, msg.final_unit_indication, units[0] if len(units) else None, filters)
        return
    assert msg.result_code == r["result"]
    assert len(msg.multiple_services_credit_control) == len(units)
    for got, m, u in zip(msg.multiple_services_credit_control, units, ccr.units):
        assert got.result_code == m["result"]
        assert (got.rating_group, got.service_identifier) == (
            None if u.rating_group < 0 else u.rating_group, u.service_ids)
        granted = m["granted"] >= 0
        assert got.validity_time == (m["validity"] if granted and m["validity"] > 0 else None)
        expect_units(got.granted_service_unit, got.final_unit_indication, m, filters)


def expect_units(gsu, fui, m, filters) -> None:
    if m is None or m["granted"] < 0:
        assert gsu is None
    else:
        assert gsu.cc_total_octets == m["granted"]
        assert gsu.cc_time == (m["granted_time"] if m["granted_time"] > 0 else None)
    if m is not None and m["final"] == 1:
        assert fui.final_unit_action == c.FUA_TERMINATE
        assert not fui.filter_id
    elif m is not None and m["final"] == 2:
        assert fui.final_unit_action == c.FUA_RESTRICT_ACCESS
        expected = [filters[m["filter"]].encode()] if m["filter"] >= 0 else []
        assert [f if isinstance(f, bytes) else f.encode() for f in (fui.filter_id or [])] == expected
    else:
        assert fui is None
