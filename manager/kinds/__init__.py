"""Task kinds: the one table of queued work (``table``), its parameters (``params``), risk
classifiers (``classify``), runners (``runners``) and the plan/submit steps every door uses
(``planner``). See docs/architecture.md, "The task table"."""

from __future__ import annotations

from .planner import PlannedTask, plan, preview, queue_runners, submit
from .table import BY_NAME, KINDS, QUEUE_KINDS, TaskKind, kind_named

__all__ = [
    "BY_NAME",
    "KINDS",
    "QUEUE_KINDS",
    "PlannedTask",
    "TaskKind",
    "kind_named",
    "plan",
    "preview",
    "queue_runners",
    "submit",
]
