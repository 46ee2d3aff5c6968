"""cm-cli.py exit codes, defined once, and the one-line summary a command leaves on stderr.

Cron and scripts read the exit status: 0 only when everything asked for is in place.

==  ===========  ==================================================================================
0   OK           everything asked for is done (or was already in place)
1   FAILED       nothing (or not everything) was done because of an error; the classic cm-cli's 1
2   USAGE        the command line could not be parsed (argparse), or no command was given
3   PARTIAL      some of the work was done and some was not (one of several targets failed, a
                 restore skipped entries); the stderr summary says how many
4   REFUSED      the security policy or the network mode refused the work before it started
                 (``security_denied``, ``policy_denied``, ``offline_mode``, ``network_blocked``...)
130 INTERRUPTED  Ctrl-C
==  ===========  ==================================================================================

The classic cm-cli exits 0, 1 or -1 (255); this one never exits 255. docs/cli.md has the table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..errors import ManagerError

OK = 0
FAILED = 1
USAGE = 2
PARTIAL = 3
REFUSED = 4
INTERRUPTED = 130

NAMES = {OK: "ok", FAILED: "failed", USAGE: "usage", PARTIAL: "partial", REFUSED: "refused", INTERRUPTED: "interrupted"}

# error codes that mean "a rule said no" rather than "something broke"
REFUSAL_CODES = frozenset(
    {
        "security_denied",
        "policy_denied",
        "offline_mode",
        "network_blocked",
        "https_required",
        "redirect_refused",
        "channel_not_allowed",
        "pack_compromised",
        "archive_content_refused",
        "bundle_signature_invalid",
        "bundle_unsigned",
    }
)


def for_code(code: str) -> int:
    """The exit code of an error code: REFUSED for a refusal, else FAILED."""
    return REFUSED if code in REFUSAL_CODES else FAILED


def for_error(err: ManagerError) -> int:
    """The exit code of an error: an explicit mark (``mark``) wins, then the error's code."""
    marked = getattr(err, "exit_code", None)
    if isinstance(marked, int):
        return marked
    return for_code(err.code)


def mark(err: ManagerError, code: int) -> ManagerError:
    """Attach an exit code to an error (e.g. PARTIAL when some targets were done)."""
    err.exit_code = code  # type: ignore[attr-defined]
    return err


@dataclass
class Tally:
    """What the tasks of one command did (filled by ``ops_commands.run_specs``)."""

    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (kind target, error code)
    task_ids: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.done.clear()
        self.failed.clear()
        self.task_ids.clear()


TALLY = Tally()  # one command per process; main() resets it


def summary_line(
    command: str, code: int, err: ManagerError | None = None, tally: Tally | None = None, detail: str = ""
) -> str:
    """``cm-cli.py <command>: <ok|partial|refused|failed> (exit N)[: counts [codes]][: detail]``.

    The outcome and the exit code for cron, with the task counts or the error's code: never the
    error's message or hint again (those were printed once, above it)."""
    tally = tally or TALLY
    parts = [f"cm-cli.py {command}: {NAMES.get(code, 'failed')} (exit {code})"]
    total = len(tally.done) + len(tally.failed)
    if total:
        counts = f"{len(tally.done)} of {total} task(s) done"
        if tally.failed:
            codes = list(dict.fromkeys(c for _w, c in tally.failed))
            counts += f", {len(tally.failed)} failed [{', '.join(codes)}]"
        parts.append(counts)
    elif err is not None:
        parts.append(f"[{err.code}]")
    if detail:
        parts.append(detail)
    return ": ".join(parts)


def write_summary(line: str, out: TextIO | None = None) -> None:
    (out or sys.stderr).write(line + "\n")


def outcome(err: ManagerError | None) -> dict[str, Any]:
    """The exit status as data (for the audit line)."""
    code = OK if err is None else for_error(err)
    return {"exit": code, "result": NAMES.get(code, "failed"), "code": "ok" if err is None else err.code}
