"""The OpenAPI 3.1 document, built from the route table (``docs/openapi.json`` is its output).

Regenerate with ``python -m manager.api.openapi > docs/openapi.json``; a test fails when the
file and the table disagree.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from .. import __version__
from .routes import PREFIX, ROUTES, Route

_ENVELOPE_OK = {
    "type": "object",
    "required": ["ok", "version", "data"],
    "properties": {"ok": {"const": True}, "version": {"const": 1}, "data": {}},
}
_ERROR = {
    "type": "object",
    "required": ["ok", "version", "error"],
    "properties": {
        "ok": {"const": False},
        "version": {"const": 1},
        "error": {
            "type": "object",
            "required": ["code", "message", "hint"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "stable snake_case code; every code is listed in docs/errors.md",
                },
                "message": {"type": "string"},
                "hint": {"type": "string"},
                "details": {"type": "object"},
            },
        },
    },
}
_DESCRIPTION = (
    "ComfyUI Offline Manager. Every route is served twice, at the path below and under /api "
    "(as ComfyUI mounts extension routes); the standalone server (cm-cli.py serve) does the same. "
    "Routes under /offline-manager/v1 answer the envelope {ok, version, data}; the classic "
    "ComfyUI-Manager routes, and its 4.x family under /v2, keep their success shapes. Every failure answers "
    "{ok: false, version, error: {code, message, hint}} with the error's HTTP status. Every route refuses "
    "a Host that is not this machine on a loopback listener; state-changing routes refuse pages of other "
    "origins (Origin, Sec-Fetch-Site), read JSON bodies whatever their declared type, and cap them at 4 MiB. "
    "x-security-operation names the manager.security operation the policy decides (docs/api.md)."
)


def _content(route: Route) -> dict[str, Any]:
    if route.response == "text":
        return {"text/plain": {"schema": {"type": "string"}}}
    if route.response == "html":
        return {"text/html": {"schema": {"type": "string"}}}
    if route.response == "json":
        return {"application/json": {"schema": dict(route.result) or {}}}
    data = dict(route.result) if route.result else {}
    schema = (
        {"allOf": [{"$ref": "#/components/schemas/Envelope"}, {"type": "object", "properties": {"data": data}}]}
        if data
        else {"$ref": "#/components/schemas/Envelope"}
    )
    return {"application/json": {"schema": schema}}


def _tag(route: Route) -> str:
    if route.path.startswith("/v2/"):
        return "v2"
    if route.legacy:
        return "classic"
    return "v1" if route.path.startswith(PREFIX) else "probe"


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": [_tag(route)],
        "x-security-operation": route.operation,
        "x-policy-gate": "route" if route.gate else "handler",
    }
    params = []
    for p in route.params:
        schema: dict[str, Any] = {"type": "string"}
        if p.enum:
            schema["enum"] = list(p.enum)
        entry = {"name": p.name, "in": p.where, "required": p.required or p.where == "path", "schema": schema}
        if p.description:
            entry["description"] = p.description
        params.append(entry)
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": route.method == "POST" and bool(route.body.get("required")),
            "content": {"application/json": {"schema": dict(route.body)}},
        }
    responses: dict[str, Any] = {"200": {"description": "success", "content": _content(route)}}
    for status in route.statuses:
        desc = {
            201: "already running",
            202: "queued",
            204: "nothing to list",
            304: "not modified (ETag)",
            410: "gone: a deprecated route (route_gone)",
            501: "not done by this Manager (not_implemented)",
        }
        responses[str(status)] = {"description": desc.get(status, "success")}
        if status in (201, 202):
            responses[str(status)]["content"] = _content(route)
    responses["default"] = {
        "description": "a coded error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    op["responses"] = responses
    return op


def openapi_path(path: str) -> str:
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", r"{\1}", path)


def build_document() -> dict[str, Any]:
    """The whole OpenAPI document (deterministic: same table, same bytes)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ComfyUI Offline Manager API", "version": __version__, "description": _DESCRIPTION},
        "paths": paths,
        "components": {"schemas": {"Envelope": _ENVELOPE_OK, "Error": _ERROR}},
    }


def render() -> str:
    """The document as the text kept in docs/openapi.json."""
    return json.dumps(build_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
