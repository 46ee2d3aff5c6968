"""cm-cli commands that change the tree: pack operations, models, snapshots, dependencies.

Every change goes through the same door as the API: the request is classified and decided
by the security policy (``plan_task``), queued on the Manager's task queue (which holds the
cross-process operations lock) and run here in the foreground, with progress printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..context import Manager
from ..errors import ManagerError, NotFound
from ..events import Event, Task, TaskSpec
from .render import human_age, table

PACK_VERBS = ("install", "reinstall", "uninstall", "update", "fix", "disable", "enable")


def add_parsers(sub: Any) -> None:
    """Register the mutating commands on the CLI's sub-parser table."""
    for verb in PACK_VERBS:
        s = sub.add_parser(verb, help=f"{verb} node packs (id, id@version, git URL or local path; "
                                      f"'all' for update/fix)")
        s.add_argument("targets", nargs="+", metavar="PACK")
        if verb in ("install", "reinstall"):
            s.add_argument("--version", help="registry version, 'nightly' or 'latest'")
            s.add_argument("--no-deps", action="store_true", help="skip requirements.txt")
    s = sub.add_parser("switch-version", help="move a pack to a registry version, nightly or a git commit")
    s.add_argument("target", metavar="PACK")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--version")
    g.add_argument("--commit")
    s = sub.add_parser("install-model", help="download a model of the channel's model list into its folder")
    s.add_argument("targets", nargs="+", metavar="MODEL", help="model id (save_path/filename), name or file name")
    s = sub.add_parser("snapshot", help="save, list, show, diff, restore or remove snapshots")
    s.add_argument("action", choices=["save", "list", "show", "diff", "restore", "remove"])
    s.add_argument("name", nargs="?", help="snapshot name (or, for restore, a snapshot file to import)")
    s.add_argument("--output", help="save: also write the snapshot to this file (.json, .yaml)")
    s.add_argument("--dry-run", action="store_true", help="restore: show the plan, change nothing")
    for flag in ("--pip-non-url", "--pip-non-local-url", "--pip-local-url", "--no-deps"):
        s.add_argument(flag, action="store_true", help="restore: classic restore flag")
    s.add_argument("--only", choices=["all", "nodes", "pips"], default="all")
    s = sub.add_parser("export-deps", help="write one requirements file for every installed pack")
    s.add_argument("--output", default="requirements-offline.txt")
    s.add_argument("--pin-installed", action="store_true", help="pin to the versions installed here")
    s = sub.add_parser("download-deps", help="fill a wheelhouse from a requirements file (online/private)")
    s.add_argument("requirements")
    s.add_argument("--dest", help="wheelhouse folder (default: the Manager's wheelhouse)")


# --- running tasks in the foreground ---------------------------------------------------------
def _printer(as_json: bool) -> Any:
    last_stage = [""]

    def show(event: Event) -> None:
        if as_json:
            return
        data = event.data or {}
        if event.name == "progress":
            line, stage = data.get("line") or "", data.get("stage") or ""
            if not line and stage == last_stage[0]:
                return                      # a bare percent tick of the same stage: nothing to say
            last_stage[0] = stage
            sys.stderr.write(f"  [{stage}] {line}\n" if line else f"  [{stage}]\n")
        elif event.name == "restart-required":
            sys.stderr.write("  restart ComfyUI to load the change\n")
    return show


def run_tasks(manager: Manager, requests: list[tuple[str, str, dict[str, Any]]], *, as_json: bool) -> list[Task]:
    """Decide, queue and run ``(kind, target, params)`` requests in order; stops at the first failure."""
    from ..api.handlers_queue import plan_task
    from ..api.service import Api

    api = Api(manager, listen="127.0.0.1", door="cli")
    view = manager.catalog_view()
    return run_specs(manager, [plan_task(api, view, kind, target, params).spec
                               for kind, target, params in requests], as_json=as_json)


def run_specs(manager: Manager, specs: list[TaskSpec], *, as_json: bool) -> list[Task]:
    """Run already-decided task specs in the foreground, printing progress; raises on the first failure."""
    queue = manager.queue
    unsubscribe = queue.subscribe(_printer(as_json))
    done: list[Task] = []
    try:
        queue.start()
        for spec in specs:
            if not as_json:
                print(f"{spec.kind} {spec.target} ...", flush=True)
            task = queue.enqueue(spec, client_id="cli")
            queue.run_until_idle(timeout=None)
            final = queue.get(task.id)
            done.append(final)
            if final.error:
                err = final.error
                raise _TaskFailed(err.get("code", "internal_error"), err.get("message", ""), err.get("hint", ""),
                                  err.get("details") or {})
            if not as_json:
                print(f"{spec.kind} {spec.target}: done"
                      + (" (restart ComfyUI to load it)" if final.restart_required else ""))
    finally:
        unsubscribe()
        queue.stop(timeout=30)
    return done


class _TaskFailed(ManagerError):
    """A queued task failed: carries that task's own code, message and hint to the CLI output."""

    code = "task_failed"
    http_status = 500

    def __init__(self, code: str, message: str, hint: str, details: dict[str, Any]):
        super().__init__(message, hint=hint, details=details)
        self.code = code  # type: ignore[misc]  # surface the operation's stable code, not ours


def _installed_ids(manager: Manager) -> list[str]:
    return [p.name for p in manager.inventory().packs]


def cmd_pack_verb(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    verb = args.command
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for target in args.targets:
        if target == "all" and verb == "update":
            requests.append(("update_all", "all", {}))
        elif target == "all" and verb == "fix":
            requests += [("fix", name, {}) for name in _installed_ids(m)]
        else:
            params: dict[str, Any] = {}
            if getattr(args, "version", None):
                params["version"] = args.version
            if getattr(args, "no_deps", False):
                params["skip_deps"] = True
            requests.append((verb, target, params))
    tasks = run_tasks(m, requests, as_json=args.json)
    return [t.to_dict() for t in tasks]


def cmd_switch_version(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    params = {"version": args.version} if args.version else {"commit": args.commit}
    return [t.to_dict() for t in run_tasks(m, [("switch_version", args.target, params)], as_json=args.json)]


def cmd_install_model(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    tasks = run_tasks(m, [("install_model", t, {}) for t in args.targets], as_json=args.json)
    return [t.to_dict() for t in tasks]


# --- snapshots ---------------------------------------------------------------------------------
def cmd_snapshot(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from ..snapshots import SnapshotStore, store_of
    from ..snapshots.capture import capture
    from ..snapshots.diff import diff_current
    from ..snapshots.plan import RestoreOptions
    from ..snapshots.restore import plan_restore

    store = store_of(m)
    action = args.action
    if action == "list":
        rows = [e.to_dict() for e in store.entries()]
        if not args.json:
            table([[r["name"], str(r.get("created_at", "")), str(r.get("summary", ""))[:80]] for r in rows],
                  ["NAME", "CREATED", "SUMMARY"])
        return rows
    if action == "save":
        snap = capture(m, reason="cli")
        saved = store.save(snap, args.name)
        if args.output:
            SnapshotStore.export(snap, Path(args.output))
        if not args.json:
            print(f"saved snapshot {saved.name}" + (f" (also written to {args.output})" if args.output else ""))
        return saved.to_dict()
    if not args.name:
        raise NotFound(f"snapshot {action} needs a snapshot name", hint="cm-cli.py snapshot list shows them")
    if action == "remove":
        store.remove(args.name)
        if not args.json:
            print(f"removed snapshot {args.name}")
        return {"removed": args.name}
    name = args.name
    if action == "restore" and Path(name).is_file():   # a file: import it, then restore by name
        name = store.import_file(Path(name)).name
    snap = store.load(name)
    if action == "show":
        doc = snap.to_json()
        if not args.json:
            print(f"{name}: {snap.summary()}")
            for pack in snap.packs:
                print(f"  {pack.name}  {pack.kind}  {pack.version or pack.commit[:12]}"
                      f"{'' if pack.enabled else '  (disabled)'}")
        return doc
    if action == "diff":
        d = diff_current(m, snap)
        if not args.json:
            print("\n".join(d.lines()) or "no differences")
        return d.to_json()
    options = RestoreOptions(pip_non_url=args.pip_non_url, pip_non_local_url=args.pip_non_local_url,
                             pip_local_url=args.pip_local_url, no_deps=args.no_deps, only=args.only)
    plan = plan_restore(m, snap, options, where=name)
    if not args.json:
        print(f"restore plan for {name}:")
        print("\n".join(plan.lines()) or "  nothing to do")
    if args.dry_run:
        return plan.to_json()
    return [t.to_dict() for t in _restore(m, name, options.to_dict(), args.json)]


def _restore(m: Manager, name: str, params: dict[str, Any], as_json: bool) -> list[Task]:
    """Restore through the queue with a policy decision made here (a restore may install git packs)."""
    from .. import security as sec
    from ..api.service import Api

    decision = Api(m, listen="127.0.0.1", door="cli").require(sec.SNAPSHOT_RESTORE, "", details={"target": name})
    return run_specs(m, [TaskSpec("snapshot_restore", name, {**params, "policy": decision.to_dict()})],
                     as_json=as_json)


# --- dependencies ------------------------------------------------------------------------------
def cmd_export_deps(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from ..deps.export import export_requirements
    from ..deps.installer import DependencyInstaller
    from ..deps.policy import deps_policy_from_config

    installer = DependencyInstaller(deps_policy_from_config(m.config, m.layout), m.gate)
    packs = [(p.name, Path(p.path)) for p in m.inventory().packs if p.enabled and p.has_requirements]
    result = export_requirements(installer, packs, Path(args.output), pin_installed=args.pin_installed)
    if not args.json:
        print(f"wrote {result.path}: {len(result.requirements)} requirement(s) from {len(result.packs)} pack(s)")
        for problem in result.problems:
            print(f"  left out: {problem}")
    return {"path": str(result.path), "requirements": list(result.requirements), "packs": list(result.packs),
            "problems": list(result.problems)}


def cmd_download_deps(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from ..deps.export import download_deps
    from ..deps.policy import deps_policy_from_config

    dest = Path(args.dest) if args.dest else m.layout.wheelhouse_dir
    result = download_deps(Path(args.requirements), dest, policy=deps_policy_from_config(m.config, m.layout),
                           gate=m.gate, progress=None if args.json else (lambda line: print(f"  {line}")))
    if not args.json:
        print(f"{len(result.added)} new wheel(s) in {result.wheelhouse} ({result.seconds:.1f}s); "
              "carry this folder to the offline machine's wheelhouse")
    return {"wheelhouse": str(result.wheelhouse), "added": list(result.added)}


def cmd_show_installed(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    """``show installed|enabled|disabled``: what is on disk, matched against the catalog when it loads."""
    try:
        m.catalog_view(refresh=refresh)
    except ManagerError as err:   # the tree can be listed without channel data
        if not args.json:
            sys.stderr.write(f"note [{err.code}]: no catalog to match against ({err.message})\n")
    inv = m.inventory()
    packs = [p for p in inv.packs if args.what == "installed" or p.enabled == (args.what == "enabled")]
    if not args.json:
        for p in packs:
            state = "ENABLED" if p.enabled else "DISABLED"
            what = p.version or (p.commit[:12] if p.commit else p.kind)
            print(f"[ {state:8} ] {p.name}  {what}" + (f"  (catalog: {p.catalog_id})" if p.catalog_id else ""))
        for c in inv.conflicts:
            print(f"[ CONFLICT ] {c.to_dict()}")
    return {"packs": [p.to_dict() for p in packs], "conflicts": [c.to_dict() for c in inv.conflicts]}


COMMANDS = {
    **{verb: cmd_pack_verb for verb in PACK_VERBS},
    "switch-version": cmd_switch_version, "install-model": cmd_install_model, "snapshot": cmd_snapshot,
    "export-deps": cmd_export_deps, "download-deps": cmd_download_deps,
}
