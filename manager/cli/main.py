"""Argument parsing and dispatch for cm-cli.py. Each command is a small function in commands.py."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import InternalError, ManagerError
from ..layout import COMFYUI_ENV, comfyui_not_found, find_comfyui_root
from . import (
    admin_commands,
    cache_commands,
    classic_commands,
    commands,
    exit_codes,
    mirror_commands,
    ops_commands,
    serve,
    workflow_commands,
)
from .render import print_error

DB_MODES = {"cache": "auto", "remote": "force", "local": "never"}


def default_comfyui_root() -> str:
    """COMFYUI_PATH, else the first ComfyUI root (a folder with main.py and custom_nodes/) at or
    above the current folder, then at or above this checkout; ``comfyui_not_found`` when none."""
    env = os.environ.get(COMFYUI_ENV)
    if env:
        return env
    starts = (Path.cwd(), Path(__file__).resolve().parent)
    found = find_comfyui_root(*starts)
    if found is None:
        raise comfyui_not_found(starts)
    return str(found)


def _default_root(args: argparse.Namespace) -> str:
    """The search runs only when --comfyui is not given (demo and ``serve --demo`` make their own tree)."""
    own_tree = args.command == "demo" or (args.command == "serve" and getattr(args, "demo", False))
    return "" if args.comfyui or own_tree else default_comfyui_root()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cm-cli.py", description="ComfyUI Offline Manager")
    p.add_argument(
        "--comfyui",
        metavar="PATH",
        help="ComfyUI root (default: $COMFYUI_PATH, else the first folder with main.py and custom_nodes/ "
        "at or above the current folder, then above cm-cli.py)",
    )
    p.add_argument("--user-directory", metavar="DIR", help="ComfyUI user directory (default: <root>/user)")
    p.add_argument("--config", metavar="FILE", help="config.ini to use (default: <user>/__manager/config.ini)")
    p.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], help="override a setting for this run (repeatable)"
    )
    p.add_argument("--network-mode", choices=["public", "private", "offline"], help="override network_mode")
    p.add_argument("--channel", help="channel name from channels.list, or its URL")
    p.add_argument(
        "--mode",
        choices=sorted(DB_MODES),
        default="cache",
        help="data source: cache (TTL rules), remote (revalidate now), local (cache only, no network)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (the API's envelope)")
    p.add_argument(
        "--cache-only",
        action="store_true",
        help="fetch every data file the box needs (every channel of channels.list, the registry node list) "
        "into the cache, then stop (alone, or with update-cache)",
    )
    p.add_argument(
        "--force-refresh",
        action="store_true",
        help="ignore cache_ttl: revalidate every cached file (like --mode remote)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    classic_commands.add_parsers(sub)
    s = sub.add_parser("search", help="search packs by title, author, description")
    s.add_argument("text", nargs="+", help="words to find (all of them, any case)")
    s.add_argument("--limit", type=int, default=20, help="show at most this many packs (default 20; 0: all)")
    s = sub.add_parser("node-type", help="which packs provide a node class")
    s.add_argument("class_name", help="the node class name as a workflow names it (e.g. MaskBlur)")
    s = sub.add_parser("models", help="list models from the channel's model-list, or verify the installed ones")
    s.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "verify"],
        help="list (default): the channel's models; verify: check the installed ones (size, sha256)",
    )
    s.add_argument(
        "--sha256",
        action="store_true",
        help="verify: hash every installed catalog model now (cached by size and mtime), not only cached digests",
    )
    sub.add_parser("catalog-issues", help="bad entries found in the channel data (reported, not fatal)")
    sub.add_parser("channels", help="list channels and the active one")
    s = sub.add_parser("config", help="show effective settings and where each came from")
    s.add_argument("action", nargs="?", default="show", choices=["show"], help="show (the only action; default)")
    cache_commands.add_parsers(sub)
    s = sub.add_parser("registry", help="Comfy Registry queries (through the gate and cache)")
    s.add_argument("action", choices=["list", "versions"], help="list: every node; versions: one node's versions")
    s.add_argument("node_id", nargs="?", help="versions: the registry id of the node")
    s = sub.add_parser("demo", help="create a demo ComfyUI tree with a local channel and show it")
    s.add_argument("--dir", default="demo", help="where to create the demo tree (default ./demo)")
    serve.add_parser(sub)
    ops_commands.add_parsers(sub)
    admin_commands.add_parsers(sub)
    workflow_commands.add_parsers(sub)  # missing-nodes
    mirror_commands.add_parsers(sub)  # mirror build / serve
    return p


def cli_overrides(args: argparse.Namespace) -> dict[str, str]:
    """--set, --network-mode and --channel as config overrides (highest precedence)."""
    out: dict[str, str] = {}
    for item in args.set:
        if "=" not in item:
            raise ManagerError(f"--set {item!r} is not KEY=VALUE", hint="write it as --set network_mode=offline")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    if args.network_mode:
        out["network_mode"] = args.network_mode
    if args.channel:
        out["channel_url"] = args.channel
    return out


# commands that change state: one audit line each (door "cli") and a summary line on stderr
MUTATING = frozenset(
    {
        *ops_commands.TABLE_VERBS,
        "snapshot",
        "trash",
        "update-cache",
        "cleanup-cache",
        "cache",  # cache refresh (= update-cache); status and health only read
        "download-deps",
        "migrate",
        "undo",  # undo --list only reads
        "missing-nodes",  # with --install; the analysis alone only reads
        "bundle",  # import fills the stores (and --apply restores); create and verify only read the tree
        "mirror",  # build writes the mirror folder; serve only reads
        *classic_commands.MUTATING,
    }
)
READ_ONLY_ACTIONS = {
    "snapshot": {"list", "show", "diff"},
    "trash": {"list"},
    "cache": {"status", "health"},
    "bundle": {"create", "verify"},
    "mirror": {"serve"},
}


def changes_state(args: argparse.Namespace) -> bool:
    """True for a command that changes state (a --dry-run changes nothing: no audit line for it)."""
    if args.command not in MUTATING or getattr(args, "dry_run", False):
        return False
    if (args.command == "undo" and getattr(args, "list", False)) or (
        args.command == "missing-nodes" and not getattr(args, "install", False)
    ):
        return False
    return getattr(args, "action", None) not in READ_ONLY_ACTIONS.get(args.command, set())


def _targets(args: argparse.Namespace) -> list[str]:
    for name in ("targets", "entries", "requirements"):
        value = getattr(args, name, None)
        if isinstance(value, list) and value:
            return [str(v) for v in value]
    for name in ("snapshot", "name", "path", "deps", "workflow", "cli_mode", "requirements", "source"):
        value = getattr(args, name, None)
        if isinstance(value, str) and value:
            return [value]
    return []


def _audit(args: argparse.Namespace, err: ManagerError | None, code: int, seconds: float) -> None:
    """The command's line in the audit log (only when the Manager was built: a bad config has none)."""
    from ..audit import AuditLog, audit_enabled, cli_entry

    manager = getattr(args, "cli_manager", None)
    if manager is None or not changes_state(args) or not audit_enabled(manager.config):
        return
    command = args.command + (f" {args.action}" if isinstance(getattr(args, "action", None), str) else "")
    decision = "denied" if code == exit_codes.REFUSED else ("allowed" if exit_codes.TALLY.task_ids else "none")
    AuditLog.for_layout(manager.layout).write(
        cli_entry(
            command,
            _targets(args),
            code="ok" if err is None else err.code,
            seconds=seconds,
            exit_code=code,
            task_ids=tuple(exit_codes.TALLY.task_ids),
            decision=decision,
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cache_commands.apply_global_flags(args)  # --cache-only alone is update-cache of every channel
    if not args.command:
        parser.print_help()
        return exit_codes.USAGE
    exit_codes.TALLY.reset()
    started = time.monotonic()
    err: ManagerError | None = None
    try:
        if args.command == "serve":
            return serve.run(args, overrides=cli_overrides(args), default_root=_default_root(args))
        if args.command == "mirror" and args.action == "serve":  # serves a folder: no ComfyUI tree needed
            return mirror_commands.run_serve(args)
        cache_commands.check_global_flags(args)
        code = commands.dispatch(
            args,
            refresh="force" if args.force_refresh else DB_MODES[args.mode],
            overrides=cli_overrides(args),
            default_root=_default_root(args),
        )
    except ManagerError as exc:
        err = exc
        print_error(err, as_json=args.json)
        code = exit_codes.for_error(err)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return exit_codes.INTERRUPTED
    except Exception as exc:  # a bug of ours: still one coded answer, with the trace in the log
        logging.getLogger("offline_manager").debug("unexpected error", exc_info=True)
        err = InternalError(
            f"unexpected {type(exc).__name__}: {exc}",
            hint="this is a bug; rerun with CM_DEBUG=1 for the traceback and report it",
        )
        print_error(err, as_json=args.json)
        if os.environ.get("CM_DEBUG"):
            raise
        code = exit_codes.FAILED
    try:
        _audit(args, err, code, time.monotonic() - started)
    except Exception:  # the audit log never fails a command
        logging.getLogger("offline_manager").debug("no audit line", exc_info=True)
    if err is not None or code != exit_codes.OK or changes_state(args):
        detail = str(getattr(args, "summary_detail", "") or "")
        exit_codes.write_summary(exit_codes.summary_line(args.command, code, err, detail=detail))
    return code
