"""The API's own routes: Prometheus metrics and the OpenAPI document. Both
answer without a token: a scraper or an API tool reads them before it has
one, and neither says anything about subscribers."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST

from .route import Answer, Request, Route, Text


async def metrics(request: Request):
    return 200, Text(CONTENT_TYPE_LATEST, request.server.metrics.render(request.server))


async def openapi(request: Request):
    return 200, Text("application/json", request.api.openapi())


TAG = "service"
ROUTES = [
    Route("GET", "/metrics", metrics, "Prometheus metrics (text format)",
          {200: Answer("the metrics (docs/running.md#metrics)", None, (CONTENT_TYPE_LATEST,))}, TAG, token=False),
    Route("GET", "/v1/openapi.json", openapi, "This API's OpenAPI 3.1 document",
          {200: Answer("the document (kept in docs/openapi.json)", None)}, TAG, token=False),
]
