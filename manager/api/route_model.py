"""The route model: ``Route`` and ``Param``, the shared schemas, and the row factories.

The route lists (``routes_v1``, ``routes_classic``, ``v2_routes``) and the table in ``routes``
build on these; this module imports no handler, so the lists can share it without cycles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .door import HttpDoor

PREFIX = "/offline-manager/v1"
HEALTH = "/offline-manager/health"  # outside v1: probes and scripts keep it across API versions
ApiHandler = Callable[[HttpDoor, web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Param:
    name: str
    where: str = "query"  # query | path | header
    required: bool = False
    description: str = ""
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: ApiHandler
    operation: str  # a manager.security operation (documentation and the gate)
    name: str  # operationId; for v1 routes also the JS client's method name
    summary: str
    legacy: bool = False
    gate: bool = True  # False: the handler asks the policy with the request's risk
    params: tuple[Param, ...] = ()
    body: Mapping[str, Any] | None = None  # JSON schema of the request body
    response: str = "envelope"  # envelope | json | text | html | empty
    result: Mapping[str, Any] = field(default_factory=dict)  # JSON schema of data / the classic body
    statuses: tuple[int, ...] = ()  # notable non-error statuses besides 200 (201, 202, 204, 304)
    setter: str = ""  # a query parameter that makes this GET a write (classic share_option)


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {k: (v if isinstance(v, dict) else {"type": v}) for k, v in props.items()}}


def _req(schema: dict[str, Any], *names: str) -> dict[str, Any]:
    return dict(schema, required=list(names))


MODE = Param(
    "mode",
    enum=("cache", "local", "remote"),
    description="data source: cache (default), local "
    "(cached copy only, never the network), remote (revalidate through the network gate)",
)
CLASSIC_MODE = Param(
    "mode",
    enum=("cache", "local", "remote", "nickname"),
    description="classic data source; optional here (default cache)",
)


class LazySchema(Mapping[str, Any]):
    """A JSON schema built on its first read: the task table's schemas are read by the OpenAPI
    generator, never by a host mounting our routes (the table is not imported for a mount)."""

    def __init__(self, build: Callable[[], dict[str, Any]]) -> None:
        self._build = build
        self._value: dict[str, Any] | None = None

    def _schema(self) -> dict[str, Any]:
        if self._value is None:
            self._value = self._build()
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._schema()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._schema())

    def __len__(self) -> int:
        return len(self._schema())


def _task_properties() -> dict[str, Any]:
    # one queued task: kind, its description and its params' schema all come from the task table
    from ..kinds import KINDS

    return {
        "kind": {
            "type": "string",
            "enum": [k.name for k in KINDS],
            "description": "; ".join(f"{k.name}: {k.summary} (target: {k.target})" for k in KINDS),
        },
        "target": {"type": "string"},
        "task_id": {"type": "string"},
        "client_id": {"type": "string"},
        "params": {"oneOf": [{"title": k.name, **k.params.schema()} for k in KINDS]},
    }


TASK_PROPERTIES = LazySchema(_task_properties)
TASK = LazySchema(lambda: {"type": "object", "required": ["kind"], "properties": dict(TASK_PROPERTIES)})
CLASSIC_ROW = _obj(
    id="string",
    version="string",
    selected_version="string",
    repository="string",
    files={"type": "array", "items": {"type": "string"}},
    channel="string",
    mode="string",
    ui_id="string",
    skip_post_install="boolean",
)
VALUE = _req(_obj(value="string"), "value")
TASK_RESULT = _obj(task={"type": "object"})


def _v1(method: str, path: str, handler: ApiHandler, op: str, name: str, summary: str, **kw: Any) -> Route:
    return Route(method, PREFIX + path, handler, op, name, summary, **kw)


def _c(method: str, path: str, handler: ApiHandler, op: str, name: str, summary: str, **kw: Any) -> Route:
    return Route(method, path, handler, op, name, summary, legacy=True, **kw)
