"""cm-cli commands that change the tree: pack operations, models, snapshots, dependencies.

Every change goes through the task table, as the API's do: ``Manager.plan`` validates the
parameters, classifies the source and asks the security policy (the CLI's listener is loopback);
the task is queued on the Manager's task queue (which holds the cross-process operations lock)
and run here in the foreground, with progress printed. Commands, help and flags of the queued
kinds come from the table (``manager/kinds``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..context import Manager
from ..errors import ManagerError, NotFound
from ..events import Task, TaskSpec
from ..kinds import BY_NAME, KINDS, TaskKind
from ..kinds.params import SnapshotRestoreParams
from . import exit_codes, restore_report
from .render import human_size, table

CLI_LISTEN = "127.0.0.1"  # policy input: the shell is a local user, like a loopback listener

# one-word commands that queue one kind per target; their help and flags come from the task table
PACK_VERBS = ("install", "reinstall", "uninstall", "update", "fix", "disable", "enable")
TABLE_VERBS = (*PACK_VERBS, "switch-version", "install-model", "install-pip")


def _kind_of_command(command: str) -> TaskKind:
    return next(k for k in KINDS if k.cli == command)


# what the restore flags do in `snapshot restore` (ours: index packages by default), added to each help
RESTORE_HELP = {
    "pip_non_url": "without any --pip-* flag `snapshot restore` restores these too (the classic restore-snapshot "
    "restores no python package then)",
    "pip_non_local_url": "(git+https://...); each URL must be allowed by allowed_pip_sources",
    "pip_local_url": "the files must exist on this machine",
    "only": "nodes: only the packs; pips: only the python packages; all (default): both",
}


def add_flags(parser: argparse.ArgumentParser, kind: TaskKind, helps: dict[str, str] | None = None) -> None:
    """argparse options of the fields a kind offers on the command line (help from the dataclass,
    followed by what ``helps`` adds for this command)."""
    for f in kind.params.fields():
        if f.name not in kind.params.CLI_FIELDS:
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        text = "; ".join(t for t in (f.metadata.get("help"), (helps or {}).get(f.name)) if t)
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, action="store_true", help=text)
        else:
            parser.add_argument(
                flag,
                dest=f.name,
                choices=[c for c in f.metadata.get("choices", ()) if c] or None,
                default=None,
                help=text,
            )


def add_parsers(sub: Any) -> None:
    """Register the mutating commands on the CLI's sub-parser table."""
    for verb in TABLE_VERBS:
        kind = _kind_of_command(verb)
        extra = {
            "update": "; 'all' updates every pack (update_all)",
            "fix": "; 'all' fixes every installed pack",
            "disable": "; 'all' disables every enabled pack",
            "enable": "; 'all' enables every disabled pack",
        }
        s = sub.add_parser(
            verb, help=kind.summary[0].lower() + kind.summary[1:] + extra.get(verb, ""), description=kind.summary
        )
        s.add_argument("targets", nargs="+" if verb != "switch-version" else 1, metavar="TARGET", help=kind.target)
        add_flags(s, kind)
        if kind.preview is not None:
            s.add_argument(
                "--dry-run",
                action="store_true",
                help="show the plan (packs, python packages, moves, blockers) and change nothing; nothing is queued",
            )
    s = sub.add_parser("snapshot", help="save, list, show, diff, restore or remove snapshots")
    s.add_argument(
        "action",
        choices=["save", "list", "show", "diff", "restore", "remove"],
        help="save the current state, list the stored snapshots, show one, diff it against the current state, "
        "restore it, or remove it",
    )
    s.add_argument("name", nargs="?", help="snapshot name (or, for restore, a snapshot file to import)")
    s.add_argument("--output", help="save: also write the snapshot to this file (.json, .yaml)")
    s.add_argument("--dry-run", action="store_true", help="restore: show the plan, change nothing")
    add_flags(s, BY_NAME["snapshot_restore"], RESTORE_HELP)
    s = sub.add_parser("trash", help="list, restore or empty the trash (uninstalled packs)")
    s.add_argument(
        "action",
        choices=["list", "restore", "empty"],
        help="list the entries, restore entries to custom_nodes, or empty the trash (all, or the entries named)",
    )
    s.add_argument("entries", nargs="*", metavar="ENTRY", help="trash entry ids (restore: one or more)")
    add_flags(s, BY_NAME["empty_trash"])
    kind = BY_NAME["undo"]
    s = sub.add_parser("undo", help=kind.summary[0].lower() + kind.summary[1:], description=kind.summary)
    s.add_argument("task", nargs="?", metavar="TASK", help=kind.target)
    s.add_argument("--list", action="store_true", help="list the undo records kept (newest first)")
    s.add_argument("--prune", action="store_true", help="delete undo records (all, or those older than --older-than)")
    s.add_argument(
        "--older-than", type=float, default=None, metavar="DAYS", help="--prune: only records older than DAYS"
    )
    add_flags(s, kind)
    from . import bundle_commands  # bundle create|verify|import

    bundle_commands.add_parsers(sub)


def flag_params(kind: TaskKind, args: argparse.Namespace) -> dict[str, Any]:
    """The kind's parameters given on the command line (unset flags left out)."""
    out: dict[str, Any] = {}
    for name in kind.params.CLI_FIELDS:
        value = getattr(args, name, None)
        if value not in (None, False):
            out[name] = value
    return out


# --- running tasks in the foreground ---------------------------------------------------------
def _printer(as_json: bool) -> Any:
    """One updating progress line per task on a terminal, plain deduplicated lines otherwise."""
    from .progress import event_printer

    return event_printer(as_json)


def run_tasks(manager: Manager, requests: list[tuple[str, str, dict[str, Any]]], *, as_json: bool) -> list[Task]:
    """Plan (validate, classify, decide) every ``(kind, target, params)`` request first, then queue
    and run them in order; stops at the first failure."""
    view = manager.catalog_view() if any(k != "install_pip" for k, _t, _p in requests) else None
    planned = [manager.plan(kind, target, params, listen=CLI_LISTEN, view=view) for kind, target, params in requests]
    return run_specs(manager, [p.spec for p in planned], as_json=as_json)


def run_specs(manager: Manager, specs: list[TaskSpec], *, as_json: bool) -> list[Task]:
    """Run already-decided task specs in the foreground, printing progress. A failed task does not
    stop the others (cron wants everything that can be done, done); at the end the first failure is
    raised, marked PARTIAL when some other task was done (``exit_codes``). Each finished task leaves
    its line in the audit log (door ``cli``), as the HTTP door's tasks do."""
    queue = manager.queue
    unsubscribe = queue.subscribe(_printer(as_json))
    finished: list[Task] = []
    first: _TaskFailed | None = None
    try:
        queue.start()
        for spec in specs:
            if not as_json:
                print(f"{spec.kind} {spec.target} ...", flush=True)
            task = queue.enqueue(spec, client_id="cli")
            queue.run_until_idle(timeout=None)
            final = queue.get(task.id)
            finished.append(final)
            _audit_task(manager, final)
            exit_codes.TALLY.task_ids.append(final.id)
            if final.error:
                err = final.error
                failure = _TaskFailed(
                    err.get("code", "internal_error"),
                    err.get("message", ""),
                    err.get("hint", ""),
                    err.get("details") or {},
                )
                exit_codes.TALLY.failed.append((f"{spec.kind} {spec.target}", failure.code))
                first = first or failure
                if not as_json and len(specs) > 1:
                    print(f"{spec.kind} {spec.target}: FAILED [{failure.code}]", flush=True)
                continue
            exit_codes.TALLY.done.append(f"{spec.kind} {spec.target}")
            if not as_json:
                print(
                    f"{spec.kind} {spec.target}: done"
                    + (" (restart ComfyUI to load it)" if final.restart_required else "")
                )
    finally:
        unsubscribe()
        queue.stop(timeout=30)
    if first is not None:
        done = [t.to_dict() for t in finished if not t.error]
        if done:
            first.details = {**first.details, "done": [f"{t['kind']} {t['target']}" for t in done]}
            exit_codes.mark(first, exit_codes.PARTIAL)
        raise first
    return finished


def _audit_task(manager: Manager, task: Task) -> None:
    """The task's line in the audit log (never fails the command)."""
    from ..audit import AuditLog, audit_enabled, task_entry

    if audit_enabled(manager.config):
        AuditLog.for_layout(manager.layout).write(task_entry(task.to_dict(), door="cli"))


class _TaskFailed(ManagerError):
    """A queued task failed: carries that task's own code, message and hint to the CLI output."""

    code = "task_failed"
    http_status = 500

    def __init__(self, code: str, message: str, hint: str, details: dict[str, Any]):
        super().__init__(message, hint=hint, details=details)
        self.code = code  # type: ignore[misc]  # surface the operation's stable code, not ours


def _installed_ids(manager: Manager) -> list[str]:
    return [p.name for p in manager.inventory().packs]


def own_folder() -> Path:
    """This Manager's own checkout (never disabled by ``disable all``)."""
    return Path(__file__).resolve().parents[2]


def _toggle_targets(manager: Manager, *, enabled: bool) -> list[str]:
    """Entries ``disable all`` (enabled ones) or ``enable all`` (disabled ones) acts on; never ourselves."""
    me = own_folder()
    return [p.name for p in manager.inventory().packs if p.enabled == enabled and Path(p.path).resolve() != me]


def cmd_table_verb(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    """A one-word command of the task table: one task per target ('all' for update and fix)."""
    verb = args.command
    kind = _kind_of_command(verb)
    params = flag_params(kind, args)
    requests: list[tuple[str, str, dict[str, Any]]] = []
    if verb == "install-pip":
        requests.append(("install_pip", "", {**params, "packages": list(args.targets)}))
    for target in args.targets if verb != "install-pip" else ():
        if target == "all" and verb == "update":
            requests.append(("update_all", "all", params))
        elif target == "all" and verb == "fix":
            requests += [("fix", name, params) for name in _installed_ids(m)]
        elif target == "all" and verb in ("disable", "enable"):
            requests += [(verb, name, params) for name in _toggle_targets(m, enabled=verb == "disable")]
        else:
            requests.append((kind.name, target, params))
    if getattr(args, "dry_run", False):
        return dry_run_plans(m, requests, as_json=args.json)
    return [t.to_dict() for t in run_tasks(m, requests, as_json=args.json)]


def dry_run_plans(manager: Manager, requests: list[tuple[str, str, dict[str, Any]]], *, as_json: bool) -> Any:
    """``--dry-run``: the plan record of every request (``manager.plans``), printed; nothing queued.
    Shown at any security level: a denial is the plan's first blocker."""
    from ..kinds.planner import preview_plan

    view = manager.catalog_view()
    plans = [
        preview_plan(manager, manager.plan(kind, target, params, listen=CLI_LISTEN, view=view, enforce=False))
        for kind, target, params in requests
    ]
    if not as_json:
        for plan in plans:
            print_plan(plan)
    return plans


def plan_rows(plan: dict[str, Any]) -> list[list[str]]:
    """The rows of one plan record as the CLI shows it (WHAT, NAME, FROM, TO, WHY)."""
    rows = [["blocked", str(b.get("code", "")), "", "", str(b.get("message", ""))] for b in plan["blockers"]]
    for change, packs in plan["packs"].items():
        rows += [[f"pack {change}", p["name"], p["from"], p["to"], p["note"]] for p in packs]
    rows += [["move", "", m["from"], m["to"], m["why"]] for m in plan["moves"]]
    for change, items in plan["python"].items():
        rows += [[f"python {change}", p["name"], p["from"], p["to"], ""] for p in items]
    if plan["skip_deps"]:
        rows += [
            ["left out (skip-deps)", p["name"], p["from"], p["to"], p["change"]] for p in plan["with_deps"]["python"]
        ]
    rows += [
        ["held back", h["requirement"], h["installed"], "", f"asked by {h['pack']} ({h['reason']})"]
        for h in plan["held_back"]
    ]
    rows += [["note", "", "", "", str(n)] for n in plan["notes"]]
    return rows


def print_plan(plan: dict[str, Any]) -> None:
    state = "" if plan["ok"] else "  (blocked: it would not run)"
    print(f"plan: {plan['kind']} {plan['target']}{state}")
    table(plan_rows(plan), ["WHAT", "NAME", "FROM", "TO", "WHY"], free=[4], empty="  nothing would change")
    print(f"python packages resolved by: {plan['resolver'] or '(not resolved: no requirement to install)'}")


def cmd_trash(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from ..operations.remove import list_trash

    if args.action == "list":
        entries = list_trash(m.layout, with_size=True)
        if not args.json:
            table(
                [
                    [
                        e.id,
                        e.name,
                        e.kind,
                        e.version or e.commit[:12],
                        e.reason,
                        _when(e.trashed_at),
                        human_size(e.size_bytes),
                        e.original,
                    ]
                    for e in entries
                ],
                ["ENTRY", "PACK", "KIND", "VERSION", "REASON", "TRASHED", "SIZE", "WAS"],
                free=[7],
                empty="the trash is empty",
            )
        return [e.to_dict() for e in entries]
    requests: list[tuple[str, str, dict[str, Any]]]
    if args.action == "restore":
        if not args.entries:
            raise NotFound("trash restore needs an entry id", hint="cm-cli.py trash list shows them")
        requests = [("restore_trash", entry, {}) for entry in args.entries]
    else:
        params = flag_params(BY_NAME["empty_trash"], args)
        requests = [("empty_trash", "trash", {**params, **({"entries": args.entries} if args.entries else {})})]
    return [t.to_dict() for t in run_tasks(m, requests, as_json=args.json)]


def cmd_undo(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    """``undo TASK`` queues the ``undo`` kind; ``--list`` and ``--prune`` read and prune the records."""
    from .. import undo

    if args.list:
        records = undo.list_records(m)
        if not args.json:
            table(
                [
                    [
                        r["task_id"],
                        r["kind"],
                        r["target"],
                        r["pack"],
                        str(r["packages_changed"]),
                        "ok" if r["ok"] else "failed",
                        r["undone_by"],
                        _when(r["finished"]),
                    ]
                    for r in records
                ],
                ["TASK", "KIND", "TARGET", "PACK", "PACKAGES", "STATE", "UNDONE BY", "FINISHED"],
                empty="no undo records",
            )
        return records
    if args.prune:
        removed = undo.prune_records(m, older_than_days=args.older_than)
        if not args.json:
            print(f"removed {len(removed)} undo record(s)")
        return {"removed": removed}
    if not args.task:
        raise NotFound("undo needs a task id", hint="cm-cli.py undo --list shows the tasks that can be undone")
    params = flag_params(BY_NAME["undo"], args)
    return [t.to_dict() for t in run_tasks(m, [("undo", args.task, params)], as_json=args.json)]


def snapshot_table(entries: list[Any]) -> tuple[list[list[str]], list[str]]:
    """Rows and headers of a snapshot listing (``snapshot list``, ``show snapshot-list``)."""
    rows = []
    for e in entries:
        summary = e.summary if isinstance(e.summary, dict) else {}
        if e.error:
            packs, pips = "unreadable", "-"
            why = str((e.error or {}).get("message") or e.error)
        else:
            packs = str(summary.get("packs", "?"))
            if summary.get("disabled"):
                packs += f" ({summary['disabled']} disabled)"
            pips, why = str(summary.get("python_packages", "?")), e.reason or e.origin
        rows.append([e.name, _created(e.created_at), packs, pips, why])
    return rows, ["NAME", "CREATED", "PACKS", "PIPS", "REASON"]


def _created(stamp: str) -> str:
    """``2026-01-02T03:04:05.678Z`` -> ``2026-01-02 03:04:05Z`` (the listing; --json has it whole)."""
    text = str(stamp or "")
    if "T" in text and len(text) >= 19:
        return text[:10] + " " + text[11:19] + ("Z" if text.endswith("Z") else "")
    return text or "-"


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds)) if seconds else "-"


# --- snapshots ---------------------------------------------------------------------------------
def cmd_snapshot(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from ..kinds.runners import restore_options
    from ..snapshots import SnapshotStore, store_of
    from ..snapshots.capture import capture
    from ..snapshots.diff import diff_current
    from ..snapshots.restore import plan_restore

    store = store_of(m)
    action = args.action
    if action == "list":
        entries = store.entries()
        if not args.json:
            table(*snapshot_table(entries), free=[4], empty=f"no snapshot in {store.folder}")
        return [e.to_dict() for e in entries]
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
    if action == "restore" and Path(name).is_file():  # a file: checked, imported, then restored by name
        from ..snapshots.store import read_snapshot_file
        from ..snapshots.validate import check_entries, refusal_error, refused

        problems = check_entries(read_snapshot_file(Path(name)))
        if refused(problems):
            raise refusal_error(name, problems)  # refused before the file is even copied into the store
        name = store.import_file(Path(name)).name
    snap = store.load(name)
    if action == "show":
        doc = snap.to_json()
        if not args.json:
            counts = snap.summary()
            print(
                f"{name}: taken {snap.created_at} ({snap.reason or snap.origin}), {counts['packs']} pack(s), "
                f"{counts['python_packages']} python package(s), {counts['models']} model(s)"
            )
            table(
                [
                    [p.name, p.kind, p.version or p.commit[:12], "enabled" if p.enabled else "disabled"]
                    for p in snap.packs
                ],
                ["PACK", "KIND", "VERSION", "STATE"],
                empty="(no pack)",
            )
        return doc
    if action == "diff":
        d = diff_current(m, snap)
        if not args.json:
            print("\n".join(d.lines()) or "no differences")
        return d.to_json()
    from ..snapshots.validate import refusal_error

    planned = m.plan(
        "snapshot_restore",
        name,
        {**flag_params(BY_NAME["snapshot_restore"], args), **({"dry_run": True} if args.dry_run else {})},
        listen=CLI_LISTEN,
        enforce=not args.dry_run,
    )  # a real restore of a snapshot with an unsafe entry is refused here (snapshot_invalid), before a task
    plan = plan_restore(
        m,
        snap,
        restore_options(SnapshotRestoreParams.from_mapping(planned.spec.params, lenient=True)),
        where=name,
    )
    if not args.json:
        print(f"restore plan for {name}:")
        print("\n".join(plan.lines()) or "  nothing to do")
    if plan.refused:  # the dry run shows them, and exits non-zero like the restore would
        raise refusal_error(name, plan.problems)
    if args.dry_run:
        _refuse_skipped(name, [p.to_dict() for p in plan.skipped], plan.to_json())
        return plan.to_json()
    tasks = [t.to_dict() for t in run_specs(m, [planned.spec], as_json=args.json)]
    partial = restore_report.finish(name, tasks, as_json=args.json)  # counts + failed entries from the capture
    try:
        _refuse_skipped(name, [s for t in tasks for s in (t.get("result") or {}).get("skipped") or []], tasks)
    except ManagerError as err:  # everything else was restored: partial, not failed
        raise exit_codes.mark(err, exit_codes.PARTIAL) from None
    if partial is not None:
        raise partial
    return tasks


def _refuse_skipped(name: str, skipped: list[dict[str, Any]], report: Any) -> None:
    """``snapshot restore`` exits non-zero when an entry of the snapshot was left out (reported, with why)."""
    if not skipped:
        return
    from ..errors import SnapshotInvalid

    listing = "; ".join(f"{s['field']} ({s['entry']}): {s['problem']}" for s in skipped[:5])
    raise SnapshotInvalid(
        f"{name}: {len(skipped)} snapshot entr{'y was' if len(skipped) == 1 else 'ies were'} skipped, not restored: "
        + listing
        + (" ..." if len(skipped) > 5 else ""),
        hint="Everything else was restored as planned. Restore the skipped entries by hand, or take a new snapshot.",
        details={"skipped": skipped, "report": report, "field": skipped[0]["field"]},
    )


def cmd_bundle(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from .bundle_commands import cmd_bundle as run

    return run(m, args, refresh)


COMMANDS = {
    **{verb: cmd_table_verb for verb in TABLE_VERBS},
    "snapshot": cmd_snapshot,
    "trash": cmd_trash,
    "undo": cmd_undo,
    "bundle": cmd_bundle,  # bundle import is the bundle_import kind (manager/cli/bundle_commands.py)
}
