"""Every hint is executable: each `cm-cli.py ...` command line named by a string in manager/ (the
hints of coded errors, help texts, messages) or by README.md and docs/*.md parses with the real
argument parser, so no message points at a verb or flag that does not exist.

Placeholders (``<name>``, ``NAME``, ``FILE``, an f-string's ``{value}``) are replaced by sample
values. A failure lists every bad command line with where it was found.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from manager.cli.main import build_parser

REPO = Path(__file__).resolve().parent.parent
SAMPLE = "sample"
# where a command line named inside prose ends
_END = re.compile(
    r"[`'\"\n;()\[\]]| / |\s{2,}|, | or | and | then | on | to | from | with | in |\. |\.$|:$|: | — | - | # |\s>|\|"
)
# prose that follows a command named in a sentence ("`cm-cli.py config` shows the file")
_PROSE = frozenset(
    "does do shows show's lists prints copies is are was were will would can could should must first again "
    "now instead before after when if which that also exit exits runs writes reads says tells gives".split()
)
_CMD = re.compile(r"cm-cli\.py\b")


def _placeholder(token: str) -> str:
    if re.fullmatch(r"<[^>]*>\.?", token) or token in {"...", "…"}:
        return SAMPLE
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", token) and token not in {"KEY=VALUE"}:  # NAME, FILE, DIR
        return SAMPLE
    if token.startswith("--") and "=" in token and re.search(r"=<[^>]*>$|=[A-Z]+$", token):
        return token.split("=", 1)[0] + "=" + SAMPLE
    return token


def command_lines(text: str) -> list[str]:
    """The argument part of every `cm-cli.py ...` mention in ``text`` (prose after it cut off)."""
    out = []
    for match in _CMD.finditer(text):
        rest = text[match.end() :]
        if rest[:1] not in ("", " ", "\t"):
            continue  # "cm-cli.py's", "cm-cli.py," ...
        end = _END.search(rest)
        words = rest[: end.start() if end else len(rest)].split()
        for i, word in enumerate(words):
            if word in _PROSE:
                words = words[:i]
                break
        out.append(" ".join(words).rstrip(".,:"))
    return out


def parse_error(args: str) -> str:
    """'' when ``cm-cli.py <args> --help`` would parse, else argparse's complaint."""
    try:
        tokens = [_placeholder(t) for t in shlex.split(args)]
    except ValueError as exc:
        return f"unparsable shell text: {exc}"
    if not tokens:
        return ""
    tokens = [t for t in tokens if t not in {"--help", "-h"}]
    verb = next((t for t in tokens if not t.startswith("-")), "")
    if verb == SAMPLE:  # a generic mention: "cm-cli.py <command>"
        return ""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(tokens)
    except SystemExit as exc:
        said = err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exc.code}"
        # naming a verb without its operands is fine: `cm-cli.py <that> --help` exits 0
        if exc.code not in (0, None) and "the following arguments are required" not in said:
            return said
    return ""


# --- collecting ------------------------------------------------------------------------------
def _string_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            else:
                parts.append(SAMPLE)
        return "".join(parts)
    return None


def source_mentions() -> list[tuple[str, str]]:
    """(where, command args) for every string in manager/ that names cm-cli.py."""
    found = []
    for path in sorted((REPO / "manager").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        seen: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                for value in node.values:
                    seen.add(id(value))
        for node in ast.walk(tree):
            if id(node) in seen:
                continue
            text = _string_text(node)
            if text and "cm-cli.py" in text:
                where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
                found += [(where, args) for args in command_lines(text)]
    return found


def _doc_snippets(text: str) -> list[tuple[int, str]]:
    """(line, text) of code blocks' lines and inline code spans."""
    out: list[tuple[int, str]] = []
    in_block = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            out.append((number, line.split(" #", 1)[0]))
        else:
            out += [(number, span) for span in re.findall(r"`([^`]+)`", line)]
    return out


def doc_mentions() -> list[tuple[str, str]]:
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for number, snippet in _doc_snippets(path.read_text(encoding="utf-8")):
            if "cm-cli.py" in snippet:
                found += [(f"{path.relative_to(REPO)}:{number}", args) for args in command_lines(snippet)]
    return found


def _report(mentions: list[tuple[str, str]]) -> list[str]:
    bad = []
    for where, args in mentions:
        why = parse_error(args)
        if why:
            bad.append(f"{where}: cm-cli.py {args}  ->  {why}")
    return bad


# --- the checker checks itself ------------------------------------------------------------
def test_the_checker_extracts_and_parses_command_lines() -> None:
    text = "Run `cm-cli.py --cache-only update-cache` on a machine with network, or cm-cli.py show installed."
    assert command_lines(text) == ["--cache-only update-cache", "show installed"]
    assert command_lines("hint: cm-cli.py registry versions <node-id>") == ["registry versions <node-id>"]
    assert parse_error("show installed") == ""
    assert parse_error("registry versions <node-id>") == ""
    assert "invalid choice" in parse_error("no-such-verb")
    assert "unrecognized arguments" in parse_error("show --no-such-flag")


def test_hints_were_found() -> None:
    assert len(source_mentions()) >= 10 and len(doc_mentions()) >= 10


@pytest.mark.parametrize("collect", [source_mentions, doc_mentions], ids=["manager-strings", "docs"])
def test_every_named_cm_cli_command_line_parses(collect) -> None:
    bad = _report(collect())
    assert not bad, f"{len(bad)} command line(s) name a verb or flag cm-cli.py does not have:\n  " + "\n  ".join(bad)
