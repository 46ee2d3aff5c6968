"""What happens around ComfyUI's start: packs that failed to import, and operations scheduled
for the next start (``manager/startup.py``, applied by ``prestartup_script.py``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import NotFound, RequestInvalid
from .door import HttpDoor
from .envelope import field, ok, raw_json, read_json

if TYPE_CHECKING:
    from ..inventory import InstalledPack
    from ..kinds import PlannedTask


# --- import failures ---------------------------------------------------------------------------------
async def import_failures(api: HttpDoor, request: web.Request) -> web.Response:
    """The packs ComfyUI failed to import at its start (live in ComfyUI, else the last start's record)."""
    report = await asyncio.to_thread(api.import_failures)
    _key, inv = await api.inventory()
    out = report.to_dict()
    by_name = {p.name: p for p in inv.packs}
    for row in out["failures"]:
        pack = by_name.get(row["name"]) or by_name.get(row["name"][:-3] if row["name"].endswith(".py") else "")
        row["pack_id"] = (pack.catalog_id or pack.cnr_id or pack.pack_id) if pack else None
        row["installed"] = pack is not None
    return ok(out)


def _normal(url: str) -> str:
    from ..inventory import normalise_remote

    return normalise_remote(url)


def _pack_for(packs: tuple[InstalledPack, ...], cnr_id: str, url: str) -> InstalledPack | None:
    if cnr_id:
        key = cnr_id.strip().lower()
        for p in packs:
            if p.enabled and key in (p.cnr_id.lower(), p.catalog_id.lower(), p.pack_id.lower(), p.name.lower()):
                return p
    if url:
        want = _normal(url)
        for p in packs:
            if p.enabled and any(u and _normal(u) == want for u in (p.remote_url, p.repository)):
                return p
    return None


async def classic_import_fail_info(api: HttpDoor, request: web.Request) -> web.Response:
    """``{"cnr_id"}`` or ``{"url"}`` -> ``{"name", "path", "msg"}`` of the pack's failed import."""
    body = await read_json(request)
    cnr_id = field(body, "cnr_id", str, required=False, default="")
    url = field(body, "url", str, required=False, default="")
    if not cnr_id and not url:
        raise RequestInvalid(
            "give 'cnr_id' or 'url'",
            details={"field": "cnr_id"},
            hint='Send {"cnr_id": "<pack id>"} or {"url": "<repository URL>"}.',
        )
    report = await asyncio.to_thread(api.import_failures)
    _key, inv = await api.inventory()
    pack = _pack_for(inv.packs, cnr_id, url)
    failure = report.find((pack.name,)) if pack is not None else None
    if failure is None and cnr_id:
        failure = report.find((cnr_id,))
    if failure is None:
        what = cnr_id or url
        raise NotFound(
            f"no import failure is recorded for {what!r}" + ("" if pack else " (not an installed pack)"),
            hint="GET /offline-manager/v1/import-failures lists what failed at ComfyUI's last start.",
            details={"cnr_id": cnr_id, "url": url, "recorded": report.available},
        )
    return raw_json({"name": failure.name, "path": failure.path, "msg": failure.traceback or failure.message})


# --- operations at the next start -------------------------------------------------------------------
def _startup_data(api: HttpDoor) -> dict[str, Any]:
    from ..startup import PendingStore

    store = PendingStore(api.manager.layout)
    return {
        "path": str(store.path),
        "pending": [o.to_dict() for o in store.entries()],
        "problems": store.problems(),
        "last": store.last(),
        "applies_at_restart": api.door == "comfyui",
    }


async def get_startup(api: HttpDoor, request: web.Request) -> web.Response:
    return ok(await asyncio.to_thread(_startup_data, api))


async def schedule_startup(api: HttpDoor, request: web.Request) -> web.Response:
    """``{action, target, params?}``: decided by the policy like the same operation now, checked
    against the tree (the pack must be installed, the snapshot stored), then written."""
    from ..kinds import BY_NAME
    from ..startup import PACK_ACTIONS, check_target

    body = await read_json(request)
    action = field(body, "action")
    kind = BY_NAME.get(action)
    if kind is None or not kind.at_next_start:
        raise RequestInvalid(
            f"unknown action {action!r}",
            details={"field": "action"},
            hint="Actions: " + ", ".join(k.name for k in BY_NAME.values() if k.at_next_start) + ".",
        )
    target = check_target(action, field(body, "target"))
    api.note(target=target)
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise RequestInvalid(
            "'params' must be an object",
            details={"field": "params"},
            hint='Give params as a JSON object, e.g. {"version": "1.2.0"}, or leave it out.',
        )
    planned = api.plan(action, target, params)

    def write() -> dict[str, Any]:
        from ..operations.installed import find_pack

        if action in PACK_ACTIONS:  # refuse now what would fail at the start
            find_pack(api.manager.inventory(), target, enabled={"enable": False, "disable": True}.get(action))
        else:
            from ..snapshots import store_of

            store_of(api.manager).path_of(target)
        return schedule_planned(api, planned)

    return ok({"scheduled": await asyncio.to_thread(write)})


def schedule_planned(api: HttpDoor, planned: PlannedTask) -> dict[str, Any]:
    """Write a decided task to the operations applied at ComfyUI's next start (prestartup)."""
    from ..startup import PendingStore

    params = {k: v for k, v in planned.spec.params.items() if k != "policy"}
    return (
        PendingStore(api.manager.layout)
        .schedule(
            planned.spec.kind,
            planned.spec.target,
            params=params,
            policy=planned.decision.to_dict(),
            origin=f"api:{api.door}",
        )
        .to_dict()
    )


async def cancel_startup(api: HttpDoor, request: web.Request) -> web.Response:
    from ..startup import PendingStore

    op_id = request.match_info["id"]
    api.note(target=op_id)
    removed = await asyncio.to_thread(PendingStore(api.manager.layout).cancel, op_id)
    return ok({"cancelled": removed.to_dict()})
