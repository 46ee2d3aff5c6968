"""Dependency-install benchmarks: our installer vs uv run directly, 20 wheels from a wheelhouse.

Setup (untimed): 20 hand-built wheels (some depending on others) in a wheelhouse, two real
venvs, one uv cache shared by both sides. Each repetition uninstalls everything from both
venvs (untimed), then times ``uv pip install --offline --no-index --find-links`` directly and
``DependencyInstaller.install_pack_requirements`` (offline mode: parse, plan, wheelhouse
pre-check, the same uv command), interleaved. The ratio is the steady state of a running
Manager (installer detected and target python probed once); the cold figure adds those first
two subprocesses.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from manager.deps.backends.base import child_env
from manager.deps.installer import DependencyInstaller
from manager.deps.policy import DepsPolicy
from manager.network import NetworkGate, NetworkMode, NetworkPolicy

from .run import BenchContext, Benchmark, BenchSkip, Figure, median_time

N_WHEELS = 20


def _setup(ctx: BenchContext) -> dict[str, Any]:
    helpers = ctx.support("wheels")
    uv = helpers.find_uv()
    if uv is None:
        raise BenchSkip("uv is not installed (pip install uv)")
    tmp = tempfile.TemporaryDirectory(prefix="cm-bench-deps-")
    base = Path(tmp.name)
    os.environ["UV_CACHE_DIR"] = str(base / "uv-cache")  # both sides share one warm cache
    names = [f"benchpkg{i:02d}" for i in range(N_WHEELS)]
    for i, name in enumerate(names):
        requires = (f"{names[i + 1]}>=1",) if i % 4 == 0 and i + 1 < N_WHEELS else ()
        helpers.build_wheel(base / "wheelhouse", name, "1.0", requires=requires)
    pack = base / "custom_nodes" / "BenchPack"
    pack.mkdir(parents=True)
    (pack / "requirements.txt").write_text("".join(f"{n}>=1.0\n" for n in names))
    ours_venv = helpers.make_venv(base / "venv-ours")
    installer = DependencyInstaller(
        DepsPolicy(python=str(ours_venv), use_uv=True, wheelhouse_dirs=(base / "wheelhouse",)),
        NetworkGate(NetworkPolicy(mode=NetworkMode.OFFLINE)),
    )
    return {
        "tmp": tmp,
        "uv": uv,
        "names": names,
        "pack": pack,
        "wheelhouse": base / "wheelhouse",
        "ours": ours_venv,
        "installer": installer,
    }


def _uninstall(uv: str, python: Path, names: list[str]) -> None:
    subprocess.run(
        [uv, "pip", "uninstall", "--python", str(python), *names], capture_output=True, check=True, env=child_env()
    )


def _direct(s: dict[str, Any]) -> None:
    # the same target venv as ours (emptied before each half of a pair): two venvs of one
    # recipe still differ by tens of ms for uv, which would be measured as our overhead
    subprocess.run(
        [
            s["uv"],
            "pip",
            "install",
            "--python",
            str(s["ours"]),
            "--no-config",
            "--offline",
            "--no-index",
            "--find-links",
            str(s["wheelhouse"]),
            *[f"{n}>=1.0" for n in s["names"]],
        ],
        capture_output=True,
        check=True,
        env=child_env(),
    )


def _ours(s: dict[str, Any]) -> None:
    result = s["installer"].install_pack_requirements(s["pack"], "BenchPack")
    if not result.ran:
        raise RuntimeError("the installer did not run (venv was not emptied?)")


def overhead_ratio(ctx: BenchContext) -> Figure:
    s = ctx.memo("deps.setup", lambda: _setup(ctx))
    cold_start = time.perf_counter()
    _ours(s)  # first call: detection + probe of the target python
    cold = time.perf_counter() - cold_start
    _direct(s)
    direct, ours = [], []
    for _ in range(max(11, ctx.repeat)):
        _uninstall(s["uv"], s["ours"], s["names"])
        start = time.perf_counter()
        _direct(s)
        direct.append(time.perf_counter() - start)
        _uninstall(s["uv"], s["ours"], s["names"])
        start = time.perf_counter()
        _ours(s)
        ours.append(time.perf_counter() - start)
    # paired differences: a load spike from other processes hits both halves of a pair alike
    td = statistics.median(direct)
    extra = statistics.median(o - d for o, d in zip(ours, direct, strict=True))
    ctx.memo("deps.cold", lambda: cold - td)
    return Figure(
        (td + extra) / td,
        f"uv alone {td * 1000:.0f} ms, ours +{extra * 1000:.1f} ms "
        f"(medians of {len(direct)} pairs); first call {cold * 1000:.0f} ms",
    )


def prepare_ms(ctx: BenchContext) -> Figure:
    """Our in-process share alone: parse, plan, wheelhouse pre-check, command (no subprocess)."""
    s = ctx.memo("deps.setup", lambda: _setup(ctx))
    inst: DependencyInstaller = s["installer"]
    _ = inst.environment  # the property access probes the target once, like a running Manager
    _uninstall(s["uv"], s["ours"], s["names"])  # an empty venv: the pre-check walks every wheel

    def prepare() -> None:
        plan = inst.plan_for([("BenchPack", s["pack"])])
        items = inst._check_offline(list(plan.merged), plan, "BenchPack")
        inst._invocations(items, plan, True)

    seconds = median_time(prepare, repeat=max(ctx.repeat, 11))
    return Figure(seconds * 1000, f"{N_WHEELS} requirements, {N_WHEELS} wheels")


def cold_overhead(ctx: BenchContext) -> Figure:
    if "deps.cold" not in ctx._memo:
        overhead_ratio(ctx)
    extra = ctx.memo("deps.cold", lambda: 0.0)
    return Figure(extra * 1000, "first install after start: uv/pip detection + one probe of the target python")


BENCHMARKS = [
    Benchmark(
        "deps.install_20_wheels_overhead",
        "ratio",
        overhead_ratio,
        target=1.10,
        compare="<=",
        baseline="uv pip install --offline --no-index --find-links (direct)",
        description="20 wheels from the wheelhouse through DependencyInstaller vs uv directly",
    ),
    Benchmark(
        "deps.prepare_20_requirements",
        "ms",
        prepare_ms,
        description="in-process part of one install (parse, plan, wheelhouse pre-check, command)",
    ),
    Benchmark(
        "deps.first_install_extra",
        "ms",
        cold_overhead,
        description="extra time of the first install (installer detection + target probe)",
    ),
]
