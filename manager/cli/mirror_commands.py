"""``cm-cli.py mirror build DIR`` and ``cm-cli.py mirror serve DIR [--host H] [--port N]``.

``build`` lays this box's offline stores out as static files (``manager/fleet/build.py``) and
prints what each section holds; ``serve`` serves a built folder read-only
(``manager/fleet/static_server.py``). ``serve`` needs no ComfyUI tree: ``main`` runs it before
looking for one, so the web host of a fleet can run it from a plain checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fleet.build import build_mirror
from ..fleet.index_page import human_size
from .render import table

if TYPE_CHECKING:
    from ..context import Manager

DEFAULT_PORT = 8290


def add_parsers(sub: Any) -> None:
    """Add ``mirror`` and register it in the dispatch table."""
    from . import commands

    s = sub.add_parser(
        "mirror",
        help="build: lay this box's offline stores (channel, git mirror, wheelhouse, registry archives, models) "
        "out as a static mirror folder a fleet uses in private mode; serve: serve such a folder",
    )
    s.add_argument("action", choices=["build", "serve"], help="build DIR, or serve DIR")
    s.add_argument("dir", metavar="DIR", help="the mirror folder (made or updated by build; served by serve)")
    s.add_argument("--host", default="127.0.0.1", help="serve: address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"serve: port (default {DEFAULT_PORT})")
    commands.COMMANDS["mirror"] = cmd_mirror


def cmd_mirror(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    """``mirror build`` (``serve`` runs from ``run_serve`` without a Manager)."""
    report = build_mirror(m.layout, Path(args.dir), git_exe=m.git.git_exe)
    if args.json:
        return report.to_dict()
    print(f"mirror {report.dest}: {report.written} file(s) written, {report.kept} unchanged kept")
    table(
        [[s.name, s.files, human_size(s.bytes)] for s in report.sections],
        ["SECTION", "FILES", "SIZE"],
    )
    print(f"{len(report.repositories)} git repositories, {report.projects} python projects")
    for item in report.skipped:
        print(f"skipped (a link or an unsafe name): {item}")
    print("serve it with any web server (docs/fleet.md), or: cm-cli.py mirror serve DIR --host 0.0.0.0 --port 8290")
    return None


def run_serve(args: argparse.Namespace) -> int:
    """Serve a built mirror until interrupted (0), 1 when the port cannot be opened."""
    from ..fleet.static_server import serve

    def ready(url: str) -> None:
        print(f"serving the mirror {Path(args.dir).absolute()} at {url} (read-only); Ctrl+C stops it", flush=True)

    try:
        asyncio.run(serve(Path(args.dir), host=args.host, port=args.port, ready=ready))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        sys.stderr.write(
            f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n"
            "  hint: pick another --port, or stop the program using it\n"
        )
        return 1
    return 0
