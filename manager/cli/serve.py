"""``cm-cli.py serve``: the standalone server (the API, the events websocket and the panel page)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from ..context import Manager, load_channel_set
from ..host import StandaloneHost
from ..layout import Layout
from ..security import is_loopback_listen

DEFAULT_PORT = 8190  # the demo's port (scripts/demo.sh, README); ComfyUI keeps 8188


def add_parser(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the standalone server: the API, events and the panel, on 127.0.0.1")
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else is reachable from the network "
        "and the security policy treats it as non-loopback)",
    )
    s.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}, the demo's; ComfyUI itself uses 8188)",
    )
    s.add_argument(
        "--demo",
        action="store_true",
        help="first create (or complete) a demo ComfyUI tree with a local channel, and serve it",
    )
    s.add_argument("--dir", default="demo", help="where --demo creates its tree (default ./demo)")


def run(args: argparse.Namespace, *, overrides: dict[str, str], default_root: str) -> int:
    """Build the Manager for the chosen tree and serve until interrupted."""
    from ..api.standalone import prepare, serve
    from ..memory import limit_malloc_arenas

    limit_malloc_arenas()  # our own process: its worker threads share two heaps (issue 21)
    if args.demo:
        from ..demo import create_demo_tree

        root = str(create_demo_tree(Path(args.dir)))
    else:
        root = args.comfyui or default_root
    host = StandaloneHost(Layout.from_root(root, user_dir=args.user_directory))
    if args.channel and "://" not in args.channel:  # a channels.list name: config holds URLs
        overrides["channel_url"] = load_channel_set(host.layout).resolve(args.channel).url
    manager = Manager.create(host, cli=overrides, config_path=args.config)
    api = prepare(manager, host=args.host)
    if not is_loopback_listen(args.host):
        sys.stderr.write(
            f"warning: listening on {args.host}, which is not loopback: other machines can reach "
            "the Manager. Risky operations are refused to peers outside trusted_networks ([security] in "
            f"{manager.config.path}); git URL and pip installs, remote channels and opening the network "
            "mode are refused on such a listener to every peer.\n"
        )

    def ready(url: str) -> None:
        print(
            f"Offline Manager serving {root} at {url} (network mode {manager.config['network_mode']}, "
            f"config {manager.config.path}); Ctrl+C stops it",
            flush=True,
        )

    try:
        asyncio.run(serve(api, host=args.host, port=args.port, ready=ready))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:  # port in use, address not available
        sys.stderr.write(
            f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n"
            "  hint: pick another --port, or stop the program using it\n"
        )
        return 1
    return 0
