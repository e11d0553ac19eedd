"""The versioned JSON API of ``hitl serve`` (``/api/v1``): what the CLI and scripts decide with.

Callers authenticate with a personal token (:mod:`hitl.handlers.tokens`); every decision is
authorized by the server's policy and directory, never the caller's. Mounted on the service's
aiohttp application beside ``/healthz`` and the Slack endpoint::

    api = mount_api(service)          # before the app starts
    # GET /api/v1/requests, POST /api/v1/requests/{id}/approve, ... (docs/api.md)
"""

from __future__ import annotations

import logging

from aiohttp import web

from hitl.handlers.links import Links

from .links import mount_links
from .openapi import openapi_document
from .routes import API_PREFIX, ROUTES, Api, ApiService

__all__ = ["API_PREFIX", "Api", "mount_api", "openapi_document"]

log = logging.getLogger("hitl.api")


def mount_api(service: ApiService, app: web.Application | None = None) -> Api:
    """Add the API's routes to ``app`` (default: ``service.app``). Returns the bound handlers."""
    http = app if app is not None else service.app
    api = Api(service)
    for route in ROUTES:
        http.router.add_route(route.method, API_PREFIX + route.path, api.handler(route))
    document = openapi_document()

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(document)

    http.router.add_get(API_PREFIX + "/openapi.json", openapi, allow_head=False)
    mount_links(http, Links(service.decider, service.keyring.public()))
    log.info("API at %s (OpenAPI at %s/openapi.json)", API_PREFIX, API_PREFIX)
    return api
