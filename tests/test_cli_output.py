"""cm-cli.py output: one updating progress line on a terminal, plain lines otherwise, serve's port;
tables aligned (cut to a terminal's width, whole in a pipe), errors once, help on every option."""

from __future__ import annotations

import argparse
import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from manager.cli.main import build_parser
from manager.cli.progress import ProgressLine
from manager.cli.serve import DEFAULT_PORT
from tests.support.api_tree import demo_root


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


# --- tables, errors, help, progress on a real tree (the CLI as a subprocess) ---------------------
REPO = Path(__file__).resolve().parents[1]
WIDE = "a-snapshot-name-much-longer-than-forty-eight-characters-to-check-nothing-is-cut"


def run_cli(root: Path, *args: str, tty_columns: int = 0) -> subprocess.CompletedProcess:
    """cm-cli.py as a subprocess; with ``tty_columns`` its stdout and stderr are a terminal that wide."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_") and k not in ("COMFYUI_PATH", "COLUMNS")}
    argv = [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), *args]
    if not tty_columns:
        return subprocess.run(argv, capture_output=True, text=True, cwd=root.parent, timeout=180, env=env)
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=slave, stderr=slave, cwd=root.parent, env={**env, "COLUMNS": str(tty_columns)})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(timeout=180)
    text = b"".join(chunks).decode("utf-8").replace("\r\n", "\n")
    return subprocess.CompletedProcess(argv, code, text, "")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo tree with two packs installed, a snapshot with a long name, one pack in the trash."""
    root = demo_root(tmp_path_factory.mktemp("cli-output"))
    for args in (
        ("install", "demo-mask-utils", "demo-prompt-kit"),
        ("snapshot", "save", WIDE),
        ("uninstall", "demo-prompt-kit"),
    ):
        out = run_cli(root, *args)
        assert out.returncode == 0, out.stderr
    return root


def columns(header: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]  # cells: runs with single spaces


def assert_table(text: str, headers: list[str]) -> list[str]:
    """The table whose header row holds exactly ``headers``: every row's cells start at the header's
    column offsets. Returns its rows."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if re.split(r"\s{2,}", line.strip()) == headers)
    starts = columns(lines[at])
    rows = []
    for line in lines[at + 1 :]:
        if len(line) <= starts[1] or line[starts[1] - 2 : starts[1]] != "  ":
            break  # the table ended: a blank line, a count line, the next block
        for s in starts[1:]:
            if s < len(line):  # a row may end early: its last cells are empty
                assert line[s - 2 : s] == "  " and line[s] != " ", (line, s)
        rows.append(line)
    assert rows, text
    return rows


LISTINGS = [
    (("snapshot", "list"), ["NAME", "CREATED", "PACKS", "PIPS", "REASON"]),
    (("show", "snapshot-list"), ["NAME", "CREATED", "PACKS", "PIPS", "REASON"]),
    (("trash", "list"), ["ENTRY", "PACK", "KIND", "VERSION", "REASON", "TRASHED", "SIZE", "WAS"]),
    (("cache", "status"), ["AREA", "FILES", "SIZE", "EXPIRED", "OLDEST", "NEWEST", "PATH"]),
    (("show", "installed"), ["STATE", "NAME", "VERSION", "CATALOG ID"]),
    (("show", "all"), ["STATE", "ID", "AUTHOR", "TITLE"]),
    (("show", "not-installed"), ["STATE", "ID", "AUTHOR", "TITLE"]),
    (("doctor",), ["STATUS", "CHECK", "DETAIL", "FIX"]),
    (("cleanup-cache", "--dry-run", "--older-than", "0"), ["ACTION", "AREA", "SIZE", "ENTRY", "WHY"]),
    (("snapshot", "show", WIDE), ["PACK", "KIND", "VERSION", "STATE"]),
]


@pytest.mark.parametrize("args, headers", LISTINGS, ids=[" ".join(a) for a, _h in LISTINGS])
def test_every_listing_prints_an_aligned_table_in_full_when_not_a_tty(tree: Path, args, headers) -> None:
    out = run_cli(tree, *args)
    assert out.returncode == 0, out.stderr
    assert "{'" not in out.stdout and '{"' not in out.stdout and "...'" not in out.stdout  # never a dict
    rows = assert_table(out.stdout, headers)
    assert not any(line.endswith("...") for line in rows)  # a pipe gets every cell whole
    if args[:2] in (("snapshot", "list"), ("show", "snapshot-list")):
        name, _day, _time, packs, pips, reason = next(r for r in rows if r.startswith(WIDE)).split()
        assert (name, packs, reason) == (WIDE, "2", "cli") and int(pips) > 0
    if args == ("doctor",):  # the whole detail, whatever the width
        assert str(tree / "user" / "__manager" / "config.ini") in out.stdout


def test_a_terminal_gets_rows_cut_to_its_width_in_the_widest_free_column_only(tree: Path) -> None:
    out = run_cli(tree, "doctor", tty_columns=100)
    assert out.returncode == 0, out.stdout
    rows = assert_table(out.stdout, ["STATUS", "CHECK", "DETAIL", "FIX"])
    assert all(len(line) <= 100 for line in rows)
    assert any(line.endswith("...") for line in rows)
    start = columns(next(line for line in out.stdout.splitlines() if line.startswith("STATUS")))[1]  # CHECK
    titles = [line[start:].split("  ")[0] for line in rows]
    assert "Listener and trusted networks" in titles and "Packs that failed to import" in titles  # never cut
    listing = run_cli(tree, "snapshot", "list", tty_columns=60)
    row = next(line for line in listing.stdout.splitlines() if line.startswith(WIDE[:12]))
    assert row.split()[0] == WIDE and row.split()[-1] == "cli"  # a name is not free text: never cut


def test_an_error_is_printed_once_with_its_hint_once(tree: Path) -> None:
    for args in (
        ("enable", "no-such-pack"),
        ("snapshot", "show", "no-such-snapshot"),
        ("cleanup-cache", "--older-than", "x"),
    ):
        out = run_cli(tree, *args)
        assert out.returncode == 1, out.stderr
        text = out.stdout + out.stderr
        error = next(line for line in out.stderr.splitlines() if line.startswith("error ["))
        message = error.split("]: ", 1)[1]
        hint = next(line for line in out.stderr.splitlines() if line.startswith("  hint: "))[len("  hint: ") :]
        assert text.count(message) == 1 and text.count(hint) == 1, text
        assert text.count("error [") == 1 and text.count("hint:") == 1, text
        summary = out.stderr.splitlines()[-1]
        assert summary.startswith(f"cm-cli.py {args[0]}: failed (exit 1): ") and message not in summary
    two = run_cli(tree, "enable", "no-such-pack", "other-missing")
    assert (two.stdout + two.stderr).count("hint:") == 1
    assert two.stderr.splitlines()[-1] == "cm-cli.py enable: failed (exit 1): 0 of 2 task(s) done, 2 failed [not_found]"


def test_every_option_and_positional_of_every_command_has_help() -> None:
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                described = {a.dest for a in action._choices_actions if a.help}
                for name, sub in action.choices.items():
                    if name not in described:
                        missing.append(f"{path} {name} (the command)")
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and (not action.help or action.help == argparse.SUPPRESS):
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "cm-cli.py")
    assert missing == [], "actions without help text:\n" + "\n".join(missing)


def test_update_cache_draws_one_line_per_file_on_a_terminal_and_plain_lines_otherwise(tree: Path) -> None:
    plain = run_cli(tree, "update-cache", "--no-registry")
    assert plain.returncode == 0, plain.stderr
    files = [line for line in plain.stderr.splitlines() if line.startswith("  ok ")]
    assert len(files) == 5 and "\r" not in plain.stderr and "[update-cache]" not in plain.stderr
    term = run_cli(tree, "update-cache", "--no-registry", tty_columns=120)
    assert term.returncode == 0, term.stdout
    shown = [part.strip() for line in term.stdout.split("\n") for part in line.split("\r") if part.strip()]
    for line in files:  # each file's own line, once
        assert sum(1 for part in shown if part == line.strip()) == 1, (line, shown)
    assert "[update-cache] [" in term.stdout and "100.0% 5 of 5 file(s)" in term.stdout
    assert term.stdout.count("\n") < term.stdout.count("\r")  # the count line was rewritten in place
