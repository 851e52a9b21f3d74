"""CCA responder on python-diameter's own `diameter.node.Node`: the baseline.

The straightforward way to answer Gy in Python: the library's Node does the
sockets and the peer procedures (CER/CEA, DWR/DWA, DPR/DPA), and an
Application answers every CCR with Result-Code 2001 and, for CCR-I and
CCR-U, a Granted-Service-Unit per Multiple-Services-Credit-Control: the
configured grant, or less when the Requested-Service-Unit asks for less
(RFC 4006 section 5.1.2: the server may grant less, never more). No
charging, no state. Its throughput is what the OCS is measured against.

    python -m loadtest.reference.pydiameter_responder --listen 127.0.0.1:3868
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from diameter.message.avp.grouped import GrantedServiceUnit, MultipleServicesCreditControl
from diameter.message.commands.credit_control import CreditControlRequest
from diameter.node import Node
from diameter.node.application import Application

APP_CREDIT_CONTROL = 4
CCR_TERMINATE = 3
DIAMETER_SUCCESS = 2001
DEFAULT_GRANT = 10 * 1024 * 1024


class CreditControlResponder(Application):
    """Answers in the Node's own thread: no queue, no per-request thread."""

    def __init__(self, grant_octets: int = DEFAULT_GRANT):
        super().__init__(APP_CREDIT_CONTROL, is_auth_application=True)
        self.grant_octets = grant_octets

    def handle_request(self, message):
        if not isinstance(message, CreditControlRequest):
            return
        answer = self.generate_answer(message, result_code=DIAMETER_SUCCESS)
        answer.cc_request_type = message.cc_request_type
        answer.cc_request_number = message.cc_request_number
        if message.cc_request_type != CCR_TERMINATE:
            answer.multiple_services_credit_control = [
                MultipleServicesCreditControl(
                    rating_group=mscc.rating_group,
                    granted_service_unit=GrantedServiceUnit(
                        cc_total_octets=self._grant(mscc)),
                    result_code=DIAMETER_SUCCESS)
                for mscc in message.multiple_services_credit_control]
        self.send_answer(answer)

    def _grant(self, mscc) -> int:
        rsu = mscc.requested_service_unit
        asked = rsu.cc_total_octets if rsu is not None else None
        return min(self.grant_octets, asked) if asked else self.grant_octets


def build_node(host: str, port: int, peers: list[str], origin_host: str,
               realm: str, grant_octets: int) -> Node:
    node = Node(origin_host, realm, ip_addresses=[host], tcp_port=port)
    node.idle_timeout = 30
    known = [node.add_peer(f"aaa://{peer};transport=tcp", peer.partition(".")[2])
             for peer in peers]
    node.add_application(CreditControlResponder(grant_octets), known, realms=[realm])
    return node


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.reference.pydiameter_responder")
    p.add_argument("--listen", default="127.0.0.1:3868", help="HOST:PORT")
    p.add_argument("--origin-host", default="responder.ocs.example")
    p.add_argument("--realm", default="localdomain",
                   help="our realm; requests must carry it as Destination-Realm")
    p.add_argument("--peer", action="append",
                   help="Origin-Host of an allowed client (repeatable; the Node "
                        "refuses unknown peers); default pgw1.loadtest.example")
    p.add_argument("--peers", type=int, default=0,
                   help="also allow pgw1..pgwN.loadtest.example (python -m loadtest's "
                        "default Origin-Hosts for N gateways)")
    p.add_argument("--grant", type=int, default=DEFAULT_GRANT,
                   help="CC-Total-Octets granted per MSCC")
    a = p.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    peers = list(a.peer or [])
    peers += [f"pgw{n}.loadtest.example" for n in range(1, a.peers + 1)]
    node = build_node(host.strip("[]") or "127.0.0.1", int(port),
                      list(dict.fromkeys(peers)) or ["pgw1.loadtest.example"],
                      a.origin_host, a.realm, a.grant)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node.start()
    print(f"python-diameter Node listening on {a.listen}", flush=True)
    stop.wait()
    # Node.stop() waits for DPAs and joins threads for seconds; a benchmark
    # server has nothing to flush.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
