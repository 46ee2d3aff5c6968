"""Let the ComfyUI frontend's built-in manager UI run on our ``/v2`` routes, where ComfyUI allows it.

Facts this rests on (observed in the real hosts; docs/decisions.md, README "Inside ComfyUI"):

- The frontend picks its manager UI from ``/system_stats`` ``system.argv`` and the server
  feature flags. ``--enable-manager`` in argv is required; ComfyUI 0.8.0 keeps it in
  ``sys.argv`` when the ``comfyui_manager`` package is missing (it only resets
  ``args.enable_manager``), and its core flags already say ``extension.manager.supports_v4``.
  Frontend 1.35.9 (pinned by 0.8.0) then shows its "new" manager dialog; later frontends also
  want ``extension.manager.supports_csrf_post`` or they show an "incompatible" state (read in
  1.58.1's sources, not run here). That flag
  says "the state-changing manager routes are POSTs guarded against cross-site use", which ours
  are, so we set it: only in ComfyUI's own nested dict, only when its shape is the one we know,
  only when we answer the ``/v2`` family (a packaged manager sets its own flags).
- Frontend 1.35.9 calls ``queue/start``, ``queue/update_all`` and ``reboot`` with GET. We serve
  those GETs with the same handlers, policy, audit line and cross-site checks as the POSTs, so
  the dialog's buttons work and a foreign page still cannot use them.

ComfyUI 0.3.64 has no ``--enable-manager`` flag (its argument parser refuses it) and no manager
feature flags: nothing is adjusted there. Nothing here may stop ComfyUI's start.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger("offline_manager")
ENABLE_FLAG = "--enable-manager"
LEGACY_FLAG = "--enable-manager-legacy-ui"
DISABLE_UI_FLAG = "--disable-manager-ui"
CSRF_FLAG = "supports_csrf_post"


def wanted(argv: list[str] | None = None) -> bool:
    """The user asked ComfyUI for its built-in (new) manager UI."""
    argv = sys.argv if argv is None else argv
    return ENABLE_FLAG in argv and LEGACY_FLAG not in argv and DISABLE_UI_FLAG not in argv


def manager_flags(feature_flags: Any) -> dict[str, Any] | None:
    """ComfyUI's ``extension.manager`` flag dict, when the module has the shape of 0.8.0."""
    flags = getattr(feature_flags, "SERVER_FEATURE_FLAGS", None)
    extension = flags.get("extension") if isinstance(flags, dict) else None
    manager = extension.get("manager") if isinstance(extension, dict) else None
    if isinstance(manager, dict) and manager.get("supports_v4") is True:
        return manager
    return None


def set_csrf_flag(feature_flags: Any) -> bool:
    """Say ``supports_csrf_post`` in ComfyUI's flags; False when the shape is not the known one."""
    manager = manager_flags(feature_flags)
    if manager is None:
        return False
    manager.setdefault(CSRF_FLAG, True)
    return manager.get(CSRF_FLAG) is True


def _comfy_feature_flags() -> Any:
    # Already imported by ComfyUI's server module; never import it ourselves (0.3.64 lacks parts).
    return sys.modules.get("comfy_api.feature_flags")


def get_variant_routes(existing: set[tuple[str, str]]) -> tuple[Any, ...]:
    """Route rows for the GETs frontend 1.35.x sends, same handler and operation as the POSTs;
    a pair the route table already has is left to it."""
    from ..manager import security as sec
    from ..manager.api import Route
    from ..manager.api import handlers_admin as admin
    from ..manager.api import handlers_v2 as v2
    from ..manager.api import legacy as cl

    note = "(frontend 1.35.x sends GET; guarded like the POST)"
    rows = (
        Route(
            "GET",
            "/v2/manager/queue/start",
            cl.queue_start,
            sec.QUEUE_CONTROL,
            "v2QueueStartGet",
            f"Start the worker {note}: 200 started, 201 already running",
            legacy=True,
            statuses=(201,),
        ),
        Route(
            "GET",
            "/v2/manager/queue/update_all",
            v2.update_all,
            sec.UPDATE_ALL,
            "v2QueueUpdateAllGet",
            f"Queue update-all {note}",
            legacy=True,
        ),
        Route(
            "GET", "/v2/manager/reboot", admin.reboot, sec.REBOOT, "v2RebootGet", f"Restart ComfyUI {note}", legacy=True
        ),
    )
    return tuple(r for r in rows if (r.method, r.path) not in existing)


def attach(instance: Any, api: Any, report: Any, route_mount: Any) -> str:
    """Serve the built-in manager UI through our ``/v2`` routes when ComfyUI runs with
    ``--enable-manager`` and nothing else answers ``/v2``. Returns what was done, for the log;
    the GET variants it mounts are added to ``report.mounted``."""
    from ..manager.api import ROUTES, route_defs

    if not wanted():
        return ""
    owner = report.owners.get("v2", "nobody")
    if owner != route_mount.OURS:
        return f"the frontend's manager UI is served by {owner}"
    existing = {(r.method, r.path) for r in ROUTES}
    rows = get_variant_routes(existing)
    extra = route_mount.mount(instance.routes, route_mount.mark_ours(route_defs(api, rows)))
    report.mounted.extend(extra.mounted)
    if not set_csrf_flag(_comfy_feature_flags()):
        log.info("[offline-manager] ComfyUI's feature flags have an unknown shape; left as they are")
        return "the frontend's manager UI uses our /v2 routes (feature flags left as they are)"
    gets = f", {len(extra.mounted)} GET variant(s) for older frontends" if extra.mounted else ""
    return f"the frontend's manager UI uses our /v2 routes ({CSRF_FLAG} set{gets})"
