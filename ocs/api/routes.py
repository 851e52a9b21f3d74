"""Every route of the operator API, in the order the OpenAPI document lists
them: the table the server hands to `OperatorApi` (`ocs/api/http.py`) and
`ocs api openapi` to `render` (`ocs/api/openapi.py`). A new resource is a
`Route` (`ocs/api/route.py`) in its module's ROUTES (see
docs/running.md#adding-a-route); `ocs api openapi > docs/openapi.json` then
regenerates the document, and the test that walks it calls the new route
too."""
from __future__ import annotations

from . import reports, rules, service, subscribers

ROUTES = subscribers.ROUTES + reports.ROUTES + rules.ROUTES + service.ROUTES
