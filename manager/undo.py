"""Undo: each changing task records ComfyUI's package set before and after; ``undo`` puts the earlier set back.

A record per task id lives in ``<manager dir>/logs/undo/<task-id>.json`` (beside the audit log,
written atomically, kept until the admin prunes them: ``cm-cli.py undo --prune``). It holds the
package set (name, version, source: index / url / local / editable) before and after the task,
read by running ComfyUI's python once (``importlib.metadata``), and the pack facts of the task's
result (the pack, the trash entry of an uninstall, the commit or version before an update).

``undo TASK`` resolves everything first (every earlier version must be in the wheelhouse when
offline, every trash entry and pack must exist) and only then changes anything: never a half-undo.
Should a step still fail while applying (the installer exits non-zero, a pack move fails), the
package set is put back to what it was when the undo started (from the wheelhouse offline) and
the task fails with ``details.rolled_back`` saying what was put back; a pack step's own moves are
undone by its rename journal (``operations/staging.py``), and it runs last.
The torch family is left alone unless asked (``include_torch``). Pack changes: an install is
undone by moving the pack to the trash, an uninstall by restoring its trash entry, an update or a
version switch by switching back to the previous commit or version.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ManagerError, NotFound, RequestInvalid

if TYPE_CHECKING:
    from .context import Manager
    from .tasks import TaskContext

log = logging.getLogger("offline_manager.undo")

FORMAT = 1
# task kinds whose package set is recorded (and can be undone)
RECORDED = frozenset(
    {
        "install",
        "reinstall",
        "update",
        "update_all",
        "fix",
        "switch_version",
        "uninstall",
        "snapshot_restore",
        "install_pip",
        "undo",
    }
)
# never touched by an undo unless include_torch: a wrong CUDA build costs gigabytes and hours
TORCH_FAMILY = frozenset(
    {
        "torch",
        "torchvision",
        "torchaudio",
        "torchtext",
        "torchdata",
        "xformers",
        "triton",
        "pytorch-triton",
        "pytorch-triton-rocm",
        "torchsde",
        "nvidia-*",
    }
)
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_RESULT_KEYS = ("action", "pack", "path", "source", "version", "commit", "previous", "changed", "trash_entry")


def is_torch(name: str) -> bool:
    return name in TORCH_FAMILY or name.startswith("nvidia-")


def target_python(manager: Manager) -> str:
    """ComfyUI's python: ``python_executable``, else the host's (the one the installs run with)."""
    from .snapshots.capture import target_python as python_of

    return python_of(manager)


def probe_packages(python: str, *, timeout: float = 120.0) -> list[dict[str, str]]:
    """Every distribution of ``python``'s environment: name (canonical), version, source, url."""
    from .deps.environment import probe_packages as probe

    return probe(python, timeout=timeout)


# --- records ---------------------------------------------------------------------------------------
def undo_dir(manager: Manager) -> Path:
    return Path(manager.layout.logs_dir) / "undo"


def _record_path(manager: Manager, task_id: str) -> Path:
    if not _SAFE_ID.match(task_id or ""):
        raise RequestInvalid(
            f"not a task id: {task_id!r}",
            hint="Use a task id `cm-cli.py undo --list` shows.",
            details={"field": "target"},
        )
    return undo_dir(manager) / f"{task_id}.json"


def write_record(manager: Manager, record: Mapping[str, Any]) -> Path:
    from .fsops import atomic_write_json

    path = _record_path(manager, str(record["task_id"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, dict(record))


def load_record(manager: Manager, task_id: str) -> dict[str, Any]:
    path = _record_path(manager, task_id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(
            f"no undo record for task {task_id!r}",
            hint="Only changing tasks (install, update, uninstall, ...) are recorded; `cm-cli.py undo --list` "
            "shows the records kept. A pruned record cannot be undone.",
            details={"task": task_id},
        ) from None
    except (OSError, ValueError) as exc:
        raise RequestInvalid(f"undo record {path.name} is unreadable: {exc}", details={"task": task_id}) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RequestInvalid(f"undo record {path.name} has an unknown format", details={"task": task_id})
    return data


def list_records(manager: Manager) -> list[dict[str, Any]]:
    """Every record, newest first, summarised (no package lists)."""
    out: list[dict[str, Any]] = []
    folder = undo_dir(manager)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        changes = package_changes(data.get("before") or [], data.get("after") or [])
        out.append(
            {
                "task_id": data.get("task_id", path.stem),
                "kind": data.get("kind", ""),
                "target": data.get("target", ""),
                "finished": data.get("finished", 0),
                "ok": data.get("ok", False),
                "undone_by": data.get("undone_by", ""),
                "packages_changed": len(changes),
                "pack": (data.get("result") or {}).get("pack", ""),
            }
        )
    out.sort(key=lambda r: r["finished"], reverse=True)
    return out


def prune_records(manager: Manager, *, older_than_days: float | None = None) -> list[str]:
    """Delete records (all, or those older than ``older_than_days``); returns the task ids removed."""
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    removed: list[str] = []
    folder = undo_dir(manager)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        if cutoff is not None and path.stat().st_mtime >= cutoff:
            continue
        path.unlink(missing_ok=True)
        removed.append(path.stem)
    return removed


def recorded(
    manager: Manager,
    ctx: TaskContext,
    run: Callable[[], Mapping[str, Any]],
    *,
    first_probe: Callable[[], list[dict[str, str]]] | None = None,
) -> Mapping[str, Any]:
    """Run a changing task between two probes of the package set and keep the record.

    ``first_probe`` gives the package set before (the run's dependency installer, which learns
    its environment in the same run of ComfyUI's python); without it the python is probed here.
    A probe that fails (no python, a broken environment) is logged and the task runs unrecorded:
    recording never makes a task fail."""
    try:
        python = target_python(manager)
        before = first_probe() if first_probe is not None else probe_packages(python)
    except Exception as exc:  # noqa: BLE001 - a record is a convenience, never a reason to fail
        log.warning("undo record for task %s not kept: %s", ctx.task_id, exc)
        return run()
    record: dict[str, Any] = {
        "format": FORMAT,
        "task_id": ctx.task_id,
        "kind": ctx.kind,
        "target": ctx.target,
        "params": {k: v for k, v in ctx.params.items() if k not in ("policy", "v2")},
        "python": python,
        "started": time.time(),
        "before": before,
    }
    result: Mapping[str, Any] | None = None
    try:
        result = run()
        return result
    except BaseException as exc:
        record["error"] = getattr(exc, "code", type(exc).__name__)
        raise
    finally:
        record["ok"] = result is not None
        record["result"] = {k: result[k] for k in _RESULT_KEYS if result is not None and k in result}
        if result is not None and result.get("auto_snapshot"):
            record["result"]["auto_snapshot"] = result["auto_snapshot"]
        try:
            record["after"] = probe_packages(python)
            record["finished"] = time.time()
            write_record(manager, record)
        except Exception as exc:  # noqa: BLE001
            log.warning("undo record for task %s not kept: %s", ctx.task_id, exc)


# --- resolve ---------------------------------------------------------------------------------------
def package_changes(before: Sequence[Mapping[str, str]], after: Sequence[Mapping[str, str]]) -> list[str]:
    """Names whose (version, source, url) differs between the two sets, or that one set lacks."""
    b = {p["name"]: (p["version"], p["source"], p.get("url", "")) for p in before}
    a = {p["name"]: (p["version"], p["source"], p.get("url", "")) for p in after}
    return sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))


@dataclass
class UndoPlan:
    """What an undo will do, resolved before anything changes."""

    task_id: str
    kind: str
    install: list[dict[str, str]] = field(default_factory=list)  # the earlier versions to put back
    remove: list[str] = field(default_factory=list)  # packages the task added
    held_back: list[dict[str, str]] = field(default_factory=list)  # torch family, editable
    pack: dict[str, Any] = field(default_factory=dict)  # the pack step: action + arguments
    notes: list[str] = field(default_factory=list)
    start: list[dict[str, str]] = field(default_factory=list)  # the package set when the undo started

    @property
    def empty(self) -> bool:
        return not (self.install or self.remove or self.pack)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "install": self.install,
            "remove": self.remove,
            "held_back": self.held_back,
            "pack": self.pack,
            "notes": self.notes,
        }


def plan_undo(manager: Manager, task_id: str, *, include_torch: bool = False) -> UndoPlan:
    """Resolve an undo: the package moves against the current environment and the pack step.

    Raises before anything changes: ``not_found`` (no record, trash entry or pack gone),
    ``deps_missing_wheels`` (offline and an earlier version is not in the wheelhouse)."""
    record = load_record(manager, task_id)
    plan = UndoPlan(task_id, str(record.get("kind", "")))
    if record.get("undone_by"):
        plan.notes.append(f"already undone by task {record['undone_by']}")
    before = {p["name"]: p for p in record.get("before") or []}
    plan.start = probe_packages(target_python(manager))
    now = {p["name"]: p for p in plan.start}
    for name in package_changes(record.get("before") or [], record.get("after") or []):
        want, have = before.get(name), now.get(name)
        if not include_torch and is_torch(name):
            plan.held_back.append({"name": name, "reason": "torch family (use --include-torch)"})
            continue
        if want is None:
            if have is not None:
                plan.remove.append(name)
            continue
        if have is not None and (have["version"], have["source"]) == (want["version"], want["source"]):
            continue  # already as it was
        if want["source"] == "editable":
            plan.held_back.append({"name": name, "reason": f"editable install from {want.get('url', '')}"})
            continue
        plan.install.append(dict(want))
    _plan_pack(manager, record, plan)
    _check_wheels(manager, plan)
    return plan


def _plan_pack(manager: Manager, record: Mapping[str, Any], plan: UndoPlan) -> None:
    from .operations.remove import list_trash

    kind, res = plan.kind, dict(record.get("result") or {})
    pack = str(res.get("pack") or "")
    if not record.get("ok"):
        plan.notes.append("the task failed: only its package changes are undone")
        return
    if kind == "install" and pack and res.get("changed", True) and res.get("action") != "enable":
        if not (Path(manager.layout.custom_nodes) / pack).exists():
            plan.notes.append(f"pack {pack} is no longer installed: nothing to move to the trash")
            return
        plan.pack = {"action": "uninstall", "pack": pack}
    elif kind == "uninstall" and res.get("trash_entry"):
        entry = str(res["trash_entry"])
        if entry not in {e.id for e in list_trash(manager.layout)}:
            raise NotFound(
                f"trash entry {entry} of task {plan.task_id} is gone (the trash was emptied)",
                hint="The pack cannot be restored from the trash; install it again.",
                details={"entry": entry, "task": plan.task_id},
            )
        plan.pack = {"action": "restore_trash", "entry": entry}
    elif kind in ("update", "switch_version") and pack and res.get("previous") and res.get("changed", True):
        previous = str(res["previous"])
        git = bool(re.fullmatch(r"[0-9a-f]{7,40}", previous))
        plan.pack = {"action": "switch_version", "pack": pack, ("commit" if git else "version"): previous}
    elif kind == "update_all" and res.get("auto_snapshot"):
        plan.notes.append(f"packs: restore the auto-snapshot {res['auto_snapshot']} to undo the pack updates")
    elif kind in ("reinstall", "snapshot_restore", "undo"):
        plan.notes.append(f"{kind}: only its package changes are undone")


def _check_wheels(manager: Manager, plan: UndoPlan) -> None:
    """Offline, every earlier version must be in the wheelhouse (checked before any change)."""
    if not plan.install or manager.gate.mode.value != "offline":
        return
    from .deps.errors import DepsMissingWheels

    installer = _installer(manager)
    wheelhouse = installer.wheelhouse()
    env = installer.environment
    current = env.installed()
    items = [_planned(p) for p in plan.install]
    wanted = [(i.requirement, f"undo {plan.task_id}") for i in items if i.requirement is not None]
    local = [(Path(i.text), f"undo {plan.task_id}") for i in items if i.kind == "path"]
    missing = wheelhouse.missing(wanted, env, current, local_wheels=local)
    if missing:
        names = [m.requirement for m in missing]
        searched = [str(f) for f in wheelhouse.folders]
        raise DepsMissingWheels(
            f"undo of task {plan.task_id}: the wheelhouse lacks {', '.join(names)}; nothing was changed",
            hint="Copy these wheels into the wheelhouse (cm-cli.py download-deps on a machine with network: "
            f"`cm-cli.py download-deps {' '.join(names)}`), then run the undo again.",
            details={"missing": names, "wheelhouse": searched, "task": plan.task_id},
        )


def _installer(manager: Manager) -> Any:
    from .deps.installer import installer_for  # the installer for ComfyUI's python

    return installer_for(manager)


# --- apply -------------------------------------------------------------------------------------------
def run_undo(
    manager: Manager,
    task_id: str,
    ctx: TaskContext | None = None,
    *,
    include_torch: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Resolve, then (unless ``dry_run``) apply: earlier versions back, added packages out, the pack step."""
    plan = plan_undo(manager, task_id, include_torch=include_torch)
    out: dict[str, Any] = {"plan": plan.to_dict(), "dry_run": dry_run, "done": []}
    if dry_run or plan.empty:
        if plan.empty:
            out["note"] = "nothing to undo: the environment already matches the record"
        return out

    def emit(line: str) -> None:
        if ctx is not None:
            ctx.progress("undo", None, str(line))

    try:
        if plan.install:
            out["done"].append({"step": "install", "result": _install(manager, plan.install, emit)})
        if plan.remove:
            out["done"].append({"step": "remove", "result": _uninstall(manager, plan.remove, emit)})
        if plan.pack:  # last: when it fails, its own journal has undone its moves
            out["done"].append({"step": "pack", "result": _pack_step(manager, plan.pack, ctx)})
    except Exception as exc:
        rolled = _roll_back(manager, plan.start, emit)
        if isinstance(exc, ManagerError):
            exc.details = {**exc.details, "rolled_back": rolled, "undo_steps_done": [d["step"] for d in out["done"]]}
            exc.message = f"undo of task {task_id} failed and was rolled back ({rolled['state']}): {exc.message}"
        raise
    try:
        record = load_record(manager, task_id)
        record["undone_by"] = ctx.task_id if ctx is not None else "cli"
        write_record(manager, record)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not mark task %s as undone: %s", task_id, exc)
    return out


def _roll_back(manager: Manager, start: list[dict[str, str]], emit: Callable[[str], None]) -> dict[str, Any]:
    """After a failed apply: the package set back to ``start`` (what the undo found). Never raises:
    what could not be put back is named in the answer (``state``: ``complete`` or ``partial``)."""
    out: dict[str, Any] = {"state": "complete", "reinstalled": [], "removed": [], "failed": []}
    try:
        now = probe_packages(target_python(manager))
        was = {p["name"]: p for p in start}
        have = {p["name"]: p for p in now}
        changed = package_changes(start, now)
        back = [dict(was[n]) for n in changed if n in was and was[n]["source"] != "editable"]
        extra = [n for n in changed if n not in was and n in have]
        if back:
            _install(manager, back, emit)
            out["reinstalled"] = [f"{p['name']}=={p['version']}" for p in back]
        if extra:
            _uninstall(manager, extra, emit)
            out["removed"] = extra
        left = package_changes(start, probe_packages(target_python(manager)))
        if left:
            out["state"], out["failed"] = "partial", left
    except Exception as exc:  # noqa: BLE001 - the rollback reports, the first error is what the task raises
        log.warning("rollback of a failed undo was incomplete: %s", exc)
        out["state"] = "partial"
        out["failed"].append(getattr(exc, "message", str(exc)))
    return out


def _install(manager: Manager, packages: list[dict[str, str]], emit: Callable[[str], None]) -> dict[str, Any]:
    """Exact pins, past the downgrade protection on purpose (an undo puts back what was there)."""
    from .deps.plan import DepsPlan

    installer = _installer(manager)
    items = tuple(_planned(p) for p in packages)
    result = installer.install_plan(DepsPlan((), items, (), (), installer.environment.installed()), emit)
    return dict(result.to_dict())


def _planned(p: Mapping[str, str]) -> Any:
    """``name==version``; a package installed from a local file that still exists comes from that file
    (so its ``direct_url.json``, and ``pip freeze``'s ``name @ file://...`` line, come back too)."""
    from urllib.parse import unquote, urlparse

    from packaging.requirements import Requirement

    from .deps.plan import Planned

    pin = f"{p['name']}=={p['version']}"
    if p.get("source") == "local" and p.get("url"):
        path = Path(unquote(urlparse(p["url"]).path))
        if path.is_file():
            return Planned(p["name"], str(path), "path", ("undo",), ())
    return Planned(p["name"], pin, "name", ("undo",), (), Requirement(pin))


def _uninstall(manager: Manager, names: list[str], emit: Callable[[str], None]) -> dict[str, Any]:
    from .deps.backends.base import RunOptions, run_streaming
    from .deps.errors import DepsInstallFailed

    choice = _installer(manager).choice
    if choice.name == "uv":
        cmd = [*choice.command, "pip", "uninstall", "--python", choice.python, *names]
    else:
        cmd = [*choice.command, "uninstall", "-y", *names]
    res = run_streaming(cmd, emit, options=RunOptions())
    if not res.ok:
        raise DepsInstallFailed(
            f"{choice.name} failed to uninstall {', '.join(names)} (exit {res.returncode})",
            hint="Read the installer output; uninstall the packages by hand if needed.",
            details={"command": cmd, "output_tail": list(res.output_tail)},
        )
    return {"uninstalled": names}


def _pack_step(manager: Manager, step: Mapping[str, Any], ctx: TaskContext | None) -> dict[str, Any]:
    from .operations import Ops, Reporter, remove, update

    ops, rep = Ops(manager), Reporter(ctx) if ctx is not None else Reporter()
    if step["action"] == "uninstall":
        return remove.uninstall(ops, step["pack"], rep).to_dict()
    if step["action"] == "restore_trash":
        return remove.restore_trash(ops, step["entry"], rep).to_dict()
    return update.switch_version(
        ops, step["pack"], rep, version=step.get("version", ""), commit=step.get("commit", ""), skip_deps=True
    ).to_dict()
