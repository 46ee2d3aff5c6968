"""What a restore left behind, entry by entry, read from a fresh capture of the tree.

A restore's steps say what was attempted; this report says what is there now. Each pack and
each python package of the snapshot is ``installed`` (it matches the snapshot now and a step of
this restore put it there), ``already_present`` (it matched and nothing had to be done), ``failed``
(it does not match: with the reason, ``commit_absent``, ``url_moved``, ``network_blocked``,
``wheel_missing``, ...) or ``skipped`` (left alone on purpose: a flag, the ``only`` option).
Packs the snapshot does not list are ``removed``, ``disabled`` or ``kept``. The counts are
tallied from these entries, so they come from the capture, never from the steps that ran.
A git pack's pinned commit is verified: its HEAD must equal the snapshot's commit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import PackState, PythonPackage, Snapshot, _Record
from .plan import RestoreOptions, RestoreStep

__all__ = ["EntryReport", "RestoreReport", "report_after", "reason_of"]

STATUSES = ("installed", "already_present", "failed", "removed", "disabled", "kept", "skipped")

# error codes -> the reason a user reads
_REASONS = {
    "network_blocked": "network_blocked",
    "offline_mode": "network_blocked",
    "network_unreachable": "network_blocked",
    "https_required": "network_blocked",
    "redirect_refused": "network_blocked",
    "deps_missing_wheels": "wheel_missing",
    "snapshot_sources_missing": "source_missing",
    "policy_denied": "policy_denied",
    "security_denied": "policy_denied",
    "deps_source_not_allowed": "policy_denied",
}


def reason_of(error: Mapping[str, Any] | None) -> str:
    """A short reason for a coded error (``commit_absent`` and ``url_moved`` are read from git's words)."""
    code = str((error or {}).get("code") or "")
    if code in _REASONS:
        return _REASONS[code]
    text = str((error or {}).get("message") or "").lower()
    if code.startswith("git"):
        if any(w in text for w in ("not our ref", "reference is not a tree", "unadvertised object", "did not match")):
            return "commit_absent"
        if any(w in text for w in ("not found", "does not exist", "not appear to be a git repository", "no such")):
            return "url_moved"
        return "git_failed"
    if code.startswith("deps"):
        return "install_failed"
    return code or "failed"


@dataclass(frozen=True)
class EntryReport(_Record):
    kind: str  # pack | package
    name: str
    status: str  # one of STATUSES
    wanted: str = ""  # as the snapshot has it
    found: str = ""  # as the fresh capture has it ("" = absent)
    reason: str = ""  # failed / skipped: a short code
    message: str = ""  # failed / skipped: the words
    verified: bool | None = None  # git packs: HEAD equals the snapshot's commit (None: not a pinned git pack)


@dataclass(frozen=True)
class RestoreReport(_Record):
    packs: tuple[EntryReport, ...] = ()
    packages: tuple[EntryReport, ...] = ()
    captured_at: str = ""
    notes: tuple[str, ...] = ()
    counts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> tuple[EntryReport, ...]:
        return tuple(e for e in (*self.packs, *self.packages) if e.status == "failed")

    def lines(self) -> list[str]:
        c = self.counts
        out = [
            "after the restore: "
            + ", ".join(f"{c.get(s, 0)} {s.replace('_', ' ')}" for s in STATUSES if c.get(s) or s in STATUSES[:3])
        ]
        out += [f"failed: {e.kind} {e.name}: {e.reason}: {e.message}" for e in self.failed]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "packs": [e.to_dict() for e in self.packs],
            "packages": [e.to_dict() for e in self.packages],
            "counts": dict(self.counts),
            "captured_at": self.captured_at,
            "notes": list(self.notes),
            "lines": self.lines(),
        }


def _tally(entries: Iterable[EntryReport]) -> dict[str, int]:
    counter = Counter(e.status for e in entries)
    return {s: counter.get(s, 0) for s in STATUSES}


def _pack_form(p: PackState | None) -> str:
    return p.describe() if p is not None else ""


def _matches(want: PackState, cur: PackState) -> bool:
    if cur.enabled != want.enabled:
        return False
    if want.kind == "git" and want.commit:
        return cur.commit.lower() == want.commit.lower()
    if want.kind == "cnr" and want.version:
        return cur.version == want.version
    if want.kind == "file" and want.sha256 and cur.sha256:
        return cur.sha256 == want.sha256
    return True


@dataclass
class _Steps:
    """What happened to the steps, by target."""

    done: set[str] = field(default_factory=set)
    failed: tuple[RestoreStep, Mapping[str, Any]] | None = None
    not_done: set[str] = field(default_factory=set)
    undone: set[str] = field(default_factory=set)


def _why_not(
    name: str, steps: _Steps, left_out: Mapping[str, Any], planned: set[str], notes: Sequence[str]
) -> tuple[str, str]:
    """(reason, message) for an entry that does not match after the restore."""
    if name in left_out:
        m = left_out[name]
        reason = "commit_absent" if m.what == "commit" else "url_moved" if m.what == "repository" else m.what
        what = "the pinned commit is gone from" if m.what == "commit" else "nothing is at"
        return reason, f"{what} the source ({m.needed}); left out of the restore. {m.hint}".strip()
    if steps.failed is not None and steps.failed[0].target == name:
        err = steps.failed[1]
        return reason_of(err), str(err.get("message") or "the step failed")
    if name in steps.undone:
        at = steps.failed[0].index if steps.failed else "?"
        return "undone", f"put back as it was because step {at} of the restore failed"
    if name in steps.not_done:
        at = steps.failed[0].index if steps.failed else "?"
        return "not_started", f"not started: the restore stopped at step {at}"
    if name not in planned:
        note = next((n for n in notes if n.startswith(name)), "")
        return "no_source", note or "the restore had no step for it"
    return "differs", "a step ran, yet the tree does not match the snapshot"


def report_after(
    snapshot: Snapshot,
    after: Snapshot,
    options: RestoreOptions,
    *,
    planned: Sequence[RestoreStep],
    done: Sequence[RestoreStep] = (),
    failed: tuple[RestoreStep, Mapping[str, Any]] | None = None,
    not_done: Sequence[RestoreStep] = (),
    undone: Sequence[RestoreStep] = (),
    left_out: Sequence[Any] = (),
    pip_installed: Iterable[str] = (),  # packages this restore changed (before: different; now: matching)
    notes: Sequence[str] = (),
) -> RestoreReport:
    """Compare ``snapshot`` with ``after`` (a capture taken once the restore ended)."""
    steps = _Steps(
        {s.target for s in done} - {s.target for s in undone},
        failed,
        {s.target for s in not_done},
        {s.target for s in undone},
    )
    gone = {m.name: m for m in left_out}
    planned_targets = {s.target for s in planned} | set(gone)
    packs: list[EntryReport] = []
    if options.only != "pips":
        by_key: dict[str, list[PackState]] = {}
        for state in after.packs:
            by_key.setdefault(state.key, []).append(state)
        for want in snapshot.packs:
            copies = by_key.get(want.key, [])
            cur = next((c for c in copies if c.enabled == want.enabled), copies[0] if copies else None)
            pinned = want.kind == "git" and bool(want.commit)
            verified = (cur is not None and cur.commit.lower() == want.commit.lower()) if pinned else None
            if cur is not None and _matches(want, cur):
                status = "installed" if want.name in steps.done else "already_present"
                packs.append(EntryReport("pack", want.name, status, want.describe(), cur.describe(), verified=verified))
                continue
            reason, message = _why_not(want.name, steps, gone, planned_targets, notes)
            packs.append(
                EntryReport(
                    "pack", want.name, "failed", want.describe(), _pack_form(cur), reason, message, verified=verified
                )
            )
        wanted_keys = {w.key for w in snapshot.packs}
        mode = options.unlisted_for(snapshot)
        removed = [s for s in done if s.kind == "pack_remove" and s.target not in steps.undone]
        present = {c.name for c in after.packs}
        for s in removed:
            if s.target not in present:
                packs.append(EntryReport("pack", s.target, "removed", "", "", "not_in_snapshot"))
        for cur in after.packs:
            if cur.key in wanted_keys:
                continue
            if mode == "keep" or (mode == "disable" and not cur.enabled):
                status = "kept" if mode == "keep" else "disabled"
                packs.append(EntryReport("pack", cur.name, status, "", cur.describe(), "not_in_snapshot"))
                continue
            reason, message = _why_not(cur.name, steps, gone, planned_targets, notes)
            packs.append(
                EntryReport(
                    "pack",
                    cur.name,
                    "failed",
                    f"{'removed' if mode == 'remove' else 'disabled'} (not in the snapshot)",
                    cur.describe(),
                    reason,
                    message,
                )
            )
    packages: list[EntryReport] = []
    kinds = options.pip_kinds()
    report_notes: list[str] = []
    if snapshot.python and options.only != "nodes":
        unverified = any(n.startswith("python packages not captured") for n in after.notes)
        if unverified:
            report_notes.append("python packages could not be read after the restore; they are reported as failed")
        have: dict[str, PythonPackage] = {p.name: p for p in after.python}
        put = set(pip_installed)
        flag = {"index": "--pip-non-url", "url": "--pip-non-local-url", "local": "--pip-local-url"}
        for pkg in snapshot.python:
            cur_pkg = have.get(pkg.name)
            found = f"{cur_pkg.name}=={cur_pkg.version}" if cur_pkg is not None else ""
            wanted = f"{pkg.name}=={pkg.version}" if pkg.version else pkg.requirement
            if pkg.kind not in kinds:
                packages.append(
                    EntryReport("package", pkg.name, "skipped", wanted, found, "flag", f"pass {flag[pkg.kind]}")
                )
                continue
            if cur_pkg is not None and (not pkg.version or cur_pkg.version == pkg.version):
                status = "installed" if pkg.name in put else "already_present"
                packages.append(EntryReport("package", pkg.name, status, wanted, found))
                continue
            pip_step = next((s for s in planned if s.kind == "pip_install"), None)
            if failed is not None and failed[0].kind == "pip_install":
                reason, message = reason_of(failed[1]), str(failed[1].get("message") or "the package step failed")
            elif pip_step is not None and pip_step.target in steps.not_done:
                at = failed[0].index if failed else "?"
                reason, message = "not_started", f"not started: the restore stopped at step {at}"
            elif unverified:
                reason, message = "unverified", "the python environment could not be read after the restore"
            else:
                reason, message = (
                    "differs",
                    (
                        f"the environment has {found or 'no ' + pkg.name} after the package step "
                        "(the dependency policy may hold it back: pip_overrides.json, downgrade protection)"
                    ),
                )
            packages.append(EntryReport("package", pkg.name, "failed", wanted, found, reason, message))
    pack_counts, package_counts = _tally(packs), _tally(packages)
    counts: dict[str, Any] = {s: pack_counts[s] + package_counts[s] for s in STATUSES}
    counts["packs"] = pack_counts
    counts["packages"] = package_counts
    return RestoreReport(tuple(packs), tuple(packages), after.created_at, tuple(report_notes), counts)
