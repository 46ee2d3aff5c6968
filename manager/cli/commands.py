"""cm-cli commands: each builds on a Manager and renders human text or the JSON envelope."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..context import CatalogView, Manager, load_channel_set
from ..envelope import envelope_ok
from ..errors import ManagerError
from ..host import StandaloneHost
from ..layout import Layout
from ..network import run_sync
from . import admin_commands, cache_commands, classic_commands, ops_commands
from .render import print_json, table

Command = Callable[[Manager, argparse.Namespace, str], Any]


def dispatch(args: argparse.Namespace, *, refresh: str, overrides: dict[str, str], default_root: str) -> int:
    if args.command == "demo":
        from ..demo import create_demo_tree

        demo_root = create_demo_tree(Path(args.dir))
        if not args.json:
            print(f"demo ComfyUI tree ready at {demo_root} (offline mode, local channel 'demo')\n")
        args.comfyui, args.command, args.what, args.limit = str(demo_root), "show", "all", 0
    root = args.comfyui or default_root
    host = StandaloneHost(Layout.from_root(root, user_dir=args.user_directory))
    if args.channel and "://" not in args.channel:  # a channels.list name: config holds URLs
        overrides["channel_url"] = load_channel_set(host.layout).resolve(args.channel).url
    manager = Manager.create(host, cli=overrides, config_path=args.config)
    args.cli_manager = manager  # main() writes the command's audit line with it
    result = COMMANDS[args.command](manager, args, refresh)
    if args.json:
        print_json(envelope_ok(result))
    return int(getattr(args, "exit_code", 0))  # a command that did part of its work sets it (exit_codes)


def _notices(view: CatalogView, as_json: bool) -> None:
    if as_json:
        return
    for n in view.notices:
        sys.stderr.write(f"{n.level} [{n.code}]: {n.message}" + (f" (hint: {n.hint})" if n.hint else "") + "\n")


def cmd_search(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    view = m.load_catalog(refresh=refresh)
    _notices(view, args.json)
    hits = view.catalog.search(" ".join(args.text), limit=args.limit or None)
    if args.json:
        return [p.to_dict() for p in hits]
    table([[p.id, str(p.stars or ""), p.title] for p in hits], ["ID", "STARS", "TITLE"], empty="no pack matches")
    return None


def cmd_node_type(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    view = m.load_catalog(refresh=refresh)
    hits = view.catalog.packs_for_node_type(args.class_name)
    if args.json:
        return [p.to_dict() for p in hits]
    table(
        [[p.id, p.title, p.reference] for p in hits],
        ["ID", "TITLE", "REFERENCE"],
        empty=f"no pack in channel {view.channel.name} provides {args.class_name!r}",
    )
    return None


def cmd_models(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    if getattr(args, "action", "list") == "verify":
        return _models_verify(m, args)
    view = m.load_catalog(refresh=refresh)
    _notices(view, args.json)
    if args.json:
        return [e.to_dict() for e in view.catalog.models]
    table(
        [[e.type, e.base, e.save_path, e.filename] for e in view.catalog.models],
        ["TYPE", "BASE", "SAVE_PATH", "FILENAME"],
    )
    return None


def _models_verify(m: Manager, args: argparse.Namespace) -> Any:
    """``models verify [--sha256]``: the installed catalog models checked; exits 1 on a mismatch."""
    from ..errors import ChecksumMismatch
    from ..models import verify_request

    result = verify_request(m, with_sha256=bool(args.sha256))
    if not args.json:
        table(
            [
                [f["folder"], f["name"], f["status"], str(f["actual_size"] or ""), (f["actual_sha256"] or "")[:16]]
                for f in result["findings"]
            ],
            ["FOLDER", "NAME", "STATUS", "SIZE", "SHA256"],
            empty="no installed catalog model to verify",
        )
        counts = result["counts"]
        print(
            f"{result['checked']} checked, {result['hashed']} hashed now: "
            + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        )
        for f in result["mismatches"]:
            print(f"{f['status']}: {f['folder']}/{f['name']}: {f['message']}")
        if result["digests_not_checked"]:
            print(
                f"{result['digests_not_checked']} model(s) have a sha256 in the model list that is not in the hash "
                "cache yet: run verify with --sha256 to check it"
            )
        for note in result["notes"]:
            print(f"note: {note}")
    if result["mismatches"]:
        bad = result["mismatches"]
        raise ChecksumMismatch(
            f"{len(bad)} installed model(s) fail the check: "
            + ", ".join(f"{f['folder']}/{f['name']} ({f['status']})" for f in bad[:5]),
            hint="Delete each listed file, then install it again with `cm-cli.py install-model <id>`, or the panel.",
            details=result,
        )
    return result


def cmd_catalog_issues(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    view = m.load_catalog(refresh=refresh)
    issues = view.catalog.issues
    if args.json:
        return [i.to_dict() for i in issues]
    table([[i.file, str(i.index), i.entry_title, i.problem] for i in issues], ["FILE", "ENTRY", "TITLE", "PROBLEM"])
    return None


def cmd_channels(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    active = m.config["channel_url"]
    rows = [{"name": c.name, "url": c.url, "active": active in (c.name, c.url)} for c in m.channels]
    if not args.json:
        table([["*" if r["active"] else "", str(r["name"]), str(r["url"])] for r in rows], ["", "NAME", "URL"])
    return rows


def cmd_config(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    items = m.config.explain()
    problems, notes = m.config.problems, m.config.notes
    if args.json:
        return {
            "path": str(m.config.path),
            "settings": [dataclasses.asdict(i) for i in items],
            "problems": [p.to_dict() for p in problems],
            "notes": list(notes),
            "old_files": [f.to_dict() for f in m.config.old_files],
        }
    print(f"config file: {m.config.path} (in effect)")
    for old in m.config.old_files:  # the classic's old locations: read only to compare (docs/config.md)
        print(f"old config file: {old.path} ({len(old.differs)} setting(s) differ; cm-cli.py migrate copies them)")
    table([[i.section, i.key, i.source, str(i.value)] for i in items], ["SECTION", "KEY", "SOURCE", "VALUE"])
    for p in problems:  # repeated sections and keys, values skipped in a shared file
        print(f"PROBLEM [{p.code}] {p.message}\n  fix: {p.hint}")
    for note in notes:
        print(f"note: {note}")
    return None


def cmd_registry(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    if args.action == "versions":
        if not args.node_id:
            raise ManagerError("registry versions needs a node id", hint="cm-cli.py registry versions <node-id>")
        versions = run_sync(m.registry.versions(args.node_id, refresh=refresh))
        if not args.json:
            table([[v.version, v.status, v.download_url] for v in versions], ["VERSION", "STATUS", "URL"])
        return [v.to_dict() for v in versions] if args.json else None
    listing = run_sync(m.registry.list_nodes(refresh=refresh))
    if not args.json:
        table([[n.id, n.latest_version, n.name] for n in listing.nodes], ["ID", "LATEST", "NAME"])
    return [n.to_dict() for n in listing.nodes] if args.json else None


COMMANDS: dict[str, Command] = {
    **ops_commands.COMMANDS,
    **classic_commands.COMMANDS,
    **cache_commands.COMMANDS,
    **admin_commands.COMMANDS,
    "search": cmd_search,
    "node-type": cmd_node_type,
    "models": cmd_models,
    "catalog-issues": cmd_catalog_issues,
    "channels": cmd_channels,
    "config": cmd_config,
    "registry": cmd_registry,
}
