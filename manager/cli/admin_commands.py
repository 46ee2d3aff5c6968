"""cm-cli.py doctor and migrate: the pre-deploy checklist and copying an old config file.

Both render core data (``manager/doctor.py``, ``manager/config_share.py`` ``migrate``); ``doctor``
leaves a non-zero exit status when a check fails (``args.exit_code``, read by the dispatch).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..context import Manager
from ..doctor import FAIL, WARN, run_checks
from .render import table

try:  # the exit-code table (manager/cli/exit_codes.py); 1 without it
    from .exit_codes import FAILED as _FAILED
except ImportError:  # pragma: no cover - only before that module exists
    _FAILED = 1

MARK = {"pass": "pass", "warn": "WARN", "fail": "FAIL"}


def add_parsers(sub: Any) -> None:
    s = sub.add_parser(
        "doctor",
        help="pre-deploy checklist: python, disk, memory, network mode, channels, cache, tools, security, "
        "config files, import failures, wheelhouse (exit 1 when a check fails)",
    )
    s.add_argument(
        "--online",
        action="store_true",
        help="also probe remote channels when the network mode allows them (never in offline mode)",
    )
    s = sub.add_parser(
        "migrate",
        help="copy the settings of an old config file (user/default/ComfyUI-Manager/config.ini, the classic "
        "manager folder's own) into the config file in effect, keeping a backup",
    )
    s.add_argument("--from", dest="source", metavar="FILE", help="the old config file (default: the one found)")
    s.add_argument(
        "--allow-lower",
        action="store_true",
        help="also copy values that lower security (a looser network_mode or security_level, a [security] flag on)",
    )
    s.add_argument("--dry-run", action="store_true", help="show what would be copied; write nothing")


def cmd_doctor(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    report = run_checks(m, online=bool(args.online))
    if not report.ok:  # said once, in main's summary line on stderr
        args.exit_code = _FAILED
        args.summary_detail = f"{report.count(FAIL)} check(s) failed"
    if args.json:
        return report.to_dict()
    print(f"doctor: ComfyUI {report.comfyui_root} · config {report.config_path}")
    table(
        [[MARK[c.status], c.title, c.detail, c.fix if c.status in (WARN, FAIL) else ""] for c in report.checks],
        ["STATUS", "CHECK", "DETAIL", "FIX"],
        free=[2, 3],
    )
    counts = ", ".join(f"{report.count(s)} {s}" for s in ("pass", "warn", "fail"))
    print(f"{len(report.checks)} checks: {counts}")
    return None


def cmd_migrate(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from ..config_share import migrate

    result = migrate(m.layout, m.config, source=args.source, allow_lower=args.allow_lower, dry_run=args.dry_run)
    if args.json:
        return result.to_dict()
    verb = "would copy" if result.dry_run else "copied"
    print(f"from {result.source} into {result.target}")
    for key, value in result.copied.items():
        print(f"  {verb} {key} = {value}")
    for why in result.refused.values():
        print(f"  REFUSED {why}")
    if result.unchanged:
        print(f"  already equal: {', '.join(result.unchanged)}")
    if not result.copied:
        print("  nothing to copy")
    if result.backup:
        print(f"backup of the previous file: {result.backup}")
    return None


COMMANDS = {"doctor": cmd_doctor, "migrate": cmd_migrate}
