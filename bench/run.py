"""Benchmark registry and runner: ``python -m bench [--json] [--only NAME] [--strict] [--compare FILE]``.

Every ``bench/bench_*.py`` module exposes ``BENCHMARKS: list[Benchmark]``. A benchmark's
``measure`` receives a ``BenchContext`` and returns its figure (a float in ``unit``, or a
``Figure`` with a note and the figure of its baseline, measured in the same process, same run:
the table prints figure, baseline and their ratio side by side). ``target_on="ratio"`` judges the
ratio against the target, else the figure. Timings are medians of several repetitions.
``--compare FILE`` sets this run beside a saved ``--json`` run (``bench/compare.py``) and flags
slowdowns beyond the noise threshold. Exit status: 0 even when a target is missed or a slowdown
is flagged (1 with ``--strict``); 1 when a benchmark crashed; 2 for a bad ``--only`` or an
unreadable comparison file.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import gc
import importlib
import json
import pkgutil
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA = 2  # 2: baseline_figure, ratio, target_on and noise_floor beside each figure
TARGET_ON = ("figure", "ratio")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class BenchSkip(Exception):
    """Raised by a benchmark whose inputs are absent (for example no channel DB)."""


@dataclass(frozen=True)
class Figure:
    """A measured value in the benchmark's unit; ``baseline``: the baseline's value in the same
    unit, measured in the same process and run (the ratio is ``value / baseline``)."""

    value: float
    note: str = ""
    baseline: float | None = None


@dataclass(frozen=True)
class Benchmark:
    """One measured figure with an optional target (``figure <compare> target`` passes)."""

    name: str
    unit: str
    measure: Callable[[BenchContext], float | Figure]
    target: float | None = None
    compare: str = "<"
    baseline: str = ""  # names what the figure is measured against (its baseline run)
    description: str = ""
    target_on: str = "figure"  # "ratio": the target judges figure / baseline
    noise_floor: float | None = None  # --compare: changes smaller than this (in unit) are noise

    def __post_init__(self) -> None:
        if self.compare not in _COMPARE:
            raise ValueError(f"benchmark {self.name}: compare must be one of {sorted(_COMPARE)}")
        if self.target_on not in TARGET_ON:
            raise ValueError(f"benchmark {self.name}: target_on must be one of {TARGET_ON}")

    def passes(self, value: float) -> bool | None:
        return None if self.target is None else _COMPARE[self.compare](value, self.target)


@dataclass
class BenchContext:
    """Shared by the benchmarks of one run: where things are, and memoised inputs."""

    repo_root: Path
    channel_db: Path | None
    repeat: int = 5
    _memo: dict[str, Any] = field(default_factory=dict)

    def support(self, name: str) -> Any:
        """A test helper module (``tests/support/<name>.py``), loaded by path: outside pytest
        the test helpers are not a package on sys.path. Raises ``BenchSkip`` when absent."""
        import importlib.util
        import sys

        path = self.repo_root / "tests" / "support" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"cm_bench_support_{name}", path)
        if spec is None or spec.loader is None or not path.is_file():
            raise BenchSkip(f"cannot load {path}")
        if spec.name not in sys.modules:
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up there
            spec.loader.exec_module(module)
        return sys.modules[spec.name]

    def memo(self, key: str, factory: Callable[[], Any]) -> Any:
        """Compute an expensive input once per run (outside any timed region)."""
        if key not in self._memo:
            self._memo[key] = factory()
        return self._memo[key]

    def require_channel_db(self) -> Path:
        """The channel DB of this run; without one, the copy shipped in ``tests/data/``."""
        if self.channel_db is None:
            data = _channel_data(self.repo_root if (self.repo_root / "tests" / "support").is_dir() else REPO_ROOT)
            try:
                self.channel_db = data.channel_db()
            except data.ChannelDataError as exc:
                raise BenchSkip(f"no channel DB: {exc}") from None
        return self.channel_db


@dataclass(frozen=True)
class Result:
    name: str
    unit: str
    figure: float | None
    target: float | None
    compare: str
    status: str  # pass | fail | info | skip | error
    note: str = ""
    baseline: str = ""
    description: str = ""
    baseline_figure: float | None = None
    ratio: float | None = None
    target_on: str = "figure"
    noise_floor: float | None = None

    @property
    def judged(self) -> float | None:
        """The value the target (and a comparison) looks at: the ratio or the figure."""
        return self.ratio if self.target_on == "ratio" else self.figure

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["passed"] = {"pass": True, "fail": False}.get(self.status)
        return out


# --- timing helpers -----------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by rank: the value at or above ``q`` of the sorted list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def median_time(fn: Callable[[], Any], *, repeat: int = 5, number: int = 1) -> float:
    """Median over ``repeat`` repetitions of the seconds one call of ``fn`` takes."""
    return statistics.median(_samples(fn, repeat, number))


def _samples(fn: Callable[[], Any], repeat: int, number: int) -> list[float]:
    out = []
    for _ in range(max(1, repeat)):
        out.append(_once(fn, number))
    return out


def _once(fn: Callable[[], Any], number: int) -> float:
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()  # a collection landing in one sample would dominate it
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    finally:
        if enabled:
            gc.enable()


def timed_ratio(
    fn: Callable[[], Any], baseline: Callable[[], Any], *, repeat: int = 5, number: int = 1
) -> tuple[float, float, float]:
    """(median fn / median baseline, median fn, median baseline), runs interleaved in one go
    (which side goes first alternates, so neither always runs on a cache the other warmed)."""
    a, b = [], []
    for i in range(max(1, repeat)):
        if i % 2:
            a.append(_once(fn, number))
            b.append(_once(baseline, number))
        else:
            b.append(_once(baseline, number))
            a.append(_once(fn, number))
    ta, tb = statistics.median(a), statistics.median(b)
    return (ta / tb if tb > 0 else float("inf")), ta, tb


@dataclass(frozen=True)
class Pairs:
    """What ``timed_pairs`` measured, in seconds: wall-clock estimates of fn and the baseline's
    median, and the same for CPU time (this process and its children: what other processes'
    load does not stretch, only disk and scheduler waits do)."""

    fn: float
    base: float
    fn_cpu: float
    base_cpu: float

    def cpu_note(self) -> str:
        return f"cpu {self.fn_cpu / self.base_cpu:.2f}x" if self.base_cpu > 0 else ""


def _cpu() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed_pairs(
    fn: Callable[[], Any],
    baseline: Callable[[], Any],
    *,
    repeat: int = 11,
    before: Callable[[], Any] | None = None,
) -> Pairs:
    """Estimates of fn and of the baseline from ``repeat`` interleaved pairs.

    ``before`` runs untimed ahead of every timed call (emptying a venv, say). The estimate of fn
    is the baseline's median plus the median of the paired differences: a load spike from other
    processes lands on both halves of a pair and cancels, where two separate medians would not.
    The side that runs first alternates."""
    walls: dict[str, list[float]] = {"fn": [], "base": []}
    cpus: dict[str, list[float]] = {"fn": [], "base": []}
    for i in range(max(1, repeat)):
        for side in ("fn", "base") if i % 2 else ("base", "fn"):
            if before is not None:
                before()
            cpu, start = _cpu(), time.perf_counter()
            fn() if side == "fn" else baseline()
            walls[side].append(time.perf_counter() - start)
            cpus[side].append(_cpu() - cpu)

    def estimate(values: dict[str, list[float]]) -> tuple[float, float]:
        base = statistics.median(values["base"])
        return base + statistics.median(x - y for x, y in zip(values["fn"], values["base"], strict=True)), base

    (fn_wall, base_wall), (fn_cpu, base_cpu) = estimate(walls), estimate(cpus)
    return Pairs(fn_wall, base_wall, fn_cpu, base_cpu)


# --- discovery and running ----------------------------------------------------------------
def _channel_data(repo_root: Path = REPO_ROOT) -> Any:
    """``tests/support/channel_data.py`` loaded by path (outside pytest tests/ is not on sys.path)."""
    import importlib.util
    import sys

    name = "cm_bench_support_channel_data"
    if name not in sys.modules:
        path = repo_root / "tests" / "support" / "channel_data.py"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None or not path.is_file():
            raise BenchSkip(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def find_channel_db(repo_root: Path = REPO_ROOT) -> Path:
    """``CM_CHANNEL_DB``, else the dated copy shipped in ``tests/data/`` (unpacked once into a cache).

    A ``CM_CHANNEL_DB`` without ``default/custom-node-list.json`` is an error (``SystemExit`` with why).
    """
    data = _channel_data(repo_root)
    try:
        return data.channel_db()
    except data.ChannelDataError as exc:
        raise SystemExit(f"bench: {exc}") from None


def discover() -> list[Benchmark]:
    """Every ``BENCHMARKS`` entry of the ``bench/bench_*.py`` modules, in module-name order."""
    here = Path(__file__).resolve().parent
    out: list[Benchmark] = []
    for mod in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if mod.name.startswith("bench_"):
            module = importlib.import_module(f"{__package__ or 'bench'}.{mod.name}")
            out.extend(getattr(module, "BENCHMARKS", []))
    names = [b.name for b in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RuntimeError(f"benchmark names used twice: {sorted(dupes)}")
    return out


def select(benchmarks: Sequence[Benchmark], only: Sequence[str]) -> list[Benchmark]:
    """Benchmarks matching any ``--only`` value: exact name, glob, or a dotted prefix."""
    if not only:
        return list(benchmarks)
    return [
        b
        for b in benchmarks
        if any(b.name == o or fnmatch.fnmatchcase(b.name, o) or b.name.startswith(o + ".") for o in only)
    ]


def run_one(bench: Benchmark, ctx: BenchContext) -> Result:
    base = dict(
        name=bench.name,
        unit=bench.unit,
        target=bench.target,
        compare=bench.compare,
        baseline=bench.baseline,
        description=bench.description,
        target_on=bench.target_on,
        noise_floor=bench.noise_floor,
    )
    try:
        # stdout belongs to the table or the JSON document: chatter from a benchmark goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            got = bench.measure(ctx)
    except BenchSkip as exc:
        return Result(figure=None, status="skip", note=str(exc), **base)
    except Exception as exc:  # a crashing benchmark is reported, and the run goes on
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Result(figure=None, status="error", note=tb, **base)
    fig = got if isinstance(got, Figure) else Figure(float(got))
    ratio = fig.value / fig.baseline if fig.baseline else None
    if bench.target_on == "ratio" and ratio is None:
        return Result(
            figure=fig.value, status="error", note="a ratio target but no baseline figure was measured", **base
        )
    verdict = bench.passes(ratio if ratio is not None and bench.target_on == "ratio" else fig.value)
    status = "info" if verdict is None else "pass" if verdict else "fail"
    return Result(figure=fig.value, status=status, note=fig.note, baseline_figure=fig.baseline, ratio=ratio, **base)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def render_table(results: Sequence[Result]) -> str:
    """One row per benchmark: figure and its baseline (same unit, same run), their ratio, the
    target (``x`` when it judges the ratio), the result and the note."""
    rows = [("benchmark", "unit", "figure", "baseline", "ratio", "target", "result", "note")]
    for r in results:
        target = "-"
        if r.target is not None:
            target = f"{r.compare} {_fmt(r.target)}{'x' if r.target_on == 'ratio' else ''}"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        rows.append((r.name, r.unit, _fmt(r.figure), _fmt(r.baseline_figure), ratio, target, r.status, r.note))
    return _grid(rows, numeric=(2, 3, 4))


def _grid(rows: Sequence[Sequence[str]], *, numeric: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell (numbers right-aligned); the last column runs free."""
    n = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(n)]
    lines = []
    for k, row in enumerate(rows):
        cells = [row[i].rjust(widths[i]) if i in numeric else row[i].ljust(widths[i]) for i in range(n)]
        lines.append("  ".join([*cells, row[n]]).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def document(results: Sequence[Result], db: Path | None) -> dict[str, Any]:
    """The ``--json`` document (what ``--compare`` reads back)."""
    return {
        "schema": SCHEMA,
        "python": platform.python_version(),
        "channel_db": str(db) if db else None,
        "results": [r.to_dict() for r in results],
    }


def main(argv: Sequence[str] | None = None) -> int:
    from . import compare as cmp

    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the benchmarks.")
    parser.add_argument("--json", action="store_true", help="print the results as JSON (save it for --compare)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this benchmark (exact name, glob or dotted prefix); repeatable",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when any target is missed or slowdown flagged")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per timing (median kept)")
    parser.add_argument("--list", action="store_true", help="list the benchmark names and exit")
    parser.add_argument(
        "--compare", metavar="FILE", help="set the results beside an earlier run saved with --json; flag slowdowns"
    )
    parser.add_argument(
        "--current",
        metavar="FILE",
        help="with --compare: compare this saved --json run instead of running the benchmarks",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=cmp.DEFAULT_THRESHOLD,
        help="with --compare: relative change counted as a slowdown (default 0.15), beyond each "
        "benchmark's absolute noise floor",
    )
    args = parser.parse_args(argv)

    earlier: dict[str, dict[str, Any]] = {}
    if args.compare:
        try:
            earlier = cmp.load_saved(args.compare)
        except cmp.SavedRunError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
    if args.current:
        if not args.compare:
            print("bench: --current needs --compare (the earlier run)", file=sys.stderr)
            return 2
        try:
            now = list(cmp.load_saved(args.current).values())
        except cmp.SavedRunError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
        changes = cmp.compare(earlier, now, threshold=args.threshold)
        print(
            json.dumps({"comparison": [c.to_dict() for c in changes]}, indent=2) if args.json else cmp.render(changes)
        )
        return 1 if args.strict and any(c.verdict == "slower" for c in changes) else 0

    benchmarks = discover()
    if args.list:
        for b in benchmarks:
            print(f"{b.name:32} {b.description}")
        return 0
    chosen = select(benchmarks, args.only)
    if not chosen:
        print(f"no benchmark matches {args.only}; known: {', '.join(b.name for b in benchmarks)}", file=sys.stderr)
        return 2
    db = find_channel_db()
    ctx = BenchContext(repo_root=REPO_ROOT, channel_db=db, repeat=max(1, args.repeat))
    results = [run_one(b, ctx) for b in chosen]
    changes = cmp.compare(earlier, [r.to_dict() for r in results], threshold=args.threshold) if args.compare else []
    if args.json:
        doc = document(results, db)
        if args.compare:
            doc["comparison"] = [c.to_dict() for c in changes]
        print(json.dumps(doc, indent=2))
    else:
        print(render_table(results))
        if args.compare:
            print(f"\ncompared with {args.compare}:")
            print(cmp.render(changes))
    if any(r.status == "error" for r in results):
        return 1
    if args.strict and (any(r.status == "fail" for r in results) or any(c.verdict == "slower" for c in changes)):
        return 1
    return 0
