"""One-line end-of-run summary of the quality harnesses, and a per-test socket record.

``tests/conftest.py`` feeds a ``SessionReport`` from its hooks: every test carrying one of the
``QUALITY_MARKERS`` (``fault``, ``hostile``, ``load``) is counted by outcome, and every test that
tried to reach beyond loopback is named. ``summary_line()`` is the line printed at the end of
the run, e.g. ``quality: faults 7 passed, 1 xfailed | hostile inputs 84 passed | loads 1 passed |
outside-loopback connects: none``. Every other test (or module) that was skipped is counted with
its reason (``did not run: 2 (parent-death signal is Linux-only: 1; ...)``): nothing stops running
in silence. The real-host tier keeps its own part, last.

A hostile case may name its class as the marker's first argument (``@pytest.mark.hostile("host-header")``,
``pytestmark = pytest.mark.hostile("channel-path")``; the closest marker with a name wins); the
hostile part then counts the cases per class, alphabetically, unnamed ones as ``other`` last:
``hostile inputs 350 (350 passed; channel-path 9, config-file 7, host-header 24, other 310)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from .socket_audit import SocketAudit

QUALITY_MARKERS = {"fault": "faults", "hostile": "hostile inputs", "load": "loads"}
OFFLINE_MARKER = "offline_suite"
REALHOST_MARKER = "realhost"
MARKER_HELP = {
    REALHOST_MARKER: (
        "real-host tier case (the real ComfyUI); counted in the summary, or the summary says it did not run"
    ),
    "fault": "fault-injection case (SIGKILL at a named point); counted in the end-of-run summary",
    "hostile": "hostile-input case (must end in a coded error, nothing written); counted in the summary, "
    'per class when named: @pytest.mark.hostile("channel-path")',
    "load": "load case against the standalone server; counted in the summary",
    OFFLINE_MARKER: "offline suite: the test fails on ANY socket connect, loopback included",
}
_ORDER = ("passed", "failed", "error", "xfailed", "xpassed", "skipped")
_RANK = {"passed": 0, "skipped": 1, "xfailed": 2, "xpassed": 3, "failed": 4, "error": 5}
HOSTILE = "hostile"
OTHER_CLASS = "other"  # a hostile case that names no class


def hostile_class(item: pytest.Item) -> str:
    """The class a hostile case names (first argument of its closest ``hostile`` marker that has
    one), else ``other``."""
    for marker in item.iter_markers(HOSTILE):
        if marker.args and isinstance(marker.args[0], str) and marker.args[0].strip():
            return marker.args[0].strip()
    return OTHER_CLASS


@dataclass
class SessionReport:
    """Counts of quality cases by outcome, and which tests connected outside loopback."""

    tests: dict[str, tuple[frozenset[str], str]] = field(default_factory=dict)  # nodeid -> (kinds, outcome)
    outside_loopback: dict[str, list[str]] = field(default_factory=dict)  # nodeid -> violations
    connects: dict[str, int] = field(default_factory=dict)  # nodeid -> connect count
    notes: dict[str, list[str]] = field(default_factory=dict)  # kind -> figures to show
    realhost: dict[str, tuple[str, str]] = field(default_factory=dict)  # nodeid -> (outcome, skip reason)
    skipped: dict[str, str] = field(default_factory=dict)  # nodeid -> skip reason (not real-host)
    classes: dict[str, str] = field(default_factory=dict)  # nodeid -> hostile class

    def record_skip(self, nodeid: str, reason: str) -> None:
        """A test or module outside the real-host tier that did not run, and why."""
        self.skipped[nodeid] = reason.removeprefix("Skipped: ") or "no reason given"

    def skipped_part(self) -> str:
        """``did not run: N (reason: n; ...)``, or "" when everything outside the real-host tier ran."""
        if not self.skipped:
            return ""
        reasons = Counter(self.skipped.values())
        why = "; ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items()))
        return f"did not run: {len(self.skipped)} ({why})"

    def record_realhost(self, nodeid: str, outcome: str | None, reason: str = "") -> None:
        """Fold one phase of a real-host test into its outcome (a failure in any phase wins)."""
        if outcome is None:
            return
        reason = reason.removeprefix("real-host tier did not run: ")
        before = self.realhost.get(nodeid, ("", ""))[0]
        if not before or _RANK[outcome] > _RANK[before]:
            self.realhost[nodeid] = (outcome, reason)

    def realhost_part(self) -> str:
        """The real-host figures, or in capitals that the tier did not run (and why)."""
        counts = Counter(outcome for outcome, _ in self.realhost.values())
        ran = sum(n for o, n in counts.items() if o != "skipped")
        reasons = sorted({r for o, r in self.realhost.values() if o == "skipped" and r})
        if not ran:
            why = "; ".join(reasons) if reasons else "no real-host test was selected"
            return f"REAL-HOST TIER DID NOT RUN: {why}"
        shown = ", ".join(f"{counts[o]} {o}" for o in _ORDER if counts.get(o))
        skipped = f" (skipped: {'; '.join(reasons)})" if reasons else ""
        return f"real-host {ran + counts.get('skipped', 0)} ({shown}){skipped}"

    def note(self, kind: str, text: str) -> None:
        """Add a figure (e.g. a load run's throughput and p50/p99) to that kind's part of the line."""
        self.notes.setdefault(kind, []).append(text)

    def record_phase(self, nodeid: str, kinds: set[str], outcome: str | None, hostile_class: str = "") -> None:
        """Fold one phase (setup/call/teardown) of a quality test into its final outcome.

        A failure in any phase wins over a pass; a teardown error after a passed call counts as
        an error, as pytest itself reports it. ``hostile_class``: the class a hostile case names.
        """
        kinds = set(kinds) & set(QUALITY_MARKERS)
        if not kinds or outcome is None:
            return
        if HOSTILE in kinds:
            self.classes[nodeid] = hostile_class or OTHER_CLASS
        _, before = self.tests.get(nodeid, (frozenset(), ""))
        if not before or _RANK[outcome] > _RANK[before]:
            self.tests[nodeid] = (frozenset(kinds), outcome)

    @property
    def outcomes(self) -> dict[str, Counter]:
        out: dict[str, Counter] = {k: Counter() for k in QUALITY_MARKERS}
        for kinds, outcome in self.tests.values():
            for kind in kinds:
                out[kind][outcome] += 1
        return out

    def record_sockets(self, nodeid: str, connects: int, violations: list[str]) -> None:
        """Remember how many connects a test made and any attempt outside loopback."""
        if connects:
            self.connects[nodeid] = self.connects.get(nodeid, 0) + connects
        if violations:
            self.outside_loopback.setdefault(nodeid, []).extend(violations)

    def class_part(self) -> str:
        """``channel-path 9, config-file 7, other 281``: hostile cases per class (alphabetical,
        ``other`` last), or "" when no case names a class."""
        counts = Counter(self.classes[nodeid] for nodeid in self.tests if nodeid in self.classes)
        if not counts or set(counts) == {OTHER_CLASS}:
            return ""
        names = sorted(c for c in counts if c != OTHER_CLASS) + ([OTHER_CLASS] if OTHER_CLASS in counts else [])
        return ", ".join(f"{name} {counts[name]}" for name in names)

    def tried(self, kind: str) -> int:
        return sum(self.outcomes[kind].values())

    def summary_line(self) -> str:
        parts = []
        outcomes = self.outcomes
        for kind, label in QUALITY_MARKERS.items():
            counts = outcomes[kind]
            if not counts:
                parts.append(f"{label} 0")
                continue
            shown = ", ".join(f"{counts[o]} {o}" for o in _ORDER if counts.get(o))
            extras = [self.class_part()] if kind == HOSTILE else []
            extras += self.notes.get(kind, [])
            extra = "; ".join(e for e in extras if e)
            parts.append(f"{label} {sum(counts.values())} ({shown}{'; ' + extra if extra else ''})")
        if self.outside_loopback:
            names = ", ".join(sorted(self.outside_loopback))
            parts.append(f"outside-loopback connects: {len(self.outside_loopback)} test(s): {names}")
        else:
            parts.append("outside-loopback connects: none")
        if self.skipped:
            parts.append(self.skipped_part())
        parts.append(self.realhost_part())
        return "quality: " + " | ".join(parts)


def outcome_of(report: object) -> str | None:
    """The outcome word of a pytest ``TestReport`` phase, or None when the phase says nothing new."""
    when = getattr(report, "when", "")
    if hasattr(report, "wasxfail"):
        if getattr(report, "skipped", False):
            return "xfailed"
        if getattr(report, "passed", False) and when == "call":
            return "xpassed"
        if getattr(report, "failed", False):
            return "failed"  # strict xfail that passed
    if getattr(report, "skipped", False):
        return "skipped"
    if getattr(report, "failed", False):
        return "failed" if when == "call" else "error"
    if getattr(report, "passed", False) and when == "call":
        return "passed"
    return None


def _skip_reason(report: object) -> str:
    """The reason of a skipped pytest report (``longrepr`` is ``(path, lineno, "Skipped: why")``)."""
    longrepr = getattr(report, "longrepr", None)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr or "")


class QualityReportPlugin:
    """The pytest plugin behind the summary line and the ``offline_suite`` marker.

    Registered by ``tests/conftest.py``'s ``pytest_configure`` with the suite's socket audit
    (``support.socket_audit.AUDIT``). It reads the audit before any fixture is torn down (the
    conftest's socket guard resets it there), so setup and call connects are both seen.
    """

    def __init__(self, audit: SocketAudit) -> None:
        self.audit = audit
        self.report = SessionReport()

    @staticmethod
    def _kinds(item: pytest.Item) -> set[str]:
        return {m.name for m in item.iter_markers() if m.name in QUALITY_MARKERS}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
        report = yield
        if call.when == "call" and report.passed and item.get_closest_marker(OFFLINE_MARKER) is not None:
            connects = self.audit.inet_connects()
            if connects:
                # any connect, loopback included: an offline suite must not even try
                report.outcome = "failed"
                report.longrepr = (
                    f"offline_suite test made {len(connects)} socket connect(s), none allowed "
                    f"(loopback included): {connects[:5]!r}"
                )
        kinds = self._kinds(item)
        self.report.record_phase(
            item.nodeid, kinds, outcome_of(report), hostile_class(item) if HOSTILE in kinds else ""
        )
        outcome = outcome_of(report)
        reason = _skip_reason(report) if outcome == "skipped" else ""
        if item.get_closest_marker(REALHOST_MARKER) is not None:
            self.report.record_realhost(item.nodeid, outcome, reason)
        elif outcome == "skipped":
            self.report.record_skip(item.nodeid, reason)
        return report

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # a module skipped as a whole (``pytest.skip(allow_module_level=True)``, ``importorskip``)
        if report.skipped:
            self.report.record_skip(report.nodeid, _skip_reason(report))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        # before the fixtures' teardown: the socket guard has not reset the audit yet
        self.report.record_sockets(item.nodeid, len(self.audit.inet_connects()), list(self.audit.violations))
        return (yield)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # after pytest's own "N passed in ..." line: ours is the run's last line
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(self.report.summary_line())
