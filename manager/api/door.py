"""``HttpDoor``: what every HTTP handler shares (the Manager, the listen address, the policy, caches).

One ``HttpDoor`` per server that mounts the route table (ComfyUI or the standalone server). It
holds no global state: handlers get it bound by the route table. Blocking work (catalog builds,
inventory scans, config writes) runs in ``asyncio.to_thread``; the hot list routes read
pre-encoded bytes (``listing.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import RequestInvalid, SecurityDenied
from ..security import SecuritySettings, decide
from ..security import enforce as enforce_decision
from .listing import ListingCache

if TYPE_CHECKING:  # the core is imported when the Manager is built, not when a host mounts us
    from ..audit import AuditLog
    from ..config import Config
    from ..context import CatalogView, Manager
    from ..events import Event
    from ..import_failures import ImportFailureReport
    from ..inventory import CatalogLike, Inventory
    from ..kinds import PlannedTask
    from ..records import PolicyDecision
    from ..tasks import TaskQueue

log = logging.getLogger("offline_manager.api")

DB_MODES = {"cache": "auto", "local": "never", "remote": "force", "nickname": "auto"}
_TREE_EVENTS = ("done", "failed", "cancelled")
_MAX_ORIGINS = 2000  # task id -> (remote, user agent) kept for the audit line of its result


class HttpDoor:
    """State shared by the handlers of one door.

    ``manager`` is a Manager, or a function building one on first use (ComfyUI's start then
    pays for mounting routes only; ``comfyui_root`` then names the tree). ``listen`` is the address
    the server listens on (policy input: loopback or not); ``restart`` re-executes the host
    (ComfyUI) or is None.
    """

    def __init__(
        self,
        manager: Manager | Callable[[], Manager],
        *,
        listen: str = "127.0.0.1",
        restart: Callable[[], None] | None = None,
        door: str = "standalone",
        comfyui_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self._manager: Manager | None = None
        self._manager_lock = threading.Lock()
        self._factory: Callable[[], Manager] | None = None
        if callable(manager) and not hasattr(manager, "config"):
            self._factory = manager
        else:
            self._manager = manager  # type: ignore[assignment]  # a Manager (it has a config)
        self.listen = listen
        self._root = comfyui_root
        self.restart = restart
        self.door = door
        self._queue_hooks: list[Callable[[TaskQueue], object]] = []
        self._queue_ready = False
        self.started_at = time.time()
        self.listing = ListingCache(self)
        self._view: CatalogView | None = None
        self._view_lock: asyncio.Lock | None = None
        self._inv: tuple[tuple[Any, ...], Inventory] | None = None
        self._inv_lock: asyncio.Lock | None = None
        self._generation = 0
        self._imported: Mapping[str, Any] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # audit: what each in-flight request decided (keyed by its asyncio task), who queued each task
        self._notes: dict[Any, dict[str, Any]] = {}
        self._task_origin: dict[str, tuple[str | None, str | None]] = {}
        self._audit: AuditLog | None = None
        # import failures: the host's collector (ComfyUI), else the report stored by the last start
        self.import_failure_source: Callable[[], ImportFailureReport] | None = None
        # family (offline-manager, classic, v2) -> who answers it; set by the host glue once
        # ComfyUI mounts its table (another manager may own the classic paths)
        self.route_owners: dict[str, str] = {}
        self._import_report: tuple[int, ImportFailureReport] | None = None

    @property
    def manager(self) -> Manager:
        """The Manager (built by the factory on first use)."""
        if self._manager is None:
            assert self._factory is not None
            with self._manager_lock:  # the prewarm worker and a first request build it once
                if self._manager is None:
                    self._manager = self._factory()
        return self._manager

    @property
    def comfyui_root(self) -> str:
        """The tree this door manages; given by the host glue so the health probe never builds
        the Manager (no config.ini read, no catalog) just to answer that it is alive."""
        return str(self._root if self._root is not None else self.manager.layout.comfyui_root)

    # --- policy ---------------------------------------------------------------------------
    @property
    def peer(self) -> str:
        """The address of the request being handled (its audit note keeps it), "" when unknown:
        outside a request, or a request whose route opened no note. An unknown peer is inside no
        trusted network, so on a non-loopback listener it may run nothing risky."""
        note = self._note()
        origin = note.get("origin") if note is not None else None
        remote = origin[0] if isinstance(origin, tuple) and origin else None
        return str(remote) if remote else ""

    def settings_for(self, peer: str) -> SecuritySettings:
        """The policy's input for a request from ``peer`` to this door's listener."""
        return SecuritySettings.from_config(self.manager.config, self.listen, peer=peer or "", door=self.door)

    @property
    def settings(self) -> SecuritySettings:
        """The policy's input for the request being handled (``peer``)."""
        return self.settings_for(self.peer)

    def decide(self, operation: str, risk: str = "", *, source: str = "") -> PolicyDecision:
        return decide(self.settings, operation, risk, source=source)

    def require(
        self, operation: str, risk: str = "", *, source: str = "", details: Mapping[str, Any] | None = None
    ) -> PolicyDecision:
        """The allowing decision, or ``SecurityDenied`` (403 with the hint). Noted for the audit log."""
        decision = self.decide(operation, risk, source=source)
        self._note_decision(decision.operation, decision.allowed, decision.reason)
        return enforce_decision(decision, details)

    def _note_decision(self, operation: str, allowed: bool, reason: str) -> None:
        note = self._note()
        if note is not None:
            note["operation"] = operation
            # one denial makes the request denied, whatever was allowed before it
            if note.get("decision") != "denied":
                note["decision"] = "allowed" if allowed else "denied"
            if not allowed:
                note["reason"] = reason

    # --- the task table (manager/kinds): the door only translates, the core decides -----------------
    def plan(
        self,
        kind: str,
        target: str = "",
        params: Mapping[str, Any] | None = None,
        *,
        view: CatalogView | None = None,
        enforce: bool = True,
        task_id: str | None = None,
        client_id: str | None = None,
    ) -> PlannedTask:
        """``Manager.plan`` for this door's listener and the request's peer (``peer``); the decision
        is noted for the audit log."""
        try:
            planned = self.manager.plan(
                kind,
                target,
                params,
                listen=self.listen,
                peer=self.peer,
                door=self.door,
                view=view,
                enforce=enforce,
                task_id=task_id,
                client_id=client_id,
            )
        except SecurityDenied as denied:
            self._note_decision(str((denied.details or {}).get("operation") or kind), False, denied.message)
            raise
        if enforce:
            self._note_decision(planned.decision.operation, True, "")
        return planned

    async def submit(self, planned: Sequence[PlannedTask]) -> list[dict[str, Any]]:
        """Queue decided tasks (a refused batch queues nothing); each is noted for the audit log.
        The kinds' submit-time checks read disk: they run off the loop first."""
        self.queue  # noqa: B018  (the first use hooks the door's listeners up)
        await asyncio.to_thread(self.manager.vet, planned)
        tasks = [t.to_dict() for t in self.manager.submit(planned, vetted=True)]
        for task in tasks:
            self.note(target=task["target"], task_ids=[task["id"]])
        return tasks

    # --- audit -----------------------------------------------------------------------------
    def _note(self) -> dict[str, Any] | None:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # called from a worker thread: no request to note on
            return None
        return self._notes.get(task) if task is not None else None

    def note(self, *, target: str | None = None, task_ids: Any = (), **fields: Any) -> None:
        """Add to the audit line of the request being handled (no-op outside a request)."""
        note = self._note()
        if note is None:
            return
        if target:
            note.setdefault("targets", []).append(str(target))
        if task_ids:
            note.setdefault("task_ids", []).extend(str(t) for t in task_ids)
            for tid in task_ids:  # remembered now: a quick task may end before the request does
                if len(self._task_origin) >= _MAX_ORIGINS:
                    self._task_origin.pop(next(iter(self._task_origin)))
                self._task_origin[str(tid)] = note.get("origin", (None, None))
        note.update(fields)

    def begin_request(self, remote: str | None = None, user_agent: str | None = None) -> None:
        """Open the audit note of the current request (called by the route wrapper)."""
        task = asyncio.current_task()
        if task is not None:
            self._notes[task] = {"origin": (remote, user_agent)}

    def end_request(self) -> dict[str, Any]:
        """Close and return the audit note of the current request."""
        task = asyncio.current_task()
        if task is None:
            return {}
        return self._notes.pop(task, None) or {}

    @property
    def audit(self) -> AuditLog | None:
        """The audit log when ``audit_logging`` is on (read each time: a reload may change it)."""
        from ..audit import AuditLog, audit_enabled

        manager = self.manager
        if not audit_enabled(manager.config):
            return None
        if self._audit is None:
            self._audit = AuditLog.for_layout(manager.layout)
        return self._audit

    def audit_request(
        self,
        *,
        method: str,
        route: str,
        operation: str,
        status: int,
        code: str,
        seconds: float,
        remote: str | None,
        user_agent: str | None,
        note: Mapping[str, Any],
    ) -> None:
        """One audit line for a state-changing request (written synchronously: a local append)."""
        from ..audit import AuditEntry

        try:
            log_file = self.audit
        except Exception:  # the Manager could not be built (bad config.ini): the request says why
            log.debug("no audit line: the Manager is not available", exc_info=True)
            return
        if log_file is None:
            return
        targets = list(dict.fromkeys(note.get("targets") or ()))
        target = ", ".join(targets[:3]) + (f" (+{len(targets) - 3})" if len(targets) > 3 else "")
        task_ids = tuple(note.get("task_ids") or ())
        log_file.write(
            AuditEntry(
                "request",
                str(note.get("operation") or operation),
                target,
                str(note.get("decision") or "none"),
                code,
                round(seconds * 1000.0, 1),
                remote=remote,
                user_agent=user_agent,
                route=route,
                method=method,
                status=status,
                door=self.door,
                task_ids=task_ids,
                reason=note.get("reason"),
            )
        )

    def _audit_task(self, event: Event) -> None:
        from ..audit import task_entry

        task = event.data.get("task") if isinstance(event.data, Mapping) else None
        if not isinstance(task, Mapping):
            return
        remote, agent = self._task_origin.pop(str(task.get("id")), (None, None))
        try:
            log_file = self.audit
        except Exception:
            log.debug("no audit line for task %s", task.get("id"), exc_info=True)
            return
        if log_file is not None:
            log_file.write(task_entry(task, remote=remote, user_agent=agent, door=self.door))

    # --- import failures -------------------------------------------------------------------
    def import_failures(self) -> ImportFailureReport:
        """What failed to import at ComfyUI's start: live from the host, else the stored report
        (re-read when the file changes). May read a file: call off the loop the first time."""
        from ..import_failures import load_report, report_mtime

        if self.import_failure_source is not None:
            if self._import_report is None:
                self._import_report = (0, self.import_failure_source())
            return self._import_report[1]
        stamp = report_mtime(self.manager.layout)
        if self._import_report is None or self._import_report[0] != stamp:
            self._import_report = (stamp, load_report(self.manager.layout))
        return self._import_report[1]

    async def failed_import_names(self) -> frozenset[str]:
        """Folder names that failed to import (for the list routes' ``import-fail`` flags)."""
        from ..import_failures import report_mtime

        cached = self._import_report
        if cached is not None and (
            self.import_failure_source is not None or cached[0] == report_mtime(self.manager.layout)
        ):
            return cached[1].names()
        return (await asyncio.to_thread(self.import_failures)).names()

    # --- queue hook-up --------------------------------------------------------------------
    def on_queue(self, hook: Callable[[TaskQueue], object]) -> None:
        """Run ``hook(queue)`` once the queue exists (now, if a handler already used it).

        The queue, and with it the operation modules its runners import, is built on first
        use, so a host's start pays nothing for it.
        """
        self._queue_hooks.append(hook)
        if self._queue_ready:
            hook(self.manager.queue)

    @property
    def queue(self) -> TaskQueue:
        """The Manager's task queue; the first use runs the ``on_queue`` hooks."""
        queue = self.manager.queue
        if not self._queue_ready:
            self._queue_ready = True
            self.attach()
            for hook in list(self._queue_hooks):
                hook(queue)
        return queue

    @property
    def queue_built(self) -> bool:
        """True once a request (or the door) has used the queue."""
        return self._queue_ready

    @property
    def kinds(self) -> tuple[str, ...]:
        """Task kinds with a registered runner (asking builds the queue)."""
        return self.queue.kinds

    def attach(self) -> None:
        """Follow the task queue (the installed state changes when a task ends). Call once the
        runners are registered: the first use of ``manager.queue`` freezes them."""
        if self._unsubscribe is None:
            self._unsubscribe = self.manager.queue.subscribe(self._on_event)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: Event) -> None:
        if event.name in _TREE_EVENTS:
            self._generation += 1  # an int bump is atomic enough: readers only compare it
            self._audit_task(event)

    # --- catalog ----------------------------------------------------------------------------
    async def view(self, mode: str = "cache") -> CatalogView:
        """The catalog view for a classic ``mode`` (cache/local/remote); loads off the loop."""
        refresh = DB_MODES.get(mode)
        if refresh is None:
            raise RequestInvalid(
                f"mode {mode!r} is not one of {', '.join(DB_MODES)}",
                hint="Use mode=cache (default), local or remote.",
                details={"parameter": "mode"},
            )
        if self._view is not None and refresh != "force":
            return self._view
        if self._view_lock is None:
            self._view_lock = asyncio.Lock()
        async with self._view_lock:
            if self._view is not None and refresh != "force":
                return self._view
            if refresh == "force":
                self.listing.forget()
            # catalog_view is sync core work: parsing 5,900 packs must not stall the loop.
            view = await asyncio.to_thread(self.manager.catalog_view, refresh=refresh)
            self._view = view
            return view

    @property
    def loaded_view(self) -> CatalogView | None:
        """The catalog view if one is loaded (status displays must not trigger a load)."""
        return self._view

    def forget_view(self) -> None:
        self._view = None
        self.listing.forget()

    async def prewarm(self, delay: float = 0.5) -> None:
        """Ready the pack lists once the server runs, so the panel's first open finds them in
        memory: the Manager is built (the core imported) in a worker at once; ``delay`` later
        (a request that came first loads its own list alone) the lists come from the persisted
        files, else (a first start, changed channel data) from loading the catalog, which
        writes them for the next start. Never raises."""
        from ..errors import ManagerError

        try:
            await asyncio.to_thread(self._load_core)
            await asyncio.sleep(delay)
            for kind in ("v1", "classic"):
                if self._view is None and await self.listing.first_packs(kind) is not None:
                    continue
                await self.listing.packs(kind, await self.view())
            await self.listing.settled()
        except ManagerError as exc:  # no channel data yet: the panel's request will say why
            log.info("pack lists not prepared: %s (%s)", exc.message, exc.code)
        except Exception:
            log.warning("pack lists not prepared", exc_info=True)

    def _load_core(self) -> None:
        """The Manager and the task table the queue routes plan with (a mount imports neither)."""
        from .. import kinds  # noqa: F401  (imported for the first queue request)

        _ = self.manager

    # --- installed state -----------------------------------------------------------------------
    def tree_fingerprint(self) -> tuple[Any, ...]:
        """Cheap proof that the tree is unchanged: folder mtimes, the operations lock (every
        operation of any process writes it) and the count of finished tasks."""
        layout = self.manager.layout
        out: list[int] = []
        for path in (layout.custom_nodes, layout.disabled_dir, layout.locks_dir / "operations.lock"):
            try:
                out.append(os.stat(path).st_mtime_ns)
            except OSError:
                out.append(0)
        return (*out, self._generation)

    async def inventory(self) -> tuple[tuple[Any, ...], Inventory]:
        """(key, Inventory) for the tree as it is now; rescanned off the loop only on change."""
        view = self._view
        return await self._inventory(view.catalog.version if view else "", self.manager.inventory)

    async def inventory_for(self, catalog: CatalogLike, version: str) -> tuple[tuple[Any, ...], Inventory]:
        """The same, matched against ``catalog`` of ``version`` instead of the loaded view (a
        persisted list's index answers before any catalog is built)."""
        from ..inventory import scan

        layout = self.manager.layout
        return await self._inventory(version, lambda: scan(layout, catalog=catalog))

    async def _inventory(self, version: str, read: Callable[[], Inventory]) -> tuple[tuple[Any, ...], Inventory]:
        key = (*self.tree_fingerprint(), version)
        cached = self._inv
        if cached is not None and cached[0] == key:
            return cached
        if self._inv_lock is None:
            self._inv_lock = asyncio.Lock()
        async with self._inv_lock:
            cached = self._inv
            if cached is not None and cached[0] == key:
                return cached
            inv = await asyncio.to_thread(read)
            self._inv = (key, inv)
            if self._imported is None:
                self._imported = installed_map(inv)
            return self._inv

    async def imported(self) -> Mapping[str, Any]:
        """The installed map as first seen by this door (the classic ``mode=imported``)."""
        if self._imported is None:
            await self.inventory()
        return self._imported or {}

    # --- settings -------------------------------------------------------------------------------
    async def save_config(self, changes: Mapping[str, Any]) -> Config:
        """Persist ``changes`` to config.ini (off the loop) and adopt the result."""
        new = await asyncio.to_thread(self.manager.config.save, dict(changes))
        old_channel = self.manager.config["channel_url"]
        self.manager.apply_config(new)
        if new["channel_url"] != old_channel:
            self.forget_view()
        return new


def installed_map(inv: Inventory) -> dict[str, Any]:
    """The classic ``/customnode/installed`` map: entry name -> {ver, cnr_id, aux_id, enabled}."""
    out: dict[str, Any] = {}
    enabled_bases = {p.name.lower() for p in inv.packs if p.enabled}
    for pack in inv.packs:
        key = pack.name[:-4] if pack.name.endswith(".git") else pack.name
        if not pack.enabled and pack.pack_id.lower() in enabled_bases:
            continue
        aux = None
        url = pack.remote_url or pack.repository
        if url and "github.com" in url:
            tail = url.split("github.com", 1)[1].lstrip(":/")
            aux = tail[:-4] if tail.endswith(".git") else tail.rstrip("/")
        out[key] = {
            "ver": pack.cnr_version or pack.version or pack.commit or "unknown",
            "cnr_id": pack.cnr_id or pack.catalog_id or "",
            "aux_id": aux,
            "enabled": pack.enabled,
        }
    return out
