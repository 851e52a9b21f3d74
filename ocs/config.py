"""Server configuration: one TOML file (`ocs serve --config FILE`), and flags
that override it. Decoded into msgspec Structs; errors name the key."""
from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta


class Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class PeerRule(Base, kw_only=True):
    """A gateway allowed to connect. Every field given must match."""
    origin_host: str | None = None
    realm: str | None = None
    address: str | None = None          # an address or a network, e.g. "10.1.0.0/16"
    refunds: bool = False               # may send REFUND_ACCOUNT (RFC 4006 6.4); needs origin_host


class Config(Base, kw_only=True):
    listen: str = "0.0.0.0:3868"
    origin_host: str = "ocs.localdomain"
    origin_realm: str = "localdomain"
    host_ip_addresses: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1"])
    product_name: str = "ocs"
    vendor_id: int = 0
    data: str = "data"
    rules: str = "rules/demo"
    peers: list[PeerRule] = []
    tw: Annotated[float, Meta(ge=1)] = 30.0                  # RFC 3539 watchdog interval, seconds
    cer_timeout: Annotated[float, Meta(gt=0)] = 10.0
    dpa_timeout: Annotated[float, Meta(gt=0)] = 5.0
    max_message: Annotated[int, Meta(ge=4096)] = 1 << 20     # octets
    max_outstanding: Annotated[int, Meta(ge=1)] = 8192        # requests per peer before we stop reading
    failure_handling: Literal["TERMINATE", "CONTINUE", "RETRY_AND_TERMINATE"] = "TERMINATE"
    shutdown_grace: Annotated[float, Meta(ge=0)] = 5.0
    snapshot_journal_mb: Annotated[int, Meta(ge=1)] = 32     # journal size that triggers a snapshot (restart time)
    dedup_entries: Annotated[int, Meta(ge=1)] = 500_000      # answers kept for retransmissions
    dedup_seconds: Annotated[float, Meta(gt=240)] = 600.0   # ... for this long (RFC 6733: ids unique 4 minutes)
    dedup_mb: Annotated[int, Meta(ge=1)] = 256               # ... within this many MiB of keys and answers
    session_grace: Annotated[float, Meta(ge=0)] = 3600.0     # s a session Tcc released still takes its usage
    max_mscc: Annotated[int, Meta(ge=1, le=4096)] = 64       # MSCCs one CCR may carry; more: 5009
    batch_peer_kb: Annotated[int, Meta(ge=1)] = 256          # KiB of requests one peer puts in a batch
    peer_buffer_kb: Annotated[int, Meta(ge=64)] = 16384      # KiB held for one peer (requests, answers) before
                                                              # it stops being read; closed after Tw unread
    buffer_mb: Annotated[int, Meta(ge=1)] = 512              # MiB held for all peers together
    session_failover: bool | None = None  # CCAs say CC-Session-Failover FAILOVER_SUPPORTED (another server has the
                                          # state); None: yes on the cluster store, no on the embedded one
    fsync: bool = True
    log_level: str = "INFO"
    api: str | None = None               # HOST:PORT of the operator HTTP API; None: no API
    metrics: str | None = None           # HOST:PORT serving only GET /metrics (no token); also on `api`
    api_tokens: list[str] = []           # bearer tokens; OCS_API_TOKENS (comma-separated) adds more
    rules_poll: Annotated[float, Meta(ge=0)] = 1.0           # seconds between looks at the rules; 0: SIGHUP only
    notifications: str | None = None     # JSON-lines file of threshold events; default DATA/notifications.jsonl
    notification_sink: str | None = None  # "module:callable" also given every batch of events
    reauth: bool = True                  # send Re-Auth-Requests when a change affects a live session
    reauth_timeout: Annotated[float, Meta(gt=0)] = 10.0      # seconds to wait for a RAA
    store: str | None = None             # a libpq DSN: the cluster store (docs/cluster.md); None: embedded
    node: str | None = None              # this node's name in the cluster (default: origin_host)
    lease_seconds: Annotated[float, Meta(ge=0.5)] = 2.0      # a node's lease on its slots (cluster store)
    advertise: str | None = None         # HOST:PORT the other nodes reach this one's Diameter at (default: listen,
                                         # its host if a wildcard: host_ip_addresses[0])


def load_config(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
        cfg = msgspec.convert(raw, Config)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SystemExit(f"{path}: {e}")
    except msgspec.ValidationError as e:
        raise SystemExit(f"{path}: {e}")
    for i, p in enumerate(cfg.peers):
        if p.refunds and p.origin_host is None:
            raise SystemExit(f"{path}: $.peers[{i}].refunds: refunds are allowed by origin_host; name it")
        if p.address is not None:
            try:
                ipaddress.ip_network(p.address, strict=False)
            except ValueError as e:
                raise SystemExit(f"{path}: $.peers[{i}].address: {e}")
    return cfg


class PeerPolicy:
    """Who may connect (RFC 6733 section 5.3: unknown peers get 3010)."""

    def __init__(self, rules: list[PeerRule]):
        self.rules = rules

    @property
    def refund_hosts(self) -> frozenset[bytes]:
        """Origin-Hosts allowed REFUND_ACCOUNT (none unless configured)."""
        return frozenset(r.origin_host.encode() for r in self.rules if r.refunds and r.origin_host)

    @property
    def loopback_only(self) -> bool:
        return not self.rules

    def allows(self, host: str, realm: str, address: str) -> bool:
        try:
            addr = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if not self.rules:
            return addr.is_loopback or (addr.version == 6 and addr.ipv4_mapped is not None
                                        and addr.ipv4_mapped.is_loopback)
        for r in self.rules:
            if r.origin_host is not None and r.origin_host != host:
                continue
            if r.realm is not None and r.realm != realm:
                continue
            if r.address is not None and addr not in ipaddress.ip_network(r.address, strict=False):
                continue
            return True
        return False


def split_hostport(text: str, default_port: int = 3868) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    return host.strip("[]") or "0.0.0.0", int(port)
