"""``cm-cli.py missing-nodes WORKFLOW.json [--install] [--prefer PACK...] [--choose TYPE=PACK...]``.

Lists every node type of the workflow that nothing installed provides, with all its candidate
packs (``manager/missing_nodes.py``); ``--install`` plans the chosen packs as one batch through
``Manager.plan`` and runs them, then re-checks and prints what is still missing and why. A type
several packs provide and no preference names is never installed: it is listed as "choose".
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RequestInvalid, WorkflowInvalid
from . import exit_codes
from .render import table

if TYPE_CHECKING:
    from ..context import Manager


def add_parsers(sub: Any) -> None:
    """Add the command and register it in the dispatch table."""
    from . import commands

    s = sub.add_parser(
        "missing-nodes",
        help="node types a workflow uses that no installed pack provides, with every candidate pack; "
        "--install installs the chosen ones as one batch and re-checks",
    )
    s.add_argument("workflow", help="the workflow file (UI format or API format JSON)")
    s.add_argument("--install", action="store_true", help="install the chosen packs, then re-check")
    s.add_argument(
        "--prefer",
        nargs="+",
        default=[],
        metavar="PACK",
        help="pack ids or authors preferred when several packs provide a type (before node_pack_preference)",
    )
    s.add_argument(
        "--choose",
        action="append",
        default=[],
        metavar="TYPE=PACK",
        help="the pack to use for one node type (repeatable)",
    )
    commands.COMMANDS["missing-nodes"] = cmd_missing_nodes


def _choices(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        node_type, sep, pack = item.partition("=")
        if not sep or not node_type.strip() or not pack.strip():
            raise RequestInvalid(f"--choose {item!r} is not TYPE=PACK", hint="write it as --choose MaskBlur=pack-id")
        out[node_type.strip()] = pack.strip()
    return out


def _analyse(m: Manager, args: argparse.Namespace, view: Any, loaded: list[str] | None) -> Any:
    from ..import_failures import load_report
    from ..missing_nodes import analyse, preference_of

    path = Path(args.workflow)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkflowInvalid(
            f"cannot read {path}: {exc.strerror or exc}", hint="Give the path of a workflow .json."
        ) from None
    return analyse(
        data,
        catalog=view.catalog,
        inventory=m.inventory(),
        loaded=loaded,
        import_failures=load_report(m.layout),
        preference=preference_of(m.config, args.prefer),
        choices=_choices(args.choose),
    )


def _print(report: Any, title: str) -> None:
    rows = []
    for r in report.rows:
        if r.state == "provided":
            continue
        cands = ", ".join(
            f"{c.id}{'*' if c.id == r.chosen else ''} ({c.channel or '-'}, {c.stars if c.stars is not None else '-'}"
            f" stars, {c.last_update[:10] or '-'})"
            for c in r.candidates
        )
        rows.append([r.type, r.state, cands or "-", r.reason])
    print(title)
    table(rows, ["NODE TYPE", "STATE", "CANDIDATES (* chosen)", "WHY"], empty="every node type is provided")
    for c in report.chosen:
        print(f"{c.action} {c.pack_id}: {c.reason} (provides {', '.join(c.node_types)})")
    if report.choose:
        print("choose a pack for: " + ", ".join(report.choose) + " (--choose TYPE=PACK or --prefer PACK)")


def cmd_missing_nodes(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from .ops_commands import run_tasks

    view = m.catalog_view(refresh=refresh)
    report = _analyse(m, args, view, None)
    if not args.json:
        _print(report, f"{args.workflow}: {len(report.node_types)} node type(s)")
    out: dict[str, Any] = {"report": report.to_json(), "requests": report.requests()}
    if not args.install:
        return out
    requests = report.requests()
    before = [p.name for p in m.inventory().packs if p.enabled]  # what a running ComfyUI has loaded at most
    tasks = run_tasks(m, requests, as_json=args.json) if requests else []
    recheck = _analyse(m, args, view, before)
    out["tasks"] = [t.to_dict() for t in tasks]
    out["recheck"] = recheck.to_json()
    if not args.json:
        _print(recheck, "re-check after the install:")
    if recheck.choose or any(r.state in ("import_failed", "wrong_pack") for r in recheck.rows):
        args.exit_code = exit_codes.PARTIAL
    return out
