"""cm-cli.py output: one updating progress line on a terminal, plain lines otherwise, serve's port."""

from __future__ import annotations

import io

from manager.cli.main import build_parser
from manager.cli.progress import ProgressLine
from manager.cli.serve import DEFAULT_PORT


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_terminal_progress_is_one_line_with_bar_rate_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    bar = ProgressLine(out, tty=True, clock=clock)
    bar.update("clone", line="Cloning into 'pack'...")
    for pct in (10, 50):
        clock.now += 5
        bar.update("clone", line=f"Receiving objects:  {pct}% ({pct}/100), 1.00 MiB | 2.00 MiB/s")
    bar.done()
    text = out.getvalue()
    assert "\n" not in text[:-1] and text.endswith("\n")  # every update rewrote the same line
    assert text.count("\r") == 3
    last = text.rsplit("\r", 1)[1]
    assert "[clone: receiving objects]" in last and "50.0%" in last and "2.00 MiB/s" in last
    assert "ETA 0:05" in last and "#" * 12 in last


def test_plain_output_drops_repeated_percent_ticks() -> None:
    out = io.StringIO()
    bar = ProgressLine(out, tty=False)
    for pct in range(0, 101, 10):
        bar.update("clone", line=f"Counting objects: {pct}% ({pct}/100)")
    bar.update("clone", line="done cloning")
    bar.update("download", percent=40)
    bar.update("download", percent=80)
    assert out.getvalue().splitlines() == [
        "  [clone: counting objects]",
        "  [clone: counting objects] done",
        "  [clone] done cloning",
        "  [download]",
    ]


def test_serve_defaults_to_the_demo_port_and_every_option_has_help() -> None:
    parser = build_parser()
    assert DEFAULT_PORT == 8190 and parser.parse_args(["serve"]).port == 8190
    sub = next(a for a in parser._actions if a.dest == "command")
    serve = sub.choices["serve"]
    assert all(a.help for a in serve._actions)
