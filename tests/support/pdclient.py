"""python-diameter's own client (its Node), an independent Diameter stack."""
from __future__ import annotations

import itertools
import logging

from diameter.message.commands.credit_control import CreditControlRequest
from diameter.message.constants import (APP_DIAMETER_CREDIT_CONTROL_APPLICATION,
                                        E_SUBSCRIPTION_ID_TYPE_END_USER_E164)
from diameter.message.avp.grouped import (MultipleServicesCreditControl, RequestedServiceUnit, SubscriptionId,
                                          UsedServiceUnit)
from diameter.node import Node
from diameter.node.application import SimpleThreadingApplication

logging.getLogger("diameter").setLevel(logging.WARNING)
_ids = itertools.count(1)


class PyDiameterClient:
    """A gateway made of python-diameter's Node, connected to our server."""

    def __init__(self, port: int, origin_host: str = "pgw.test.example", realm: str = "test.example",
                 server_host: str = "ocs.localdomain", server_realm: str = "localdomain"):
        self.node = Node(origin_host, realm, vendor_ids=[10415])
        self.node.idle_timeout = 30
        self.peer = self.node.add_peer(f"aaa://{server_host}:{port};transport=tcp", server_realm,
                                       ip_addresses=["127.0.0.1"], is_persistent=True, is_default=True)
        self.app = SimpleThreadingApplication(APP_DIAMETER_CREDIT_CONTROL_APPLICATION, is_auth_application=True,
                                              request_handler=lambda app, msg: None)
        self.node.add_application(self.app, [self.peer])
        self.origin_host = origin_host
        self.realm = realm
        self.server_realm = server_realm

    def __enter__(self):
        self.node.start()
        self.app.wait_for_ready(timeout=20)
        return self

    def __exit__(self, *exc):
        self.node.stop(wait_timeout=5)

    def ccr(self, session_id: str, request_type: int, number: int, msisdn: str | None = None,
            msccs: list[dict] | None = None) -> CreditControlRequest:
        req = CreditControlRequest()
        req.session_id = session_id
        req.origin_host = self.origin_host.encode()
        req.origin_realm = self.realm.encode()
        req.destination_realm = self.server_realm.encode()
        req.auth_application_id = APP_DIAMETER_CREDIT_CONTROL_APPLICATION
        req.service_context_id = "32251@3gpp.org"
        req.cc_request_type = request_type
        req.cc_request_number = number
        if msisdn is not None:
            req.subscription_id = [SubscriptionId(subscription_id_type=E_SUBSCRIPTION_ID_TYPE_END_USER_E164,
                                                  subscription_id_data=msisdn)]
        for m in msccs or []:
            mscc = MultipleServicesCreditControl()
            if "rg" in m:
                mscc.rating_group = m["rg"]
            if m.get("rsu") is not None:
                mscc.requested_service_unit = (RequestedServiceUnit(cc_total_octets=m["rsu"]) if m["rsu"]
                                               else RequestedServiceUnit())
            if m.get("used") is not None:
                mscc.used_service_unit = [UsedServiceUnit(cc_total_octets=m["used"])]
            req.multiple_services_credit_control.append(mscc)
        return req

    def send(self, req, timeout: float = 10):
        return self.app.send_request(req, timeout=timeout)
