"""``python -m bench --compare FILE``: this run beside an earlier one saved with ``--json``.

Each benchmark is matched by name. The value compared is the one its target judges: the ratio
for ``target_on="ratio"`` benchmarks (a ratio against a baseline measured in the same run travels
between machines and loads far better than a time), else the figure. Lower is better unless the
target asks for ``>``/``>=`` (throughput, speed ratios). A change is flagged ``slower`` when it is
worse by more than the threshold (15 % by default) *and* by more than the benchmark's absolute
noise floor (``Benchmark.noise_floor``, else one per unit below): a 0.2 ms figure moving to 0.3 ms
is noise, not a slowdown. ``faster`` is the same test the other way; anything else is ``same``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .run import _fmt, _grid  # figures shown as the run's table shows them

DEFAULT_THRESHOLD = 0.15
# absolute changes below these are noise whatever the relative change (per unit of the value compared)
UNIT_FLOORS: dict[str, float] = {
    "x": 0.05,
    "ratio": 0.05,
    "s": 0.005,
    "ms": 0.5,
    "us": 20.0,
    "MB": 5.0,
    "MiB/s": 5.0,
    "MB/s": 5.0,
    "req/s": 20.0,
}
SCHEMAS = (1, 2)


class SavedRunError(Exception):
    """The file given to ``--compare`` / ``--current`` is not a saved ``--json`` run."""


@dataclass(frozen=True)
class Change:
    name: str
    what: str  # "ratio" or the unit of the figure
    before: float | None
    now: float | None
    change: float | None  # relative: (now - before) / before
    verdict: str  # slower | faster | same | new | gone | not measured | not comparable

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load_saved(path: str | Path) -> dict[str, dict[str, Any]]:
    """The results of a saved run by benchmark name; ``SavedRunError`` saying what is wrong."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SavedRunError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SavedRunError(f"{path} is not JSON ({exc}); save a run with: python -m bench --json > FILE") from None
    if not isinstance(doc, dict) or doc.get("schema") not in SCHEMAS or not isinstance(doc.get("results"), list):
        raise SavedRunError(
            f"{path} is not a saved bench run (schema {SCHEMAS}); save one with: python -m bench --json > FILE"
        )
    return {str(r["name"]): r for r in doc["results"] if isinstance(r, dict) and "name" in r}


def _judged(entry: Mapping[str, Any]) -> tuple[float | None, str]:
    """The value compared and what it is: "ratio" (a ratio target, or a figure whose unit is a
    ratio, as schema 1 saved them) or the figure's unit."""
    if entry.get("target_on") == "ratio":
        value = entry.get("ratio")
        return (float(value) if isinstance(value, (int, float)) else None), "ratio"
    value = entry.get("figure")
    unit = str(entry.get("unit", ""))
    return (float(value) if isinstance(value, (int, float)) else None), "ratio" if unit in ("x", "ratio") else unit


def _floor(entry: Mapping[str, Any], what: str) -> float:
    floor = entry.get("noise_floor")
    if what != "ratio" and isinstance(floor, (int, float)):
        return float(floor)
    return UNIT_FLOORS.get("x" if what == "ratio" else what, 0.0)


def judge(before: float, now: float, *, higher_is_better: bool, threshold: float, floor: float) -> str:
    """slower | faster | same for one value (see the module doc)."""
    worse = (before - now) if higher_is_better else (now - before)
    limit = max(threshold * abs(before), floor)
    if worse > limit:
        return "slower"
    if -worse > limit:
        return "faster"
    return "same"


def compare(
    earlier: Mapping[str, Mapping[str, Any]], now: Sequence[Mapping[str, Any]], *, threshold: float = DEFAULT_THRESHOLD
) -> list[Change]:
    """One ``Change`` per benchmark of ``now``, then one per benchmark only ``earlier`` has."""
    out: list[Change] = []
    seen: set[str] = set()
    for entry in now:
        name = str(entry["name"])
        seen.add(name)
        value, what = _judged(entry)
        old = earlier.get(name)
        if old is None:
            out.append(Change(name, what, None, value, None, "new"))
            continue
        old_value, old_what = _judged(old)
        if old_what != what:
            out.append(Change(name, what, old_value, value, None, "not comparable"))
            continue
        if value is None or old_value is None:
            out.append(Change(name, what, old_value, value, None, "not measured"))
            continue
        verdict = judge(
            old_value,
            value,
            higher_is_better=str(entry.get("compare", "<")).startswith(">"),
            threshold=threshold,
            floor=_floor(entry, what),
        )
        rel = (value - old_value) / old_value if old_value else None
        out.append(Change(name, what, old_value, value, rel, verdict))
    for name, old in earlier.items():
        if name not in seen:
            value, what = _judged(old)
            out.append(Change(name, what, value, None, None, "gone"))
    return out


def render(changes: Sequence[Change]) -> str:
    rows = [("benchmark", "compared", "before", "now", "change", "verdict")]
    for c in changes:
        rel = f"{c.change * 100:+.0f}%" if c.change is not None else "-"
        verdict = "SLOWER" if c.verdict == "slower" else c.verdict
        rows.append((c.name, c.what, _fmt(c.before), _fmt(c.now), rel, verdict))
    slower = sum(c.verdict == "slower" for c in changes)
    summary = f"{slower} slowdown(s) beyond the noise threshold" if slower else "no slowdown beyond the noise threshold"
    return _grid(rows, numeric=(2, 3, 4)) + "\n" + summary
