"""The classic ``cm-cli.py`` commands that have no task-table verb of their own.

Same names and arguments as the classic command line (``show``/``simple-show`` with every classic
list, ``save-snapshot``, ``restore-snapshot``, ``restore-dependencies``, ``install-deps``,
``deps-in-workflow``, ``post-install``, ``clear``, ``cli-only-mode``, ``export-custom-node-ids``,
``show-versions``), built on our operations: anything that changes packs is planned and queued
through the task table (``ops_commands.run_tasks``: ``Manager.plan`` with a loopback listener, the
queue and its operations lock), so policy, audit log and exit codes are the same as ``install``'s.
docs/cli.md is the command reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ..context import Manager
from ..errors import ManagerError, NotFound, RequestInvalid, WorkflowInvalid
from ..fsops import atomic_write_bytes
from ..host import StandaloneHost
from ..kinds import BY_NAME
from ..network import run_sync
from . import ops_commands
from .render import human_age, table

SHOW_LISTS = (
    "installed",
    "enabled",
    "not-installed",
    "disabled",
    "import-fail",
    "all",
    "snapshot",
    "snapshot-list",
    "cnr",
)
SHOW_HELP = (
    "installed: every pack on disk; enabled / disabled: those only; not-installed: catalog packs not "
    "on disk; import-fail: packs ComfyUI failed to import at its last start; all: the whole catalog with "
    "each pack's state; snapshot: the current state as a snapshot document (nothing saved); "
    "snapshot-list: the saved snapshots; cnr: installed packs that came from the Comfy Registry"
)
CLI_ONLY_FLAG = ".enable-cli-only-mode"  # the classic flag file, in the manager data folder
_OUR_RESTORE_HELP = {
    "pip_non_url": "without any --pip-* flag restore-snapshot restores no python package, as the classic one "
    "does, and says so",
}

# commands of this module that change state (an audit line each; see main.py)
MUTATING = frozenset(
    {
        "save-snapshot",
        "restore-snapshot",
        "restore-dependencies",
        "install-deps",
        "post-install",
        "clear",
        "cli-only-mode",
    }
)


def add_parsers(sub: Any) -> None:
    """Register the classic commands on the CLI's sub-parser table."""
    s = sub.add_parser("show", help="list packs or snapshots: " + ", ".join(SHOW_LISTS), description=SHOW_HELP)
    s.add_argument("what", nargs="?", default="all", choices=SHOW_LISTS, help="which list (default: all)")
    s.add_argument("--limit", type=int, default=0, help="show at most this many entries (0: all)")
    s = sub.add_parser(
        "simple-show", help="the same lists as show, names or ids only, one per line", description=SHOW_HELP
    )
    s.add_argument("what", nargs="?", default="all", choices=SHOW_LISTS, help="which list (default: all)")
    s.add_argument("--limit", type=int, default=0, help="show at most this many entries (0: all)")

    s = sub.add_parser(
        "save-snapshot",
        help="save a snapshot of the installed packs and python packages",
        description="Saves a snapshot in the snapshots folder (listed by `show snapshot-list`). With --output "
        "it is also written to that file (.json, or .yaml/.yml); the classic command wrote only the file.",
    )
    s.add_argument("--output", metavar="FILE", help="also write the snapshot to FILE (.json, .yaml)")

    s = sub.add_parser(
        "restore-snapshot",
        help="restore a snapshot (a file, or a name from `show snapshot-list`)",
        description="Restores packs to the snapshot's commits and versions now (the classic command did it at "
        "the next start). Python packages are restored only with a --pip-* flag, as in the classic command; "
        "`snapshot restore` (ours) restores index packages by default.",
    )
    s.add_argument("snapshot", metavar="FILE", help="snapshot file (.json/.yaml), or a stored snapshot's name")
    ops_commands.add_flags(
        s,
        BY_NAME["snapshot_restore"],
        {**ops_commands.RESTORE_HELP, **_OUR_RESTORE_HELP},
    )
    s.add_argument(
        "--user-directory",
        dest="user_directory",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="ComfyUI user directory whose __manager folder (config, snapshots) to use (same as the global flag)",
    )
    s.add_argument(
        "--restore-to",
        metavar="DIR",
        help="install the snapshot's packs into DIR (an existing folder) instead of <ComfyUI>/custom_nodes",
    )

    sub.add_parser(
        "restore-dependencies",
        help="install the requirements and run install.py of every enabled pack again (fix on each)",
    )
    s = sub.add_parser(
        "install-deps",
        help="install the packs a deps file (from deps-in-workflow) or a workflow needs",
        description="Installs packs listed as not installed, enables disabled ones; packs already in place are "
        "left alone. Takes the JSON that deps-in-workflow writes, or a workflow .json directly.",
    )
    s.add_argument("deps", metavar="FILE", help="deps file written by deps-in-workflow, or a workflow .json")
    s = sub.add_parser("deps-in-workflow", help="write which packs a workflow needs, and their state, to a file")
    s.add_argument("--workflow", required=True, metavar="FILE", help="workflow .json (UI or API format)")
    s.add_argument("--output", required=True, metavar="FILE", help="where to write the deps file (.json)")
    s = sub.add_parser(
        "post-install",
        help="run a pack's install step again: its requirements and install.py (fix)",
    )
    s.add_argument("path", help="the pack's folder: custom_nodes/<folder>")
    sub.add_parser(
        "clear",
        help="drop the work scheduled for the next ComfyUI start (startup/pending.json)",
    )
    s = sub.add_parser(
        "cli-only-mode",
        help="write or remove the classic cli-only flag file",
        description=f"Writes (enable) or removes (disable) <manager dir>/{CLI_ONLY_FLAG}, as the classic command "
        "does. The classic manager then hides its web UI; this Manager's panel and routes do not read the flag "
        "and stay mounted (security_level and listen control who may use them).",
    )
    s.add_argument("cli_mode", metavar="MODE", choices=["enable", "disable"], help="enable or disable")
    s = sub.add_parser("export-custom-node-ids", help="write the id of every pack of the catalog to a file")
    s.add_argument("path", metavar="FILE", help="output file, one id per line")
    s = sub.add_parser("show-versions", help="the Comfy Registry versions of a pack")
    s.add_argument("node_id", metavar="ID", help="registry id of the pack")


# --- show / simple-show -----------------------------------------------------------------------------
def _catalog_or_note(m: Manager, args: argparse.Namespace, refresh: str, *, needed: bool) -> Any:
    """The catalog view; when the list does not need it, a failure to load it is only a note."""
    try:
        return m.catalog_view(refresh=refresh)
    except ManagerError as err:
        if needed:
            raise
        if not args.json:
            sys.stderr.write(f"note [{err.code}]: no catalog to match against ({err.message})\n")
        return None


def _notices(view: Any, as_json: bool) -> None:
    if as_json or view is None:
        return
    for n in view.notices:
        sys.stderr.write(f"{n.level} [{n.code}]: {n.message}" + (f" (hint: {n.hint})" if n.hint else "") + "\n")


def _installed_state(m: Manager) -> dict[str, str]:
    """catalog id -> enabled | disabled, for what is on disk (the catalog must be loaded)."""
    out: dict[str, str] = {}
    for p in m.inventory().packs:
        if p.catalog_id and out.get(p.catalog_id) != "enabled":
            out[p.catalog_id] = "enabled" if p.enabled else "disabled"
    return out


def _limit(items: list[Any], limit: int) -> list[Any]:
    return items[:limit] if limit else items


def show_data(m: Manager, args: argparse.Namespace, refresh: str) -> tuple[list[str], Any, list[list[str]], list[str]]:
    """``(names, json data, table rows, headers)`` of one classic list."""
    what = args.what
    if what in ("installed", "enabled", "disabled", "cnr"):
        _catalog_or_note(m, args, refresh, needed=False)
        inv = m.inventory()
        packs = [
            p
            for p in inv.packs
            if what == "installed"
            or (what == "cnr" and (p.kind == "cnr" or p.cnr_id))
            or (what in ("enabled", "disabled") and p.enabled == (what == "enabled"))
        ]
        packs = _limit(packs, args.limit)
        rows = [
            [
                "ENABLED" if p.enabled else "DISABLED",
                p.name,
                p.version or (p.commit[:12] if p.commit else p.kind),
                p.catalog_id,
            ]
            for p in packs
        ]
        data: Any = {"packs": [p.to_dict() for p in packs], "conflicts": [c.to_dict() for c in inv.conflicts]}
        return [p.name for p in packs], data, rows, ["STATE", "NAME", "VERSION", "CATALOG ID"]
    if what in ("all", "not-installed"):
        view = m.catalog_view(refresh=refresh)
        _notices(view, args.json)
        states = _installed_state(m)
        listed = [p for p in view.catalog.packs if what == "all" or p.id not in states]
        listed = _limit(listed, args.limit)
        rows = [[states.get(p.id, "not-installed").upper(), p.id, p.author, p.title] for p in listed]
        data = {
            "channel": view.channel.to_dict(),
            "packs": [{**p.to_dict(), "state": states.get(p.id, "not-installed")} for p in listed],
            "notices": [n.to_dict() for n in view.notices],
        }
        args.status_line = _status_line(m, view)
        return [p.id for p in listed], data, rows, ["STATE", "ID", "AUTHOR", "TITLE"]
    if what == "import-fail":
        from ..import_failures import load_report

        report = load_report(m.layout)
        fails = _limit(list(report.failures), args.limit)
        rows = [[f.name, f.kind, f.message] for f in fails]
        return [f.name for f in fails], report.to_dict(), rows, ["NAME", "KIND", "MESSAGE"]
    from ..snapshots import store_of

    if what == "snapshot-list":
        entries = _limit(store_of(m).entries(), args.limit)
        rows, headers = ops_commands.snapshot_table(entries)
        return [e.name for e in entries], [e.to_dict() for e in entries], rows, headers
    # snapshot: the current state as a document, nothing saved
    from ..snapshots.capture import capture

    doc = capture(m, reason="show").to_json()
    return [], doc, [], []


def _status_line(m: Manager, view: Any) -> str:
    src = ",".join(sorted(set(view.sources.values()))) or "none"
    return (
        f"channel {view.channel.name} ({view.channel.url}) · network {m.config['network_mode']} · "
        f"data {src}, age {human_age(view.oldest_age_seconds)} · {len(view.catalog.packs)} packs"
    )


def cmd_show(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    names, data, rows, headers = show_data(m, args, refresh)
    if args.json:
        return data
    if getattr(args, "status_line", ""):
        print(args.status_line)
    if args.what == "snapshot":
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    elif not rows:
        print(f"({args.what}: none)")
    else:
        table(rows, headers, free=[len(headers) - 1])  # the last column is the free text (title, message...)
    return None


def cmd_simple_show(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    names, data, _rows, _headers = show_data(m, args, refresh)
    if args.what == "snapshot":
        if not args.json:
            print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return data
    if not args.json and names:
        print("\n".join(names))
    return names


# --- snapshots ---------------------------------------------------------------------------------------
def cmd_save_snapshot(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from ..snapshots import SnapshotStore, store_of

    tasks = ops_commands.run_tasks(m, [("snapshot_save", "-", {"reason": "cli"})], as_json=args.json)
    result = dict(tasks[0].result or {})
    if args.output:
        snap = store_of(m).load(str(result["name"]))
        written = SnapshotStore.export(snap, Path(args.output))
        result["output"] = str(written)
    if not args.json:
        print(f"saved snapshot {result.get('name')}" + (f"; written to {result['output']}" if args.output else ""))
    return result


def cmd_restore_snapshot(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    pip_flags = bool(args.pip_non_url or args.pip_non_local_url or args.pip_local_url)
    if args.restore_to:
        m = _with_custom_nodes(m, Path(args.restore_to))
    name = _stored_name(m, args.snapshot)
    ns = argparse.Namespace(**vars(args))
    ns.action, ns.name, ns.dry_run = "restore", name, False
    ns.only = args.only or ("all" if pip_flags else "nodes")
    if not pip_flags and not args.json:
        print(
            "python packages: not restored (no --pip-* flag, as the classic restore-snapshot); "
            "pass --pip-non-url to restore the snapshot's index packages"
        )
    result = ops_commands.cmd_snapshot(m, ns, refresh)
    if args.json:
        return {"tasks": result, "python_packages": "restored" if pip_flags else "not restored (no --pip-* flag)"}
    return result


def _stored_name(m: Manager, given: str) -> str:
    """The stored snapshot to restore: a file is checked and imported (under its own name, or reused
    when that name already holds the same snapshot, else under a new name), a name is used as it is."""
    from ..snapshots import store_of
    from ..snapshots.store import check_name, read_snapshot_file
    from ..snapshots.validate import check_entries, refusal_error, refused

    path = Path(given)
    if not path.is_file():
        if (m.layout.snapshots_dir / given).is_file():
            return path.stem  # a file name of the snapshots folder: its stored name
        return given
    store = store_of(m)
    snap = read_snapshot_file(path)
    problems = check_entries(snap)
    if refused(problems):
        raise refusal_error(given, problems)  # refused before the file is copied into the store
    stem = check_name(path.stem)
    candidates = [stem] + [f"{stem}-{n}" for n in range(2, 100)]
    for candidate in candidates:
        try:
            stored = store.load(candidate)
        except NotFound:
            return store.import_file(path, candidate).name
        if stored.to_json() == snap.to_json():
            return candidate  # restored before: the same document
    return store.import_file(path, stem, overwrite=True).name


def _with_custom_nodes(m: Manager, folder: Path) -> Manager:
    """The same Manager acting on another custom_nodes folder (``--restore-to``)."""
    if not folder.is_dir():
        raise NotFound(
            f"--restore-to {folder}: no such folder",
            hint=f"create it first (mkdir -p {folder}), or leave --restore-to out to use <ComfyUI>/custom_nodes",
            details={"path": str(folder)},
        )
    layout = dataclasses.replace(m.layout, custom_nodes=folder.absolute())
    host = StandaloneHost(layout=layout, python=m.host.python_executable)
    return dataclasses.replace(
        m, host=host, _queue=None, _catalog_view=None, _runner_factories=list(m._runner_factories)
    )


# --- dependencies and install steps ------------------------------------------------------------------
def _own_or_enabled(m: Manager) -> list[Any]:
    me = ops_commands.own_folder()
    return [p for p in m.inventory().packs if p.enabled and Path(p.path).resolve() != me]


def cmd_restore_dependencies(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    packs = [p for p in _own_or_enabled(m) if p.has_requirements or p.has_install_script]
    if not packs:
        if not args.json:
            print("no enabled pack has a requirements.txt or install.py: nothing to restore")
        return []
    tasks = ops_commands.run_tasks(m, [("fix", p.name, {}) for p in packs], as_json=args.json)
    return [t.to_dict() for t in tasks]


def _read_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"{what} {path} does not exist", hint="give the path of an existing .json file") from None
    except (OSError, ValueError) as exc:
        raise WorkflowInvalid(
            f"{what} {path} is not readable JSON: {exc}",
            hint="export the workflow from ComfyUI (Workflow > Export), or write it with deps-in-workflow",
        ) from None


def workflow_deps(m: Manager, workflow: Any, refresh: str) -> dict[str, Any]:
    """Which packs a workflow needs and whether each is installed, disabled or not installed."""
    from ..operations.workflow import missing_packs

    view = m.catalog_view(refresh=refresh)
    inv = m.inventory()
    plan = missing_packs(workflow, catalog=view.catalog, inventory=inv)
    nodes: dict[str, dict[str, Any]] = {}
    for p in inv.packs:
        if p.enabled and p.catalog_id:
            provided = [t for t in plan.provided if t in set(view.catalog.node_types(p.catalog_id))]
            if provided:
                nodes[p.catalog_id] = {"state": "installed", "installed_name": p.name, "node_types": provided}
    for step in plan.steps:
        nodes[step.pack_id] = {
            "state": "disabled" if step.action == "enable" else "not-installed",
            "installed_name": step.installed_name,
            "node_types": list(step.node_types),
            "title": step.title,
            "alternatives": list(step.alternatives),
        }
    return {"custom_nodes": nodes, "unknown_nodes": list(plan.unresolved), "node_types": list(plan.node_types)}


def cmd_deps_in_workflow(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    deps = workflow_deps(m, _read_json_file(Path(args.workflow), "workflow"), refresh)
    deps["workflow"] = str(Path(args.workflow).absolute())
    out = Path(args.output)
    atomic_write_bytes(out, (json.dumps(deps, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    if not args.json:
        states = [n["state"] for n in deps["custom_nodes"].values()]
        print(
            f"wrote {out}: {len(states)} pack(s) ({states.count('installed')} installed, "
            f"{states.count('disabled')} disabled, {states.count('not-installed')} not installed), "
            f"{len(deps['unknown_nodes'])} node type(s) no pack of the catalog provides"
        )
    return deps


def cmd_install_deps(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    doc = _read_json_file(Path(args.deps), "deps file")
    if not (isinstance(doc, dict) and isinstance(doc.get("custom_nodes"), dict)):
        doc = workflow_deps(m, doc, refresh)  # a workflow given directly
    else:
        m.catalog_view(refresh=refresh)
    enabled: dict[str, str] = {}
    disabled: dict[str, str] = {}
    for p in m.inventory().packs:
        for key in filter(None, (p.catalog_id, p.name, p.cnr_id)):
            (enabled if p.enabled else disabled).setdefault(key, p.name)
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for pack_id in doc["custom_nodes"]:
        if not isinstance(pack_id, str) or pack_id in enabled:
            continue  # already in place: the current tree decides, not the file's state
        requests.append(("enable", disabled[pack_id], {}) if pack_id in disabled else ("install", pack_id, {}))
    if not requests:
        if not args.json:
            print("every pack the deps file names is installed and enabled: nothing to do")
        return []
    return [t.to_dict() for t in ops_commands.run_tasks(m, requests, as_json=args.json)]


def cmd_post_install(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    path = Path(args.path).absolute()
    custom = m.layout.custom_nodes.absolute()
    if path.parent.resolve() != custom.resolve() or not path.exists():
        raise RequestInvalid(
            f"post-install {args.path}: not a pack folder in {custom}",
            hint="give custom_nodes/<folder> of an enabled pack; `cm-cli.py show enabled` lists them",
            details={"path": str(path), "custom_nodes": str(custom)},
        )
    return [t.to_dict() for t in ops_commands.run_tasks(m, [("fix", path.name, {})], as_json=args.json)]


# --- startup work, flags, exports --------------------------------------------------------------------
def cmd_clear(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from ..startup import PendingStore

    store = PendingStore(m.layout)
    dropped = [store.cancel(op.id).to_dict() for op in store.entries()]
    broken = store.path.exists()  # only unreadable entries were left
    if broken:
        store.path.unlink()
    if not args.json:
        print(
            f"dropped {len(dropped)} operation(s) scheduled for the next start"
            + (" and the unreadable rest of pending.json" if broken else "")
        )
        for op in dropped:
            print(f"  {op['action']} {op['target']}")
    return {"dropped": dropped, "removed_unreadable": broken}


def cmd_cli_only_mode(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    flag = m.layout.manager_dir / CLI_ONLY_FLAG
    if args.cli_mode == "enable":
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.touch()
    else:
        flag.unlink(missing_ok=True)
    if not args.json:
        print(f"cli-only-mode is {args.cli_mode}d ({flag}); this Manager's panel is not affected")
    return {"cli_only_mode": args.cli_mode == "enable", "flag": str(flag)}


def cmd_export_custom_node_ids(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    view = m.catalog_view(refresh=refresh)
    _notices(view, args.json)
    ids = sorted({p.id for p in view.catalog.packs})
    out = Path(args.path)
    atomic_write_bytes(out, ("\n".join(ids) + ("\n" if ids else "")).encode("utf-8"))
    if not args.json:
        print(f"wrote {len(ids)} pack id(s) of channel {view.channel.name} to {out}")
    return {"path": str(out), "count": len(ids)}


def cmd_show_versions(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    versions = run_sync(m.registry.versions(args.node_id, refresh=refresh))
    if args.json:
        return [v.to_dict() for v in versions]
    table(
        [[v.version, v.status, v.download_url] for v in versions],
        ["VERSION", "STATUS", "URL"],
        empty=f"the registry lists no version of {args.node_id}",
    )
    return None


COMMANDS = {
    "show": cmd_show,
    "simple-show": cmd_simple_show,
    "save-snapshot": cmd_save_snapshot,
    "restore-snapshot": cmd_restore_snapshot,
    "restore-dependencies": cmd_restore_dependencies,
    "install-deps": cmd_install_deps,
    "deps-in-workflow": cmd_deps_in_workflow,
    "post-install": cmd_post_install,
    "clear": cmd_clear,
    "cli-only-mode": cmd_cli_only_mode,
    "export-custom-node-ids": cmd_export_custom_node_ids,
    "show-versions": cmd_show_versions,
}
