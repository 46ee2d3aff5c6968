"""The one answer envelope of every door: the HTTP routes, ``cm-cli --json`` and the host glue.

Success: ``{"ok": true, "version": 1, "data": ...}``; failure: ``{"ok": false, "version": 1,
"error": {"code", "message", "hint", "details?"}}``. It lives in the core so the CLI can write
it without importing the HTTP layer (``manager/api/``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import ManagerError

ENVELOPE_VERSION = 1


def envelope_ok(data: Any) -> dict[str, Any]:
    return {"ok": True, "version": ENVELOPE_VERSION, "data": data}


def envelope_error(err: ManagerError) -> dict[str, Any]:
    return {"ok": False, "version": ENVELOPE_VERSION, "error": err.to_dict()}
