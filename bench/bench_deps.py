"""Dependency-install benchmarks: our installer vs uv run directly, 20 wheels from a wheelhouse.

Setup (untimed): 20 hand-built wheels (some depending on others) in a wheelhouse, one real venv,
one uv cache shared by both sides (warm). Before every timed call the venv is emptied (untimed),
so both sides install the same 20 wheels into the same venv, from the same wheelhouse, with the
same uv flags: ``uv pip install --python <venv> --no-config --offline --no-index --find-links
<wheelhouse> <the 20 requirements>``. Ours is ``DependencyInstaller.install_pack_requirements``
(parse, plan, wheelhouse pre-check, that same uv command).

- ``deps.install_20_wheels_overhead``: one install with an installer that has already learnt its
  target (as every pack after the first of a task run): ours vs uv alone.
- ``deps.task_run_20_wheels``: a whole task run's python work as an install task does it: the run's
  installer is new, its first probe of the target python gives the undo record's package set and
  the environment in one run, uv is detected, the 20 wheels are installed, the package set after
  is probed. Baseline: what any recorded install needs anyway: the two package probes and uv alone.
  Informational (no target): the extra is ``uv --version`` once per run and the environment part
  of the first probe, a few milliseconds each.
- ``deps.prepare_20_requirements``: our in-process share alone (parse, plan, pre-check, command)
  beside ``packaging.Requirement`` parsing the same 20 lines.

Pairs are interleaved (alternating which side goes first); a figure is the baseline's median
plus the median of the paired differences, so load from other processes cancels out.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from manager.deps.backends.base import child_env
from manager.deps.environment import probe_packages
from manager.deps.installer import DependencyInstaller
from manager.deps.policy import DepsPolicy
from manager.network import NetworkGate, NetworkMode, NetworkPolicy

from .run import BenchContext, Benchmark, BenchSkip, Figure, median_time, timed_pairs

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
    policy = DepsPolicy(python=str(ours_venv), use_uv=True, wheelhouse_dirs=(base / "wheelhouse",))
    gate = NetworkGate(NetworkPolicy(mode=NetworkMode.OFFLINE))
    return {
        "tmp": tmp,
        "uv": uv,
        "names": names,
        "pack": pack,
        "wheelhouse": base / "wheelhouse",
        "ours": ours_venv,
        "installer": DependencyInstaller(policy, gate),
        "new_installer": lambda: DependencyInstaller(policy, gate),
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


def _ours(s: dict[str, Any], installer: DependencyInstaller | None = None) -> None:
    result = (installer or s["installer"]).install_pack_requirements(s["pack"], "BenchPack")
    if not result.ran:
        raise RuntimeError("the installer did not run (venv was not emptied?)")


def _empty(s: dict[str, Any]) -> None:
    _uninstall(s["uv"], s["ours"], s["names"])


def overhead_ratio(ctx: BenchContext) -> Figure:
    s = ctx.memo("deps.setup", lambda: _setup(ctx))
    _ = s["installer"].environment  # learnt once, as the run's first probe does
    _empty(s)
    _ours(s)  # warm: uv detection, the wheelhouse listing, OS caches
    _empty(s)
    _direct(s)
    got = timed_pairs(lambda: _ours(s), lambda: _direct(s), repeat=max(4 * ctx.repeat, 21), before=lambda: _empty(s))
    extra = (got.fn - got.base) * 1000
    return Figure(got.fn * 1000, f"{N_WHEELS} wheels; +{extra:.1f} ms; {got.cpu_note()}", baseline=got.base * 1000)


def task_run(ctx: BenchContext) -> Figure:
    s = ctx.memo("deps.setup", lambda: _setup(ctx))
    python = str(s["ours"])

    def ours() -> None:
        installer = s["new_installer"]()  # a new run: nothing learnt yet
        installer.package_set()  # the record's "before", which also teaches the environment
        _ours(s, installer)  # detects uv once, then installs
        probe_packages(python)  # the record's "after"

    def base() -> None:
        probe_packages(python)
        _direct(s)
        probe_packages(python)

    _empty(s)
    ours()  # warm: the OS caches of a fresh interpreter's files
    got = timed_pairs(ours, base, repeat=max(11, ctx.repeat), before=lambda: _empty(s))
    extra = (got.fn - got.base) * 1000
    return Figure(got.fn * 1000, f"+{extra:.1f} ms per run; {got.cpu_note()}", baseline=got.base * 1000)


def prepare_ms(ctx: BenchContext) -> Figure:
    """Our in-process share alone: parse, plan, wheelhouse pre-check, command (no subprocess)."""
    from packaging.requirements import Requirement

    s = ctx.memo("deps.setup", lambda: _setup(ctx))
    inst: DependencyInstaller = s["installer"]
    _ = inst.environment  # the property access probes the target once, like a task run
    _empty(s)  # an empty venv: the pre-check walks every wheel
    lines = (s["pack"] / "requirements.txt").read_text().splitlines()

    def prepare() -> None:
        plan = inst.plan_for([("BenchPack", s["pack"])])
        items = inst._check_offline(list(plan.merged), plan, "BenchPack")
        inst._invocations(items, plan, True)

    def parse_only() -> None:
        for line in lines:
            Requirement(line)

    seconds = median_time(prepare, repeat=max(ctx.repeat, 11))
    floor = median_time(parse_only, repeat=max(ctx.repeat, 11))
    return Figure(seconds * 1000, f"{N_WHEELS} requirements, {N_WHEELS} wheels", baseline=floor * 1000)


BENCHMARKS = [
    Benchmark(
        "deps.install_20_wheels_overhead",
        "ms",
        overhead_ratio,
        target=1.10,
        compare="<=",
        target_on="ratio",
        baseline="uv pip install --offline --no-index --find-links, same venv, wheels and flags",
        description="20 wheels from the wheelhouse through DependencyInstaller vs uv directly",
    ),
    Benchmark(
        "deps.task_run_20_wheels",
        "ms",
        task_run,
        compare="<=",
        target_on="ratio",  # informational: the run's extra is uv detection + the probe's environment part
        baseline="the undo record's two package probes + uv alone",
        description="one install task's python work: probe before (+ environment), detect, install, probe after",
    ),
    Benchmark(
        "deps.prepare_20_requirements",
        "ms",
        prepare_ms,
        baseline="packaging.Requirement of the same 20 lines",
        description="in-process part of one install (parse, plan, wheelhouse pre-check, command)",
    ),
]
