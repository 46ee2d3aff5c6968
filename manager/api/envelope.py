"""The envelope (``manager/envelope.py``) as HTTP answers, and the guards every route passes through.

Success: ``{"ok": true, "version": 1, "data": ...}``; failure: ``{"ok": false, "version": 1,
"error": {"code", "message", "hint", "details?"}}`` with the error's HTTP status. The classic
routes keep their own success shapes (scripts parse them) but fail with this envelope too.
``guarded`` wraps a handler: the request guard (Host, and for state-changing requests the
cross-site checks of ``origin.py``), ``ManagerError`` to the envelope, any other exception to
``internal_error`` (traceback logged, never swallowed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..envelope import ENVELOPE_VERSION, envelope_error, envelope_ok
from ..errors import ContentTypeRefused, InternalError, ManagerError, NotFound, RequestInvalid, RequestTooLarge
from .origin import SAFE_METHODS, RequestGuard

log = logging.getLogger("offline_manager.api")

MAX_BODY_BYTES = 4 * 1024 * 1024
# Bodies that carry form fields: when one does not parse as JSON, the hint says to send JSON.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dumps(value: Any) -> bytes:
    """Compact JSON bytes (ASCII-safe, so any client decodes them)."""
    return json.dumps(value, separators=(",", ":"), default=_default).encode("ascii")


def _default(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_bytes_response(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def ok(data: Any = None, *, status: int = 200) -> web.Response:
    """The success envelope."""
    return json_bytes_response(dumps(envelope_ok(data)), status=status)


def envelope_prefix() -> bytes:
    """Bytes that open a success envelope whose ``data`` follows (for pre-encoded bodies)."""
    return b'{"ok":true,"version":%d,"data":' % ENVELOPE_VERSION


def raw_json(value: Any, *, status: int = 200) -> web.Response:
    """A bare JSON answer (classic shapes)."""
    return json_bytes_response(dumps(value), status=status)


def error_response(err: ManagerError, *, status: int | None = None) -> web.Response:
    """The failure envelope with the error's HTTP status (or ``status`` for classic quirks)."""
    return json_bytes_response(dumps(envelope_error(err)), status=status or err.http_status)


# --- request guards ------------------------------------------------------------------------------
def check_csrf(request: web.Request) -> None:
    """The cross-site check alone (no Host check: the listen address is unknown here); routes
    built by ``route_defs`` get the door's full ``RequestGuard`` instead."""
    if request.method not in SAFE_METHODS:
        RequestGuard().check_cross_site(request)


async def read_body(request: web.Request, *, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing more than ``max_bytes`` before reading it all."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise RequestTooLarge(
            f"request body of {length} bytes exceeds the {max_bytes}-byte limit",
            hint="Send a smaller body; workflows and batches over the limit must be split.",
            details={"limit": max_bytes, "size": length},
        )
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise RequestTooLarge(
                f"request body exceeds the {max_bytes}-byte limit",
                hint="Send a smaller body.",
                details={"limit": max_bytes},
            )
        chunks.append(chunk)
    return b"".join(chunks)


class DuplicateKey(ValueError):
    """A JSON object in a request body names one key twice (``json.loads`` would keep the last)."""

    def __init__(self, key: str):
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses a key seen twice in one object, at any depth."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def loads_unique(data: str | bytes) -> Any:
    """``json.loads`` for request bodies: ``DuplicateKey`` (a ``ValueError``) on a repeated key."""
    return json.loads(data, object_pairs_hook=_unique_keys)


async def read_json(
    request: web.Request,
    *,
    default: Any = None,
    max_bytes: int = MAX_BODY_BYTES,
    expect: type | tuple[type, ...] = dict,
) -> Any:
    """The JSON body (``default`` when empty); ``request_invalid`` when not JSON or not ``expect``."""
    data = await read_body(request, max_bytes=max_bytes)
    if not data.strip():
        if default is not None:
            return default
        raise RequestInvalid(
            f"{request.method} {request.path} needs a JSON body", hint="Send a JSON object as the request body."
        )
    try:
        value = loads_unique(data)
    except DuplicateKey as dup:
        raise RequestInvalid(
            f"the request body repeats the key {dup.key!r} in one object",
            hint=f"Send each key once; which of the repeated {dup.key!r} values was meant is not guessed.",
            details={"key": dup.key},
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        # Any declared type is read as JSON (fetchApi sends text/plain, urllib a form label);
        # form fields are not JSON, and the answer says what to send instead.
        ctype = request.content_type.lower() if request.headers.get("Content-Type") else ""
        if ctype in FORM_TYPES:
            raise ContentTypeRefused(
                f"{request.method} {request.path} reads a JSON body; got {ctype} form fields",
                details={"content_type": ctype},
            ) from None
        raise RequestInvalid(
            f"the request body is not valid JSON: {exc}",
            hint="Send a JSON object as the body (Content-Type: application/json).",
        ) from None
    except RecursionError:
        raise RequestInvalid(
            "the request body nests JSON too deeply to read",
            hint="Send a plain JSON object; no request needs more than a few levels.",
        ) from None
    if not isinstance(value, expect):
        kind = "an object" if expect is dict else "a list" if expect is list else str(expect)
        raise RequestInvalid(
            f"the request body must be {kind}, got {type(value).__name__}",
            hint="Send a JSON object as the request body.",
        )
    return value


def field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...] = str, *, required: bool = True, default: Any = None
) -> Any:
    """One typed field of a JSON body; ``request_invalid`` naming the field otherwise."""
    if name not in body or body[name] is None:
        if required:
            raise RequestInvalid(
                f"missing field {name!r}", hint=f"Add {name!r} to the JSON body.", details={"field": name}
            )
        return default
    value = body[name]
    if isinstance(value, bool) and kind in (int, float):
        value = None
    if not isinstance(value, kind) or (isinstance(value, str) and required and not value.strip()):
        raise RequestInvalid(
            f"field {name!r} has the wrong type or is empty",
            hint=f"{name!r} must be a non-empty {getattr(kind, '__name__', kind)}.",
            details={"field": name},
        )
    return value


def query(
    request: web.Request, name: str, *, default: str | None = None, choices: tuple[str, ...] | None = None
) -> str | None:
    """A query parameter, checked against ``choices`` (``request_invalid`` naming the allowed values)."""
    value = request.query.get(name, default)
    if value is not None and choices is not None and value not in choices:
        raise RequestInvalid(
            f"query parameter {name}={value!r} is not one of {', '.join(choices)}",
            hint=f"Use {name}=" + f" or {name}=".join(choices) + ".",
            details={"parameter": name, "allowed": list(choices)},
        )
    return value


# --- wrapping ---------------------------------------------------------------------------------------
Observer = Callable[[web.Request], Callable[[int, str], None]]


def _code_of(resp: web.StreamResponse) -> str:
    """The error code of an error envelope a handler returned itself (classic status quirks)."""
    body = getattr(resp, "body", None)
    try:
        return str(json.loads(body)["error"]["code"]) if isinstance(body, bytes) else f"http_{resp.status}"
    except (ValueError, KeyError, TypeError):
        return f"http_{resp.status}"


def guarded(
    handler: Handler,
    *,
    label: str,
    before: Callable[[web.Request], None] | None = None,
    observe: Observer | None = None,
    screen: Callable[[web.Request], None] | None = None,
) -> Handler:
    """``handler`` behind ``screen`` (the door's request guard; default ``check_csrf``), ``before``
    (the policy gate) and the envelope.

    ``observe(request)`` (the audit log) is called first and returns ``finish(status, code)``,
    called once with the answer's status and ``ok`` or the error code, whatever happened.
    """
    screen = screen or check_csrf

    async def run(request: web.Request) -> web.StreamResponse:
        finish = observe(request) if observe is not None else None
        status, code = 500, "internal_error"
        try:
            screen(request)
            if before is not None:
                before(request)
            resp = await handler(request)
            status, code = resp.status, "ok" if resp.status < 400 else _code_of(resp)
            return resp
        except ManagerError as err:
            if err.http_status >= 500:  # 5xx codes (cache missing, not implemented) are worth a log line
                log.info("%s %s failed: %s", request.method, request.path, err)
            resp = error_response(err)
            status, code = resp.status, err.code
            return resp
        except web.HTTPException as exc:
            status, code = exc.status, f"http_{exc.status}"
            raise
        except Exception as exc:  # one coded answer for a bug of ours; the traceback goes to the log
            log.exception("%s %s (%s) raised", request.method, request.path, label)
            return error_response(InternalError(f"unexpected {type(exc).__name__} in {label}: {exc}"))
        finally:
            if finish is not None:
                try:
                    finish(status, code)
                except Exception:  # the audit log must never change an answer
                    log.exception("audit of %s %s failed", request.method, request.path)

    run.__name__ = getattr(handler, "__name__", label)
    return run


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Standalone app only: unknown paths and wrong methods answer the envelope too."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error_response(
            NotFound(
                f"no route {request.method} {request.path}",
                hint="GET /offline-manager/v1/openapi.json lists every route.",
            )
        )
    except web.HTTPMethodNotAllowed as exc:
        err = RequestInvalid(
            f"{request.method} is not allowed on {request.path}",
            hint=f"Use {', '.join(sorted(exc.allowed_methods))}.",
            details={"allowed": sorted(exc.allowed_methods)},
        )
        return error_response(err, status=405)
