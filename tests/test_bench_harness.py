"""The benchmark harness: ``python -m bench --json --only NAME`` as a user runs it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import BenchContext, Benchmark, Figure, run_one, select

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run_bench(*args: str, channel_db: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if channel_db is not None:
        env["CM_CHANNEL_DB"] = str(channel_db)
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_json_output_of_a_catalog_benchmark(channel_db: Path):
    proc = _run_bench("--json", "--only", "catalog.lookup_by_id", "--repeat", "2", channel_db=channel_db)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == 1 and doc["channel_db"] == str(channel_db)
    [result] = doc["results"]
    assert result["name"] == "catalog.lookup_by_id" and result["unit"] == "us"
    assert isinstance(result["figure"], float) and result["figure"] > 0 and math.isfinite(result["figure"])
    assert result["target"] == 1000.0 and result["compare"] == "<"
    assert result["status"] in ("pass", "fail") and result["passed"] is (result["status"] == "pass")
    assert set(result) >= {"name", "figure", "unit", "target", "compare", "status", "passed", "note"}


def test_table_output_and_a_ratio_against_a_baseline(channel_db: Path):
    proc = _run_bench("--only", "catalog.cold_load_vs_json", "--repeat", "1", channel_db=channel_db)
    assert proc.returncode == 0, proc.stderr
    header, rule, row = proc.stdout.splitlines()
    assert header.split()[:5] == ["benchmark", "figure", "unit", "target", "result"]
    name, figure, unit, target, status = row.split()[:5]
    assert name == "catalog.cold_load_vs_json" and unit == "x" and status == "info"
    assert float(figure) > 1.0  # parsing + indexing costs more than json.loads alone


def test_unknown_only_is_an_error_listing_names():
    proc = _run_bench("--only", "no.such.benchmark")
    assert proc.returncode == 2
    assert "catalog.search" in proc.stderr


def test_benchmark_chatter_never_reaches_stdout(tmp_path: Path, capsys):
    def noisy(ctx: BenchContext) -> float:
        print("progress: 50%")
        return 2.0

    result = run_one(Benchmark("demo.noisy", "s", noisy, target=5.0), BenchContext(tmp_path, None))
    out, err = capsys.readouterr()
    assert result.status == "pass" and out == "" and "progress: 50%" in err


def test_statuses_and_selection(tmp_path: Path):
    slow = Benchmark("demo.slow", "ms", lambda ctx: Figure(50.0, "made up"), target=10.0)
    ctx = BenchContext(repo_root=tmp_path, channel_db=None)
    result = run_one(slow, ctx)
    assert (result.status, result.figure, result.note) == ("fail", 50.0, "made up")
    # no channel DB given: the copy shipped in tests/data/ (never a skip for want of ../shared)
    shipped = run_one(
        Benchmark("demo.db", "files", lambda c: float(len(list((c.require_channel_db() / "default").glob("*.json"))))),
        ctx,
    )
    assert (shipped.status, shipped.figure) == ("info", 6.0), shipped
    broken = run_one(Benchmark("demo.err", "s", lambda c: 1 / 0), ctx)
    assert broken.status == "error" and "ZeroDivisionError" in broken.note
    names = [Benchmark(n, "s", lambda c: 1.0) for n in ("catalog.a", "catalog.b", "other.a")]
    assert [b.name for b in select(names, ["catalog"])] == ["catalog.a", "catalog.b"]
    assert [b.name for b in select(names, ["*.a"])] == ["catalog.a", "other.a"]
    with pytest.raises(ValueError):
        Benchmark("demo.bad", "s", lambda c: 1.0, target=1.0, compare="~")
