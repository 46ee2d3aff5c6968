"""One progress line per task for cm-cli.py.

On a terminal the line is rewritten in place (carriage return): the stage, a bar when a percent
is known, the rate (git's own "| 1.2 MiB/s" when it prints one) and an ETA from the percent's
pace. Not on a terminal (cron, a pipe, a log file) it writes plain lines, and drops repeated
percent ticks of the same stage. git's "Counting objects: 45% (9/20)" style lines are read as a
percent of their stage instead of being printed one by one.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

# "Receiving objects:  45% (450/1000), 1.20 MiB | 600.00 KiB/s" / "Resolving deltas: 100% (3/3), done."
_GIT_PERCENT = re.compile(r"^(?:remote:\s*)?(?P<what>[A-Za-z][A-Za-z ]+):\s+(?P<pct>\d{1,3})%(?P<rest>.*)$")
_RATE = re.compile(r"\|\s*(?P<rate>[\d.]+\s*[KMG]?i?B/s)")
BAR_WIDTH = 24


def _eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds % 3600 // 60:02d}"


class ProgressLine:
    """Feed it ``update(stage, percent, line)``; call ``done()`` before printing anything else."""

    def __init__(
        self, out: TextIO | None = None, *, tty: bool | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self.out = out or sys.stderr
        isatty = getattr(self.out, "isatty", None)
        self.tty = bool(isatty and isatty()) if tty is None else tty
        self.clock = clock
        self._stage = ""
        self._started = 0.0
        self._last_plain: tuple[str, str] = ("", "")
        self._width = 0
        self._last_draw: tuple[str, float | None, str, str] | None = None

    def update(self, stage: str, percent: float | None = None, line: str | None = None) -> None:
        text = (line or "").strip()
        rate = ""
        match = _GIT_PERCENT.match(text)
        if match:  # a git progress line: one percent of its own sub-stage
            stage = f"{stage}: {match.group('what').strip().lower()}" if stage else match.group("what").strip().lower()
            percent = float(match.group("pct"))
            found = _RATE.search(match.group("rest"))
            rate = found.group("rate") if found else ""
            text = ""
        if stage != self._stage:
            self._stage, self._started = stage, self.clock()
        if self.tty:
            self._last_draw = (stage, percent, text, rate)
            self._draw(stage, percent, text, rate)
        else:
            self._plain(stage, percent, text)

    def _draw(self, stage: str, percent: float | None, text: str, rate: str) -> None:
        parts = [f"  [{stage}]"]
        if percent is not None:
            filled = int(BAR_WIDTH * percent / 100)
            parts.append("[" + "#" * filled + "-" * (BAR_WIDTH - filled) + f"] {percent:5.1f}%")
            if rate:
                parts.append(rate)
            elapsed = self.clock() - self._started
            if 0 < percent < 100 and elapsed > 0.5:
                parts.append("ETA " + _eta(elapsed * (100 - percent) / percent))
        if text:
            parts.append(text[:80])
        shown = " ".join(parts)
        pad = max(0, self._width - len(shown))
        self.out.write("\r" + shown + " " * pad)
        self.out.flush()
        self._width = len(shown)

    def _plain(self, stage: str, percent: float | None, text: str) -> None:
        if not text:
            # a percent tick: say the stage once (and when it ends), not every tick
            mark = "100%" if percent is not None and percent >= 100 else ""
            key = (stage, mark)
            if key == self._last_plain or (stage == self._last_plain[0] and not mark):
                return
            self._last_plain = key
            self.out.write(f"  [{stage}]" + (" done" if mark else "") + "\n")
            return
        self._last_plain = (stage, "")
        self.out.write(f"  [{stage}] {text}\n")

    def note(self, text: str) -> None:
        """A line of its own (one per finished file, say): on a terminal it is written above the
        updating line, which is drawn again below it; otherwise it is a plain line."""
        if not self.tty:
            self.out.write(text + "\n")
            self.out.flush()
            return
        self.out.write("\r" + text + " " * max(0, self._width - len(text)) + "\n")
        self._width = 0
        if self._last_draw is not None:
            self._draw(*self._last_draw)
        else:
            self.out.flush()

    def done(self) -> None:
        """End the updating line (a newline on a terminal) so the next output starts clean."""
        if self.tty and self._width:
            self.out.write("\n")
            self.out.flush()
        self._width = 0
        self._stage = ""
        self._last_plain = ("", "")
        self._last_draw = None


def event_printer(as_json: bool, line: ProgressLine | None = None) -> Callable[[Any], None]:
    """A task-queue subscriber that draws ``progress`` events on one line per task."""
    bar = line or ProgressLine()

    def show(event: Any) -> None:
        if as_json:
            return
        data = event.data or {}
        if event.name == "progress":
            bar.update(str(data.get("stage") or ""), data.get("percent"), data.get("line"))
        elif event.name == "restart-required":
            bar.done()
            sys.stderr.write("  restart ComfyUI to load the change\n")
        elif event.name in ("done", "failed", "cancelled"):
            bar.done()

    return show
