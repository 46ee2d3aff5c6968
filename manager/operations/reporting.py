"""What a verb reports: progress by stage (``Reporter``), failures that name their step
(``Step``), and the result it returns (``OpResult``)."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InstallStepFailed, ManagerError
from ..tasks import TaskCancelled

if TYPE_CHECKING:  # pragma: no cover
    from ..tasks import TaskContext

LineFn = Callable[[str], None]
TAIL_LINES = 20

# Stable stage names (docs/operations.md); clients key their display on them.
STAGES = (
    "resolve",
    "stage",
    "clone",
    "download",
    "extract",
    "inspect",
    "copy",
    "tracking",
    "deps",
    "install-script",
    "rename",
    "move",
    "checkout",
    "fetch",
    "plan",
    "step",
    "delete",
    "done",
)


class Reporter:
    """Progress for a verb: forwards to the task context (if any) and keeps each stage's tail."""

    def __init__(
        self, ctx: TaskContext | None = None, *, on_event: Callable[[str, float | None, str | None], None] | None = None
    ) -> None:
        self.ctx = ctx
        self.on_event = on_event
        self.stage_name = ""
        self.tails: dict[str, collections.deque[str]] = {}
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
    return InstallStepFailed(
        f"{pack}: {step} failed: {type(exc).__name__}: {exc}",
        hint="Check permissions and free space in custom_nodes/; the tree was left as it was.",
        details={"step": step, "pack": pack, "output_tail": tail, "exception": type(exc).__name__},
    )


class Step:
    """``with Step(rep, "deps", pack):`` reports the stage and converts failures to ``with_step``."""

    def __init__(self, rep: Reporter, name: str, pack: str, *, percent: float | None = None) -> None:
        self.rep, self.name, self.pack, self.percent = rep, name, pack, percent

    def __enter__(self) -> Step:
        self.rep.check_cancelled()
        self.rep.stage(self.name, self.percent)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None and isinstance(exc, Exception) and not isinstance(exc, TaskCancelled):
            converted = with_step(exc, self.name, self.pack, self.rep)
            if converted is not exc:
                raise converted from exc


@dataclass(frozen=True)
class OpResult:
    """What a verb did; ``to_dict`` is the task result."""

    action: str
    pack: str  # entry name in custom_nodes/ (or .disabled/)
    path: str = ""
    source: str = ""  # git | cnr | copy | unzip | local-dir | local-archive
    version: str = ""
    commit: str = ""
    previous: str = ""  # version/commit before an update or switch
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
