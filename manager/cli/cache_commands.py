"""cm-cli commands for caches and carried data: cache, update-cache (and ``--cache-only``),
cleanup-cache, export-deps, download-deps.

The work is in the core (``manager/cache_upkeep.py``, ``manager/deps/export.py``,
``manager/deps/index_layout.py``); these functions only read the arguments, print a line per
file and the report, and set the exit code: 0 when everything asked for is in place, 3 when
only part of it is, 1 when none of it is (``args.exit_code``, read by ``commands.dispatch``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..cache_upkeep import (
    DEFAULT_OLDER_THAN_DAYS,
    FileOutcome,
    cache_report,
    cleanup_caches,
    fill_caches,
    select_channels,
)
from ..context import CHANNEL_FILES, Manager
from ..errors import ManagerError, RequestInvalid
from ..list_build import rebuild_persisted
from ..network import run_sync
from . import exit_codes
from .progress import ProgressLine
from .render import human_age, human_size, table

EXIT_OK, EXIT_FAILED, EXIT_PARTIAL = exit_codes.OK, exit_codes.FAILED, exit_codes.PARTIAL
_BY_OUTCOME = {"ok": EXIT_OK, "partial": EXIT_PARTIAL, "failed": EXIT_FAILED}


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _days(text: object) -> float:
    """``--older-than``: days, 0 or more; anything else is ``request_invalid`` with the fix."""
    try:
        value = float(str(text))
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise RequestInvalid(
            f"--older-than {text!r} is not a number of days (0 or more)",
            hint="cm-cli.py cleanup-cache --older-than 30 --dry-run",
            details={"field": "--older-than", "value": str(text)},
        )
    return value


def add_parsers(sub: Any) -> None:
    """Register the cache and data commands on the CLI's sub-parser table."""
    s = sub.add_parser(
        "cache",
        help="cache status and health: every cache's files, ages, expired files, size, node totals",
        description="status: the report; health: the same, exit 3 when a cache has expired or broken files; "
        "refresh: the same as update-cache.",
    )
    s.add_argument(
        "action",
        nargs="?",
        default="status",
        choices=["status", "health", "refresh"],
        help="status (default): the report; health: the report, exit 3 on expired or broken files; "
        "refresh: update-cache",
    )
    s.add_argument(
        "--older-than",
        default=str(DEFAULT_OLDER_THAN_DAYS),
        metavar="DAYS",
        help=f"archives and partial downloads older than this count as expired (default {DEFAULT_OLDER_THAN_DAYS:g})",
    )
    s.add_argument("--files", action="store_true", help="status: list every channel and registry file with its age")
    _update_flags(s)
    s = sub.add_parser(
        "update-cache",
        help="fetch the active channel's files and the registry node list into the cache",
        description="Fetch the active channel's five files (or, with --all-channels or the global --cache-only, "
        "every channel of channels.list) and the registry node list into the cache. Copies younger than "
        "cache_ttl are kept unless --force-refresh. Exit 0: every file in place; 3: some; 1: none.",
    )
    _update_flags(s)
    s = sub.add_parser(
        "cleanup-cache",
        help="delete orphaned and expired cache files, old archives, staging and trash entries",
        description="Channel and registry cache files that are orphaned or corrupt, expired entries no channel "
        "uses any more, archives, staging and trash entries older than --older-than days. "
        "Files a channel still reads are kept at any age.",
    )
    s.add_argument(
        "--older-than",
        default=str(DEFAULT_OLDER_THAN_DAYS),
        metavar="DAYS",
        help=f"age limit in days (default {DEFAULT_OLDER_THAN_DAYS:g}; 0: everything that may go)",
    )
    s.add_argument("--dry-run", action="store_true", help="list what would be deleted and the bytes, delete nothing")
    s = sub.add_parser(
        "export-deps",
        help="print one requirements file for every installed pack (stdout; -o FILE to write it)",
        description="Writes to stdout unless -o is given (cm-cli.py export-deps > requirements-offline.txt); "
        "every other line goes to stderr.",
    )
    s.add_argument("-o", "--output", metavar="FILE", help="write the file here instead of stdout")
    s.add_argument(
        "--pin-installed",
        action="store_true",
        help="pin to the versions installed here, and add the installed packages they pull in, pinned too "
        "(the wheelhouse then holds what save-snapshot records)",
    )
    s = sub.add_parser(
        "download-deps",
        help="fill a wheelhouse from a requirements file or specs (online/private)",
        description="pip download every requirement (and its dependencies) into the wheelhouse; "
        "--index-layout also writes <dest>/simple/, a PEP 503 index for pip --index-url file://.../simple.",
    )
    s.add_argument(
        "requirements",
        nargs="+",
        metavar="REQUIREMENTS",
        help="a requirements file (export-deps writes one), or requirement specs such as 'beta>=5'",
    )
    s.add_argument("--dest", metavar="DIR", help="wheelhouse folder (default: the Manager's wheelhouse)")
    s.add_argument("--index-layout", action="store_true", help="also lay the wheelhouse out as a PEP 503 simple/ index")


def _update_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--all-channels", action="store_true", help="every channel of channels.list, not only the active")
    s.add_argument("--no-registry", action="store_true", help="leave out the registry node list")


# --- update-cache / --cache-only ----------------------------------------------------------------
def _progress_line(o: FileOutcome) -> str:
    where = f"{o.channel}/{o.file}" if o.channel else f"registry {o.file}"
    if o.ok:
        what = f"{o.state}, {o.bytes} bytes" + (f", {o.nodes} nodes" if o.nodes is not None else "")
        if o.state == "fresh" and o.age_seconds is not None:
            what += f", kept ({human_age(o.age_seconds)} old)"
        return f"  ok      {where}: {what}"
    err = o.error or {}
    head = "stale " if o.state == "stale" else "FAILED"
    return f"  {head}  {where}: [{err.get('code', '?')}] {err.get('message', '')}"


def cmd_update_cache(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    everything = bool(getattr(args, "all_channels", False) or getattr(args, "cache_only", False))
    mode = "force" if getattr(args, "force_refresh", False) or refresh == "force" else refresh
    channels = select_channels(m, all_channels=everything)
    if not args.json:
        what = "every channel of channels.list" if everything else f"channel {channels[0].name}"
        _err(
            f"update-cache: {what}"
            + ("" if getattr(args, "no_registry", False) else " and the registry node list")
            + f" (network {m.config['network_mode']}, refresh {mode})"
        )
    registry = not getattr(args, "no_registry", False)
    total = len(channels) * len(CHANNEL_FILES) + (1 if registry else 0)
    bar = ProgressLine(sys.stderr)  # a terminal: one line per finished file under one updating count
    finished: list[FileOutcome] = []

    def show(o: FileOutcome) -> None:
        finished.append(o)
        bar.note(_progress_line(o))  # not a terminal: just this plain line
        if bar.tty:
            bar.update("update-cache", 100.0 * len(finished) / max(1, total), f"{len(finished)} of {total} file(s)")

    try:
        report = run_sync(
            fill_caches(m, channels=channels, registry=registry, refresh=mode, progress=None if args.json else show)
        )
    finally:
        bar.done()
    args.exit_code = _BY_OUTCOME[report.outcome]
    refused = report.outcome == "failed" and m.gate.offline  # the mode refused the whole job
    if refused:
        args.exit_code = exit_codes.REFUSED
    _err(f"update-cache {report.summary()}")
    result = report.to_dict()
    if report.outcome != "failed":
        result["persisted_lists"] = _rebuild_lists(m)
    if not args.json and report.outcome != "ok":  # one hint
        _err(
            "  hint: network_mode is offline: nothing can be fetched here; run it on a machine with network"
            if refused
            else "  hint: fix what the FAILED/stale lines say and run it again; cm-cli.py cache status shows every file"
        )
    return result


def _rebuild_lists(m: Manager) -> list[str]:
    """The persisted pack lists rebuilt from the refreshed files, so that the server's first list
    after a cron refresh answers from them (issue 21); a failure here only means the server builds
    them at its next start, as before."""
    try:
        written = rebuild_persisted(m)
    except (ManagerError, OSError) as exc:
        why = f"[{exc.code}] {exc.message}" if isinstance(exc, ManagerError) else str(exc)
        _err(f"update-cache: pack lists not rebuilt ({why}); the server builds them at its next start")
        return []
    if written:
        _err(f"update-cache: pack lists rebuilt for the next start ({len(written)} files in {written[0].parent})")
    return [str(p) for p in written]


# --- cache status / health ----------------------------------------------------------------------
def cmd_cache(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    if args.action == "refresh":
        return cmd_update_cache(m, args, refresh)
    report = cache_report(m, older_than_days=_days(args.older_than))
    health = args.action == "health"
    verdict = "ok" if not report["problems"] and not report["expired_files"] else "warn"
    if health:
        report["verdict"] = verdict
        args.exit_code = EXIT_OK if verdict == "ok" else EXIT_PARTIAL
    if not args.json:
        nodes = report["total_nodes"]
        print(
            f"cache {args.action} at {report['timestamp']} · network {report['network_mode']} · "
            f"{report['file_count']} file(s), {_size(report['cache_size_bytes'])} · "
            f"{report['expired_files']} expired · nodes: channel {nodes['channel_name'] or '-'} "
            f"{nodes['channel'] if nodes['channel'] is not None else 'none cached'}, registry "
            f"{nodes['registry'] if nodes['registry'] is not None else 'none cached'}"
        )
        table(
            [
                [
                    a["area"],
                    str(a["file_count"]),
                    _size(a["bytes"]),
                    str(a["expired"]),
                    _age(a["oldest_age_seconds"]),
                    _age(a["newest_age_seconds"]),
                    a["path"] + ("" if a["exists"] else " (absent)"),
                ]
                for a in report["areas"]
            ],
            ["AREA", "FILES", "SIZE", "EXPIRED", "OLDEST", "NEWEST", "PATH"],
            free=[6],
        )
        if health or args.files:
            rows = [
                [a["area"], _age(f["age_seconds"]), _size(f["bytes"]), "expired" if f["expired"] else "", f["name"]]
                for a in report["areas"]
                for f in a["files"]
                if a["area"] in ("channels", "registry") or f["expired"]
            ]
            if rows:
                print()
                table(rows, ["AREA", "AGE", "SIZE", "STATE", "FILE"], free=[4])
        for a in report["areas"]:
            for p in a["problems"]:
                print(f"PROBLEM [{a['area']}] {p}")
        if health:
            _err(f"cache health {verdict}: {report['expired_files']} expired, {report['problems']} problem(s)")
    return report


_size = human_size


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else human_age(seconds)


# --- cleanup-cache ------------------------------------------------------------------------------
def cmd_cleanup_cache(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    report = cleanup_caches(m, older_than_days=_days(args.older_than), dry_run=args.dry_run)
    data = report.to_dict()
    verb = "would free" if args.dry_run else "freed"
    if not args.json:
        done = "would remove" if args.dry_run else "removed"
        rows = [[done, r["area"], _size(r["bytes"]), r["name"], r["why"]] for r in report.removed]
        rows += [["kept", k["area"], "", k["name"], k["why"]] for k in report.kept]
        table(rows, ["ACTION", "AREA", "SIZE", "ENTRY", "WHY"], free=[3, 4], empty="nothing to remove or keep")
        print()
        table([[area, _size(n)] for area, n in data["freed_bytes"].items()], ["AREA", verb.upper()])
        for e in report.errors:
            print(f"ERROR {e}")
    _err(
        f"cleanup-cache {verb} {_size(data['freed_total'])} in {len(report.removed)} item(s)"
        + (f"; {len(report.errors)} could not be removed" if report.errors else "")
    )
    if report.errors:
        args.exit_code = EXIT_PARTIAL if report.removed else EXIT_FAILED
    return data


# --- dependencies -------------------------------------------------------------------------------
def cmd_export_deps(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from ..deps.export import export_requirements
    from ..deps.installer import installer_for

    installer = installer_for(m)  # ComfyUI's python: its markers and installed versions
    packs = [(p.name, Path(p.path)) for p in m.inventory().packs if p.enabled and p.has_requirements]
    out = Path(args.output) if args.output else None
    result = export_requirements(installer, packs, out, pin_installed=args.pin_installed)
    if out is None and not args.json:
        sys.stdout.write(result.text)
        sys.stdout.flush()
    where = str(result.path) if result.path else "stdout"
    _err(f"export-deps: {len(result.requirements)} requirement(s) from {len(result.packs)} pack(s) to {where}")
    for problem in result.problems:
        _err(f"  left out: {problem}")
    return {
        "path": str(result.path) if result.path else None,
        "requirements": list(result.requirements),
        "packs": list(result.packs),
        "problems": list(result.problems),
        **({"text": result.text} if out is None else {}),
    }


def cmd_download_deps(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    from ..deps.export import download_sources
    from ..deps.index_layout import write_simple_index
    from ..deps.policy import deps_policy_from_config

    if not args.requirements:
        raise RequestInvalid(
            "download-deps needs a requirements file or specs", hint="cm-cli.py download-deps requirements-offline.txt"
        )
    dest = Path(args.dest) if args.dest else m.layout.wheelhouse_dir
    result = download_sources(
        list(args.requirements),
        dest,
        policy=deps_policy_from_config(m.config, m.layout),
        gate=m.gate,
        progress=None if args.json else (lambda line: _err(f"  {line}")),
    )
    out: dict[str, Any] = {"wheelhouse": str(result.wheelhouse), "added": list(result.added)}
    if args.index_layout:
        index = write_simple_index(dest)
        out.update(index.to_dict())
    if not args.json:
        print(
            f"{len(result.added)} new file(s) in {result.wheelhouse} ({result.seconds:.1f}s); "
            "carry this folder to the offline machine's wheelhouse"
        )
        if args.index_layout:
            print(f"PEP 503 index of {len(out['projects'])} project(s): pip install --index-url {out['index_url']} ...")
    return out


COMMANDS = {
    "cache": cmd_cache,
    "update-cache": cmd_update_cache,
    "cleanup-cache": cmd_cleanup_cache,
    "export-deps": cmd_export_deps,
    "download-deps": cmd_download_deps,
}


# --- the global flags (cm-cli.py --cache-only, --force-refresh) ---------------------------------
def apply_global_flags(args: argparse.Namespace) -> None:
    """``cm-cli.py --cache-only`` with no command runs update-cache over every channel."""
    if getattr(args, "cache_only", False) and not args.command:
        args.command = "update-cache"
        args.all_channels, args.no_registry = True, False


def check_global_flags(args: argparse.Namespace) -> None:
    """``--cache-only`` fetches and stops: with another command it is a usage error, said once."""
    if getattr(args, "cache_only", False) and args.command != "update-cache":
        raise RequestInvalid(
            f"--cache-only fetches the data files and stops; it does not combine with {args.command!r}",
            hint="run `cm-cli.py --cache-only` alone (or `cm-cli.py --cache-only update-cache`), then the command",
            details={"field": "--cache-only", "command": args.command},
        )
