"""Scenarios: what a load test does, as a TOML file under loadtest/scenarios/.

Every field has a default, so a scenario file names only what it changes,
and command-line flags override the file (`apply` with dotted keys such as
"load.rate"). docs/loadtest.md describes every field; `python -m loadtest
--help` the flags.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

SCENARIOS = Path(__file__).resolve().parent / "scenarios"

Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Count = Annotated[int, Meta(ge=0)]
Octets = int | str  # 10485760 or "10 MB" (binary units: 1 MB = 1024 KB)

_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)\s*", re.I)


def octets(value: Octets) -> int:
    """Octets of a size: an integer, or a number and a binary unit ("1.5 GB")."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    m = _SIZE.fullmatch(value)
    if not m:
        raise ValueError(f"not a size: {value!r} (write e.g. 1048576, \"512 KB\", \"10 MB\")")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


class Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class Gateways(Base):
    """K simulated PGWs: one Diameter peer connection each."""
    count: Annotated[int, Meta(ge=1, le=4096)] = 1
    origin_host: str = "pgw{n}.loadtest.example"  # {n}: 1..count
    origin_realm: str = "loadtest.example"
    destination_realm: str = "localdomain"          # ocs serve's default origin_realm
    host_ip: str = "127.0.0.1"  # Host-IP-Address in the CER


class Load(Base):
    """The load shape, the measured interval and the gateway's patience."""
    mode: Literal["closed", "open"] = "closed"
    window: Annotated[int, Meta(ge=1, le=1 << 16)] = 64   # closed: in flight per gateway
    sessions: Annotated[int, Meta(ge=1, le=1 << 20)] = 4096  # open: sessions per gateway
    rate: Positive = 1000.0         # open: CCR/s of all gateways together
    ramp_from: NonNegative = 0.0    # open: rate at t=0 of a ramp ...
    ramp_seconds: NonNegative = 0.0  # ... reaching `rate` after this long (0: no ramp)
    burst_rate: NonNegative = 0.0   # open: CCR/s during a burst
    burst_every: NonNegative = 0.0  # seconds from one burst's start to the next (0: none)
    burst_seconds: NonNegative = 0.0
    burst_at: NonNegative = 0.0     # the first burst's start
    warmup: NonNegative = 2.0       # seconds of traffic before measuring
    duration: NonNegative = 10.0    # measured seconds (0: until `requests` are sent)
    requests: Count = 0             # measured requests of all gateways (0: no limit)
    timeout: Positive = 5.0         # seconds a gateway waits for an answer
    tick: Annotated[float, Meta(gt=0, le=1)] = 0.1  # seconds between timeout scans


class Reconnect(Base):
    """Reconnect storms: gateways drop their connection and come back."""
    every: NonNegative = 0.0        # seconds between storms (0: no storms)
    at: NonNegative = 0.0           # the first storm, seconds after traffic starts
    fraction: Annotated[float, Meta(gt=0, le=1)] = 0.5  # of the gateways, per storm
    delay: NonNegative = 0.5        # seconds before reconnecting (and between retries)
    graceful: bool = False          # DPR/DPA first; else the socket is reset (RST)


class Subscribers(Base):
    """The MSISDN range; each gateway takes an equal contiguous share."""
    first: str = "8613900000000"
    last: str = "8613900099999"
    plan_octets: Octets = 0         # most one subscriber may hold + use (0: unchecked)


class Profile(Base):
    """One kind of session, drawn by weight."""
    name: str = "default"
    weight: Annotated[int, Meta(ge=1)] = 1
    updates: int | tuple[int, int] = 3          # CCR-Updates per session, or min, max
    use_percent: tuple[int, int] = (100, 100)   # share of each grant used: min, max
    rating_groups: tuple[int, int] = (1, 1)     # rating groups per session: min, max


    @property
    def update_range(self) -> tuple[int, int]:
        return (self.updates, self.updates) if isinstance(self.updates, int) else self.updates


class Sessions(Base):
    rating_groups: list[int] = msgspec.field(default_factory=lambda: [10])
    request_octets: Octets = 0      # in each Requested-Service-Unit (0: empty RSU)
    allow_overuse: bool = False     # profiles may report more than granted
    profile: list[Profile] = msgspec.field(default_factory=lambda: [Profile()])


class Judge(Base):
    # Result-Codes that are not failures (4012: credit limit reached)
    expect_results: list[int] = msgspec.field(default_factory=lambda: [2001, 4012])
    relaxed: bool = False           # match by hop-by-hop id only (echo servers)


class Scenario(Base):
    name: str = "custom"
    description: str = ""
    target: str = "127.0.0.1:3868"
    seed: int = 1
    gateways: Gateways = Gateways()
    load: Load = Load()
    reconnect: Reconnect = Reconnect()
    subscribers: Subscribers = Subscribers()
    sessions: Sessions = Sessions()
    judge: Judge = Judge()

    def __post_init__(self):
        s, sub = self.sessions, self.subscribers
        octets(sub.plan_octets), octets(s.request_octets)
        if not (sub.first.isdigit() and sub.last.isdigit() and len(sub.first) == len(sub.last)
                and int(sub.first) <= int(sub.last)):
            raise ValueError("subscribers: first..last must be ascending MSISDNs of one length")
        count = int(sub.last) - int(sub.first) + 1
        if count < self.gateways.count:
            raise ValueError(f"subscribers: {count} numbers for {self.gateways.count} gateways")
        if not s.rating_groups or len(set(s.rating_groups)) != len(s.rating_groups):
            raise ValueError("sessions.rating_groups: distinct ids, at least one")
        for i, p in enumerate(s.profile):
            lo, hi = p.update_range
            if not 0 <= lo <= hi:
                raise ValueError(f"sessions.profile[{i}].updates: 0 <= min <= max")
            lo, hi = p.rating_groups
            if not 1 <= lo <= hi <= min(8, len(s.rating_groups)):
                raise ValueError(f"sessions.profile[{i}].rating_groups: 1 <= min <= max <= "
                                 f"{min(8, len(s.rating_groups))}")
            lo, hi = p.use_percent
            if not 0 <= lo <= hi or (hi > 100 and not s.allow_overuse):
                raise ValueError(f"sessions.profile[{i}].use_percent: 0 <= min <= max <= 100"
                                 " (more only with sessions.allow_overuse)")
        if self.load.duration == 0 and self.load.requests == 0:
            raise ValueError("load: give a duration, a request count, or both")
        if self.load.mode == "open" and self.load.burst_every and not self.load.burst_rate:
            raise ValueError("load: bursts need a burst_rate")
        host, _, port = self.target.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"target: HOST:PORT, not {self.target!r}")

    @property
    def host(self) -> str:
        return self.target.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.target.rpartition(":")[2])

    def origin_host(self, index: int) -> str:
        return self.gateways.origin_host.format(n=index + 1)


class ScenarioError(ValueError):
    pass


def names() -> list[str]:
    return sorted(p.stem for p in SCENARIOS.glob("*.toml"))


def load(name_or_path: str | None, overrides: dict[str, object] | None = None) -> Scenario:
    """A named scenario (loadtest/scenarios/NAME.toml) or a TOML file, with overrides."""
    data: dict = {}
    where = "defaults"
    if name_or_path:
        path = Path(name_or_path)
        if not path.suffix and not path.exists():
            path = SCENARIOS / f"{name_or_path}.toml"
        if not path.exists():
            raise ScenarioError(f"no scenario {name_or_path!r} (named: {', '.join(names())})")
        where = str(path)
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{path}: {exc}") from None
        data.setdefault("name", path.stem)
    for key, value in (overrides or {}).items():
        _set(data, key, value)
        where += f" + {key}"
    try:
        return msgspec.convert(data, Scenario)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def _set(data: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ScenarioError(f"{dotted}: {key} is not a table")
    data[leaf] = value


def parse_value(text: str):
    """A --set value as TOML (numbers, booleans, [lists]), else a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def to_dict(scenario: Scenario) -> dict:
    return msgspec.to_builtins(scenario)
