"""What ``snapshot restore`` and ``restore-snapshot`` print once the restore task ended: the counts read
from the fresh capture the restore took (``result.report``) and every failed entry with its reason.
A restore that left an entry failed exits 3 (PARTIAL): the rest was restored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import SnapshotRestoreFailed
from . import exit_codes


def _reports(tasks: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    out = []
    for t in tasks:
        result = t.get("result") or ((t.get("error") or {}).get("details") or {})
        report = result.get("report") if isinstance(result, Mapping) else None
        if isinstance(report, Mapping):
            out.append(report)
    return out


def finish(name: str, tasks: Sequence[Mapping[str, Any]], *, as_json: bool) -> SnapshotRestoreFailed | None:
    """Print the report (unless ``as_json``); the PARTIAL-marked error to raise when an entry failed, else None."""
    failed: list[Mapping[str, Any]] = []
    counts: dict[str, Any] = {}
    for report in _reports(tasks):
        if not as_json:
            print("\n".join(str(line) for line in report.get("lines") or ()))
        failed += [e for e in (*report.get("packs", ()), *report.get("packages", ())) if e.get("status") == "failed"]
        counts = dict(report.get("counts") or {})
    if not failed or any(t.get("error") for t in tasks):
        return None
    listing = "; ".join(f"{e['kind']} {e['name']}: {e.get('reason')}" for e in failed[:5])
    err = SnapshotRestoreFailed(
        f"{name}: {len(failed)} entr{'y is' if len(failed) == 1 else 'ies are'} not as the snapshot has them after "
        f"the restore: {listing}" + (" ..." if len(failed) > 5 else ""),
        hint="Everything else was restored. Each failed entry says why (its message); fix the cause and restore again.",
        details={"failed": failed, "counts": counts, "report": list(tasks)},
    )
    return exit_codes.mark(err, exit_codes.PARTIAL)  # type: ignore[return-value]
