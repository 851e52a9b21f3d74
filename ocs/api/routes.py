"""Every route of the operator API, in the order the OpenAPI document lists
them. A new resource is a `Route` in its module's ROUTES (see
`ocs/api/http.py` and docs/running.md#adding-a-route); `ocs api openapi >
docs/openapi.json` then regenerates the document, and the test that walks
it calls the new route too."""
from __future__ import annotations

from . import reports, rules, service, subscribers

ROUTES = subscribers.ROUTES + reports.ROUTES + rules.ROUTES + service.ROUTES
