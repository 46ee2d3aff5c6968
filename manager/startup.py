"""Operations scheduled for the next ComfyUI start, applied by ``prestartup_script.py``.

Some changes are best made while no pack is loaded: removing a pack whose files are in use,
or restoring a snapshot the classic way ("applied at the next start"). The API and the CLI
write them to ``<manager dir>/startup/pending.json``; at the next start, before ComfyUI imports
any pack, the prestartup script applies them in order, offline (no network at start, ever),
inside the operations lock, and writes what happened to ``startup/last.json``.

Actions: ``uninstall``, ``disable``, ``enable`` (target: an installed pack's folder name or id;
the operations engine does the move, with its trash and rename journal), ``install``,
``reinstall``, ``update``, ``switch_version`` (a pack the running ComfyUI loaded, whose files
would be replaced under it: the HTTP door inside ComfyUI schedules these instead of running them;
params: the task's parameters; ``policy``: the door's decision) and
``snapshot_restore`` (target: a stored snapshot name; params: restore options; ``policy``: the
door's allowing decision, needed for git installs). One pending entry per target: a newer
one replaces it. Applied or failed entries leave the file; the file is removed when empty, so
a start with nothing pending costs one ``stat``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InternalError, LockBusy, ManagerError, NotFound, PendingInvalid
from .fsops import atomic_write_json, file_lock

log = logging.getLogger("offline_manager")

ACTIONS = ("uninstall", "disable", "enable", "snapshot_restore", "install", "reinstall", "update", "switch_version")
PACK_ACTIONS = ("uninstall", "disable", "enable")
# a change to the files of a pack the running ComfyUI loaded: scheduled by the HTTP door inside
# ComfyUI instead of run under the live process (docs/decisions.md); applied with the same verbs
# the task table's runners call, with the door's allowing decision
REPLACE_ACTIONS = ("install", "reinstall", "update", "switch_version")
# the task kinds the HTTP door inside ComfyUI schedules when their target is a loaded pack (an
# install never replaces an installed pack: it refuses with pack_exists, or enables a disabled one)
LOADED_PACK_KINDS = ("reinstall", "update", "switch_version")
MAX_PENDING = 200
LOCK_TIMEOUT = 5.0


def startup_dir(layout: Any) -> Path:
    return Path(layout.manager_dir) / "startup"


def pending_path(layout: Any) -> Path:
    """``<manager dir>/startup/pending.json`` (the prestartup script checks only this path)."""
    return startup_dir(layout) / "pending.json"


def last_path(layout: Any) -> Path:
    return startup_dir(layout) / "last.json"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class PendingOp:
    """One operation waiting for the next start."""

    id: str
    action: str
    target: str
    params: Mapping[str, Any] = field(default_factory=dict)
    policy: Mapping[str, Any] | None = None
    scheduled_at: str = ""
    origin: str = "api"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "target": self.target,
            "params": dict(self.params),
            "policy": dict(self.policy) if self.policy is not None else None,
            "scheduled_at": self.scheduled_at,
            "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str = "pending.json") -> PendingOp:
        """Validate one entry (the file may have been edited by hand); ``PendingInvalid`` if bad."""
        if not isinstance(raw, Mapping):
            raise PendingInvalid(f"{where}: an entry is not an object", details={"entry": str(raw)[:200]})
        action, target = raw.get("action"), raw.get("target")
        if action not in ACTIONS:
            raise PendingInvalid(
                f"{where}: unknown action {action!r}",
                details={"action": str(action)[:80]},
                hint="Actions: " + ", ".join(ACTIONS) + ".",
            )
        check_target(action, target)
        params = raw.get("params") or {}
        policy = raw.get("policy")
        if not isinstance(params, Mapping) or (policy is not None and not isinstance(policy, Mapping)):
            raise PendingInvalid(
                f"{where}: params and policy of {action} {target!r} must be objects", details={"target": str(target)}
            )
        return cls(
            str(raw.get("id") or uuid.uuid4().hex[:12]),
            action,
            str(target),
            dict(params),
            dict(policy) if policy is not None else None,
            str(raw.get("scheduled_at") or ""),
            str(raw.get("origin") or ""),
        )


def check_target(action: str, target: Any) -> str:
    """The target of ``action`` when it is safe (a snapshot name, or one plain pack folder name/id)."""
    if not isinstance(target, str) or not target.strip():
        raise PendingInvalid(
            f"{action} needs a target",
            details={"target": str(target)[:80]},
            hint="Give the pack folder name (or id), or the snapshot name.",
        )
    if action == "snapshot_restore":
        from .snapshots.store import check_name

        return check_name(target)
    from .operations.names import validate_pack_name

    return validate_pack_name(target, what=f"{action} target")


@dataclass(frozen=True)
class Applied:
    """What applying one pending entry did."""

    op: PendingOp
    ok: bool
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op.to_dict(),
            "ok": self.ok,
            "result": dict(self.result) if self.result else None,
            "error": dict(self.error) if self.error else None,
            "seconds": round(self.seconds, 3),
        }


class PendingStore:
    """``startup/pending.json`` of one Manager: read, schedule, cancel (under a file lock)."""

    def __init__(self, layout: Any) -> None:
        self.layout = layout
        self.path = pending_path(layout)
        self.lock_path = layout.locks_dir / "startup.lock"

    def _read(self) -> tuple[list[PendingOp], list[dict[str, Any]]]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return [], []
        except (OSError, ValueError) as exc:
            bad = PendingInvalid(
                f"{self.path} cannot be read: {exc}", hint=f"Fix or delete {self.path}; nothing in it was applied."
            )
            return [], [bad.to_dict()]
        items = raw.get("pending") if isinstance(raw, Mapping) else None
        if not isinstance(items, list):
            return [], [
                PendingInvalid(
                    f"{self.path} has no 'pending' list", hint=f"Delete {self.path}; nothing in it was applied."
                ).to_dict()
            ]
        good: list[PendingOp] = []
        problems: list[dict[str, Any]] = []
        for item in items:
            try:
                good.append(PendingOp.from_dict(item, str(self.path)))
            except ManagerError as exc:
                problems.append(exc.to_dict())
        return good, problems

    def entries(self) -> list[PendingOp]:
        """The valid pending entries, in the order they will be applied."""
        return self._read()[0]

    def problems(self) -> list[dict[str, Any]]:
        """Entries of the file that are malformed (skipped when applying)."""
        return self._read()[1]

    def _write(self, ops: list[PendingOp]) -> None:
        if ops:
            atomic_write_json(self.path, {"version": 1, "pending": [o.to_dict() for o in ops]})
        else:
            self.path.unlink(missing_ok=True)

    def schedule(
        self,
        action: str,
        target: str,
        *,
        params: Mapping[str, Any] | None = None,
        policy: Mapping[str, Any] | None = None,
        origin: str = "api",
    ) -> PendingOp:
        """Add (or replace: one entry per target) an operation for the next start."""
        op = PendingOp.from_dict(
            {
                "id": uuid.uuid4().hex[:12],
                "action": action,
                "target": target,
                "params": dict(params or {}),
                "policy": policy,
                "scheduled_at": _now(),
                "origin": origin,
            }
        )
        with file_lock(self.lock_path, timeout=LOCK_TIMEOUT, anchor=self.layout.manager_dir.parent):
            ops = self.entries()
            key = _conflict_key(op)
            ops = [o for o in ops if _conflict_key(o) != key]
            if len(ops) >= MAX_PENDING:
                raise PendingInvalid(
                    f"{len(ops)} operations already wait for the next start",
                    hint="Restart ComfyUI to apply them, or cancel some.",
                )
            ops.append(op)
            self._write(ops)
        return op

    def cancel(self, op_id: str) -> PendingOp:
        """Remove one pending entry by id; ``NotFound`` when there is none."""
        with file_lock(self.lock_path, timeout=LOCK_TIMEOUT, anchor=self.layout.manager_dir.parent):
            ops = self.entries()
            found = next((o for o in ops if o.id == op_id), None)
            if found is None:
                raise NotFound(
                    f"no operation {op_id!r} is scheduled for the next start",
                    hint="List them with GET /offline-manager/v1/startup.",
                    details={"id": op_id},
                )
            self._write([o for o in ops if o.id != op_id])
        return found

    def last(self) -> dict[str, Any] | None:
        """The report of the last start that applied something (``startup/last.json``)."""
        try:
            raw = json.loads(last_path(self.layout).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return raw if isinstance(raw, dict) else None


def _conflict_key(op: PendingOp) -> str:
    # two operations on one pack (or two restores) cannot both be meant: the newer one wins
    return "snapshot_restore" if op.action == "snapshot_restore" else "pack:" + op.target.lower()


# --- applying (prestartup) ------------------------------------------------------------------------
def _apply_one(manager: Any, op: PendingOp) -> Mapping[str, Any]:
    from .operations.ops import Ops
    from .operations.policy import parse_policy
    from .operations.reporting import Reporter

    if op.action in PACK_ACTIONS:
        from .operations import remove, toggle

        ops, rep = Ops(manager), Reporter()
        if op.action == "uninstall":
            version = op.params.get("version")
            return remove.uninstall(ops, op.target, rep, version=str(version) if version else None).to_dict()
        if op.action == "disable":
            return toggle.disable(ops, op.target, rep).to_dict()
        return toggle.enable(ops, op.target, rep).to_dict()
    if op.action in REPLACE_ACTIONS:
        return _apply_replace(manager, op, parse_policy(op.policy))
    from .snapshots import store_of
    from .snapshots.plan import RestoreOptions
    from .snapshots.restore import failure_error, restore

    snapshot = store_of(manager).load(op.target)
    result = restore(
        manager,
        snapshot,
        RestoreOptions.from_params(op.params),
        where=op.target,
        policy=parse_policy(op.policy),
        raise_on_failure=False,
    )
    if not result.ok:
        raise failure_error(result)
    return result.to_json()


def _apply_replace(manager: Any, op: PendingOp, policy: Any) -> Mapping[str, Any]:
    """install/reinstall/update/switch_version of a scheduled pack: the runners' verbs and arguments."""
    from .operations import install as inst
    from .operations import update as upd
    from .operations.ops import Ops
    from .operations.reporting import Reporter

    ops, rep, p = Ops(manager, deps_step=getattr(manager, "deps_step", None)), Reporter(), op.params

    def text(key: str) -> str | None:
        value = p.get(key)
        return str(value) if value else None

    timeout = p.get("script_timeout")
    script_timeout = float(timeout) if isinstance(timeout, (int, float)) else None
    skip = bool(p.get("skip_deps"))
    if op.action == "install":
        out = inst.install(
            ops,
            op.target,
            rep,
            version=text("version"),
            name=text("name"),
            ref=text("ref"),
            policy=policy,
            skip_deps=skip,
            script_timeout=script_timeout,
        )
    elif op.action == "reinstall":
        out = inst.reinstall(
            ops, op.target, rep, spec=text("spec"), policy=policy, skip_deps=skip, script_timeout=script_timeout
        )
    elif op.action == "update":
        out = upd.update(ops, op.target, rep, skip_deps=skip, version=text("version"))
    else:
        out = upd.switch_version(
            ops, op.target, rep, version=text("version") or "", commit=text("commit") or "", skip_deps=skip
        )
    return out.to_dict()


def apply_pending(manager: Any, *, lock_timeout: float = LOCK_TIMEOUT) -> list[Applied] | None:
    """Apply every pending entry in order, inside the operations lock; None when nothing was pending
    or the lock stayed busy (the entries then wait for the next start). Never raises a
    ManagerError: each failure is recorded in ``startup/last.json`` and the entry is dropped."""
    store = PendingStore(manager.layout)
    if not store.path.exists():
        return None
    try:
        with (
            file_lock(
                manager.layout.locks_dir / "operations.lock",
                timeout=lock_timeout,
                anchor=manager.layout.manager_dir.parent,
            ),
            file_lock(store.lock_path, timeout=lock_timeout, anchor=manager.layout.manager_dir.parent),
        ):
            ops, problems = store._read()
            applied: list[Applied] = []
            for op in ops:
                started = time.monotonic()
                try:
                    result = _apply_one(manager, op)
                    applied.append(Applied(op, True, result, seconds=time.monotonic() - started))
                except ManagerError as exc:
                    applied.append(Applied(op, False, error=exc.to_dict(), seconds=time.monotonic() - started))
                except Exception as exc:  # a bug must not make every later start fail the same way
                    log.exception("[offline-manager] at start: %s %s raised", op.action, op.target)
                    err = InternalError(f"{op.action} {op.target!r} at start failed: {type(exc).__name__}: {exc}")
                    applied.append(Applied(op, False, error=err.to_dict(), seconds=time.monotonic() - started))
                log.info(
                    "[offline-manager] at start: %s %s %s",
                    op.action,
                    op.target,
                    "done" if applied[-1].ok else f"failed: {applied[-1].error}",
                )
            store.path.unlink(missing_ok=True)
            atomic_write_json(
                last_path(manager.layout),
                {
                    "applied_at": _now(),
                    "pid": os.getpid(),
                    "results": [a.to_dict() for a in applied],
                    "skipped": problems,
                },
            )
            return applied
    except LockBusy:
        log.warning(
            "[offline-manager] operations scheduled for this start wait: the operations lock is held "
            "by another process (cm-cli?); they will be applied at the next start"
        )
        return None
