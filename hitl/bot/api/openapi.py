"""The OpenAPI 3.1 document of the API, built from :data:`~hitl.bot.api.routes.ROUTES` and the
pydantic models' JSON Schemas (so it cannot drift from what the routes accept and answer)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from hitl.models import RequestRecord

from . import schemas as s
from .links import LINKS_PATH
from .routes import API_PREFIX, MAX_BODY, ROUTES

__all__ = ["openapi_document"]

REF = "#/components/schemas/{model}"


def _components() -> dict[str, Any]:
    models: set[type[BaseModel]] = {RequestRecord, s.ErrorBody}
    for route in ROUTES:
        models.add(route.answer)
        if route.body is not None:
            models.add(route.body)
    ordered = sorted(models, key=lambda m: m.__name__)
    pairs = [(m, "validation" if _is_body(m) else "serialization") for m in ordered]
    _, top = models_json_schema(pairs, ref_template=REF)  # type: ignore[arg-type]  # pydantic's Literal mode
    schemas: dict[str, Any] = _mark_records(dict(top.get("$defs", {})))
    schemas["Record"] = {
        "description": "A request record as `hitl show --json` prints it: the stored record "
        "(request, state, verdict, votes, decision, cards) plus its id.",
        "allOf": [{"$ref": REF.format(model="RequestRecord")}],
        "properties": {"id": {"type": "string"}},
        "required": ["id"],
    }
    return schemas


def _mark_records(node: Any) -> Any:
    """Replace :data:`~hitl.bot.api.schemas.RECORD_MARK` with a reference to ``Record``."""
    if isinstance(node, dict):
        if node.get(s.RECORD_MARK):
            return {"$ref": REF.format(model="Record")}
        return {k: _mark_records(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_mark_records(v) for v in node]
    return node


def _is_body(model: type[BaseModel]) -> bool:
    return any(route.body is model for route in ROUTES)


def _error_response(status: int) -> dict[str, Any]:
    words = {
        400: "invalid input (malformed JSON, unknown field, bad value)",
        401: "missing, invalid, expired or revoked token",
        403: "not authorized (the policy's refusal, audited)",
        404: "unknown id",
        409: "already decided (names who decided and when)",
        413: f"body over {MAX_BODY} bytes",
        500: "server-side failure (e.g. the audit chain no longer matches its anchor)",
        503: "Redis unavailable: nothing was written",
    }
    return {
        "description": words[status],
        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
    }


def _link_operations() -> dict[str, Any]:
    """The confirmation page of email/SMS decision links: HTML, the token in the path."""

    def html(words: str) -> dict[str, Any]:
        return {"description": words, "content": {"text/html": {"schema": {"type": "string"}}}}

    refusals = {
        "400": html("nothing decided: not confirmed, or a rejection without a reason"),
        "403": html("the link is used, expired, forged, or the policy refuses (audited)"),
        "404": html("unknown request"),
        "409": html("already decided"),
        "503": html("Redis unavailable: nothing was written"),
    }
    token = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
    form = {
        "type": "object",
        "properties": {
            "confirm": {"const": "yes"},
            "outcome": {"enum": ["approve", "reject"]},
            "reason": {"type": "string", "maxLength": 3000},
        },
        "required": ["confirm", "outcome"],
    }
    return {
        "get": {
            "operationId": "show_link",
            "summary": "The confirmation page of a decision link (never decides; audited)",
            "security": [],
            "parameters": [token],
            "responses": {"200": html("the page"), **refusals},
        },
        "post": {
            "operationId": "use_link",
            "summary": "Decide as the link's reviewer: the confirmed form (once per link)",
            "security": [],
            "parameters": [token],
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": form}},
            },
            "responses": {"200": html("decided (or the vote counted)"), **refusals},
        },
    }


def openapi_document() -> dict[str, Any]:
    """The whole document (JSON-serializable)."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        operation: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "responses": {
                str(route.status): {
                    "description": "OK",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": REF.format(model=route.answer.__name__)}
                        }
                    },
                },
                **{str(code): _error_response(code) for code in sorted(route.errors)},
            },
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in ("id", "digest_id")
            if "{" + name + "}" in route.path
        ]
        params += [
            {"name": n, "in": "query", "required": False, "schema": sch, "description": d}
            for n, sch, d in route.query
        ]
        if params:
            operation["parameters"] = params
        if route.body is not None:
            operation["requestBody"] = {
                "required": False,
                "content": {
                    "application/json": {"schema": {"$ref": REF.format(model=route.body.__name__)}}
                },
            }
        if route.operator:
            operation["description"] = "Needs an operator token (`hitl tokens create --operator`)."
        paths.setdefault(API_PREFIX + route.path, {})[route.method.lower()] = operation
    paths[LINKS_PATH] = _link_operations()
    paths[API_PREFIX + "/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {}}}}
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "hitl API",
            "version": "1",
            "description": "Decide approval requests as an authenticated reviewer (docs/api.md).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a personal token `hitl_...` from `hitl tokens create`",
                }
            },
        },
    }
