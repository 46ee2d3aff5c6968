"""Shared pieces of the operation verbs: progress reporting, the dependency and install-script
steps, policy checks, results, and finding an installed pack by key."""

from __future__ import annotations

import collections
import dataclasses
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Deque, Iterable, Mapping, Protocol

from ..procs import child_kwargs, kill_tree
from ..errors import (InstallScriptFailed, InstallStepFailed, ManagerError, NotFound, PackAmbiguous,
                      PolicyDenied)
from ..inventory import InstalledPack, Inventory
from ..records import PolicyDecision
from ..tasks import TaskCancelled

if TYPE_CHECKING:                                   # pragma: no cover
    from ..context import Manager
    from ..tasks import TaskContext

LineFn = Callable[[str], None]
TAIL_LINES = 20
DEFAULT_SCRIPT_TIMEOUT = 600.0

# Stable stage names (docs/operations.md); clients key their display on them.
STAGES = ("resolve", "stage", "clone", "download", "extract", "copy", "tracking", "deps", "install-script",
          "rename", "move", "checkout", "fetch", "plan", "step", "delete", "done")


class DepsStep(Protocol):
    """Installs one staged pack's Python requirements; returns a JSON-able summary."""

    def __call__(self, pack_dir: Path, pack_name: str, progress: LineFn) -> Mapping[str, Any] | None: ...


class Reporter:
    """Progress for a verb: forwards to the task context (if any) and keeps each stage's tail."""

    def __init__(self, ctx: "TaskContext | None" = None, *, on_event: Callable[[str, float | None, str | None], None]
                 | None = None) -> None:
        self.ctx = ctx
        self.on_event = on_event
        self.stage_name = ""
        self.tails: dict[str, Deque[str]] = {}
        self.restart_reason: str | None = None
        self.stages_seen: list[str] = []

    def stage(self, name: str, percent: float | None = None, line: str | None = None) -> None:
        self.stage_name = name
        if not self.stages_seen or self.stages_seen[-1] != name:
            self.stages_seen.append(name)
        if line:
            self.tails.setdefault(name, collections.deque(maxlen=TAIL_LINES)).append(line)
        if self.ctx is not None:
            self.ctx.progress(name, percent, line)
        if self.on_event is not None:
            self.on_event(name, percent, line)

    def line_fn(self, stage: str) -> LineFn:
        """A callback for tool output lines reported under ``stage``."""
        return lambda text: self.stage(stage, None, text.rstrip()[:2000])

    def tail(self, stage: str | None = None) -> list[str]:
        return list(self.tails.get(stage or self.stage_name, ()))

    def check_cancelled(self) -> None:
        if self.ctx is not None:
            self.ctx.check_cancelled()

    def require_restart(self, reason: str) -> None:
        self.restart_reason = reason
        if self.ctx is not None:
            self.ctx.require_restart(reason)


@dataclass(frozen=True)
class OpResult:
    """What a verb did; ``to_dict`` is the task result."""

    action: str
    pack: str                                   # entry name in custom_nodes/ (or .disabled/)
    path: str = ""
    source: str = ""                            # git | cnr | copy | unzip | local-dir | local-archive
    version: str = ""
    commit: str = ""
    previous: str = ""                          # version/commit before an update or switch
    changed: bool = True
    restart_required: bool = False
    deps: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["notes"] = list(self.notes)
        out["deps"] = dict(self.deps) if self.deps is not None else None
        out.update(self.extra)
        return out


@dataclass
class Ops:
    """What every verb needs: the Manager plus an optional dependency step (tests, CLI dry runs)."""

    manager: "Manager"
    deps_step: DepsStep | None = None
    script_timeout: float = DEFAULT_SCRIPT_TIMEOUT

    @property
    def layout(self) -> Any:
        return self.manager.layout

    def inventory(self) -> Inventory:
        return self.manager.inventory()

    def deps(self) -> DepsStep:
        """The dependency step: the injected one, else the real installer (policy read now)."""
        if self.deps_step is not None:
            return self.deps_step
        return real_deps_step(self.manager)


def real_deps_step(manager: "Manager") -> DepsStep:
    """``DependencyInstaller.install_pack_requirements`` under the current config, using the
    host's python unless ``python_executable`` is set."""
    from ..deps.installer import DependencyInstaller      # imported on use: keeps import light
    from ..deps.policy import deps_policy_from_config

    policy = deps_policy_from_config(manager.config, manager.layout)
    if not str(manager.config["python_executable"] or "").strip():
        policy = dataclasses.replace(policy, python=str(manager.host.python_executable))
    installer = DependencyInstaller(policy, manager.gate)

    def step(pack_dir: Path, pack_name: str, progress: LineFn) -> Mapping[str, Any]:
        others = [(p.name, Path(p.path)) for p in manager.inventory(with_catalog=False).enabled
                  if p.has_requirements and p.name != pack_name]
        return installer.install_pack_requirements(Path(pack_dir), pack_name, progress,
                                                   other_packs=others).to_dict()
    return step


# --- errors with context ---------------------------------------------------------------------
def with_step(exc: BaseException, step: str, pack: str, rep: Reporter) -> ManagerError:
    """Name the failed step and the tail of its output on ``exc`` (a coded error keeps its code)."""
    tail = rep.tail(step)
    if isinstance(exc, ManagerError):
        if "step" not in exc.details:
            exc.message = f"{pack}: {step} failed: {exc.message}"
            exc.args = (exc.message,)
        exc.details.setdefault("step", step)
        exc.details.setdefault("pack", pack)
        if tail:
            exc.details.setdefault("output_tail", tail)
        return exc
    return InstallStepFailed(f"{pack}: {step} failed: {type(exc).__name__}: {exc}",
                             hint="Check permissions and free space in custom_nodes/; the tree was left "
                                  "as it was.",
                             details={"step": step, "pack": pack, "output_tail": tail,
                                      "exception": type(exc).__name__})


class Step:
    """``with Step(rep, "deps", pack):`` reports the stage and converts failures to ``with_step``."""

    def __init__(self, rep: Reporter, name: str, pack: str, *, percent: float | None = None) -> None:
        self.rep, self.name, self.pack, self.percent = rep, name, pack, percent

    def __enter__(self) -> "Step":
        self.rep.check_cancelled()
        self.rep.stage(self.name, self.percent)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None and isinstance(exc, Exception) and not isinstance(exc, TaskCancelled):
            converted = with_step(exc, self.name, self.pack, self.rep)
            if converted is not exc:
                raise converted from exc


# --- policy ----------------------------------------------------------------------------------
def parse_policy(raw: Any) -> PolicyDecision | None:
    """A ``PolicyDecision`` from task params (dict) or as given; None when absent."""
    if raw is None or isinstance(raw, PolicyDecision):
        return raw
    if isinstance(raw, Mapping):
        names = {f.name for f in dataclasses.fields(PolicyDecision)}
        data = {k: v for k, v in raw.items() if k in names}
        if "allowed" in data and "operation" in data:
            return PolicyDecision(**{**data, "allowed": data["allowed"] is True})
    raise PolicyDenied("the security decision passed with the task is malformed",
                       hint="The API/CLI must pass {allowed, operation, risk, code, reason, hint}.",
                       details={"policy": str(raw)[:200]})


def check_policy(risk: str, what: str, decision: PolicyDecision | None) -> None:
    """Refuse a risky source unless ``decision`` allows it."""
    if not risk:
        return
    if decision is None:
        raise PolicyDenied(f"installing {what} ({risk.replace('_', ' ')}) needs an allowed security decision, "
                           "and none was given", details={"risk": risk, "source": what})
    if not decision.allowed:
        raise PolicyDenied(f"installing {what} was refused by the security policy: "
                           f"{decision.reason or decision.code or 'not allowed'}",
                           hint=decision.hint or PolicyDenied.default_hint,
                           details={"risk": risk, "source": what, "decision": decision.to_dict()})


# --- finding installed packs -------------------------------------------------------------------
def find_pack(inv: Inventory, key: str, *, enabled: bool | None = None, version: str | None = None
              ) -> InstalledPack:
    """The one installed entry ``key`` names (entry name, pack id, cnr id or catalog id).

    ``enabled`` restricts to enabled/disabled entries; ``version`` picks among several.
    Raises ``NotFound`` or ``PackAmbiguous``.
    """
    found = [p for p in inv.find(key) if enabled is None or p.enabled == enabled]
    exact = [p for p in found if p.name == key]
    if exact:
        found = exact
    if version:
        found = [p for p in found if version in (p.version, p.cnr_version, p.commit[:len(version)] if p.commit else "")
                 or (version == "nightly" and p.kind == "git")]
    if not found:
        where = {True: "enabled ", False: "disabled ", None: ""}[enabled]
        raise NotFound(f"no {where}pack {key!r}" + (f" at version {version}" if version else "") + " is installed",
                       hint="List installed packs (cm-cli.py show installed / the panel) and use the folder "
                            "name shown there.", details={"key": key, "version": version or ""})
    if len(found) > 1:
        raise PackAmbiguous(f"{key!r} matches {len(found)} installed entries: "
                            + ", ".join(p.name for p in found),
                            hint="Use the exact folder name, or pass `version` to pick one.",
                            details={"key": key, "candidates": [p.name for p in found]})
    return found[0]


# --- install.py -----------------------------------------------------------------------------
def script_env(manager: "Manager") -> dict[str, str]:
    """Environment for a pack's install.py: the tree's paths, and offline switches when offline."""
    env = dict(os.environ)
    layout = manager.layout
    env["COMFYUI_PATH"] = str(layout.comfyui_root)
    env["COMFYUI_FOLDERS_BASE_PATH"] = str(layout.comfyui_root)
    env["PYTHONUNBUFFERED"] = "1"
    if manager.gate.offline:
        # an install.py that shells out to pip/uv/huggingface must not reach the network
        env.update({"PIP_NO_INDEX": "1", "UV_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    return env


def run_install_script(python: str, folder: Path, emit: LineFn, *, timeout: float,
                       env: Mapping[str, str]) -> int:
    """Run ``python install.py`` in ``folder`` streaming output lines; raises
    ``InstallScriptFailed`` on a non-zero exit or after ``timeout`` seconds."""
    tail: Deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        proc = subprocess.Popen([python, "install.py"], cwd=folder, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(env),
                                **child_kwargs())
    except OSError as exc:
        raise InstallScriptFailed(f"could not start {python} for install.py: {exc}",
                                  hint="Check python_executable in config.ini (empty = ComfyUI's python).",
                                  details={"python": python}) from exc
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        kill_tree(proc)
    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                tail.append(line)
                emit(line)
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            kill()
            proc.wait()
    if timed_out.is_set():
        raise InstallScriptFailed(f"install.py ran longer than {timeout:.0f} s and was stopped",
                                  hint="The pack's install script hangs or waits for the network; check its "
                                       "output below, or install with a longer `script_timeout`.",
                                  details={"timeout": timeout, "output_tail": list(tail)})
    if rc != 0:
        raise InstallScriptFailed(f"install.py exited with status {rc}"
                                  + (f": {tail[-1]}" if tail else ""),
                                  hint="Read the script output in details.output_tail; fix what it needs "
                                       "(often a missing package in the wheelhouse) and retry.",
                                  details={"exit_code": rc, "output_tail": list(tail),
                                           "seconds": round(time.monotonic() - started, 2)})
    return rc


def run_pack_scripts(ops: Ops, folder: Path, pack: str, rep: Reporter, *, skip_deps: bool = False,
                     timeout: float | None = None, fix: bool = False) -> Mapping[str, Any] | None:
    """requirements.txt through the deps step, then install.py; returns the deps summary."""
    deps: Mapping[str, Any] | None = None
    if not skip_deps and (folder / "requirements.txt").is_file():
        with Step(rep, "deps", pack):
            deps = ops.deps()(folder, pack, rep.line_fn("deps"))
            deps = dict(deps) if deps is not None else {}
    if (folder / "install.py").is_file():
        with Step(rep, "install-script", pack):
            run_install_script(str(ops.manager.host.python_executable), folder, rep.line_fn("install-script"),
                               timeout=timeout or ops.script_timeout, env=script_env(ops.manager))
    return deps


def json_safe(items: Iterable[Any]) -> list[Any]:
    return [i.to_dict() if hasattr(i, "to_dict") else i for i in items]
