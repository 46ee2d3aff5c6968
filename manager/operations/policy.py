"""The security decision a task carries (made by the door before queueing), read back and
enforced by the verbs that install from a risky source."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import PolicyDenied
from ..records import PolicyDecision


def parse_policy(raw: Any) -> PolicyDecision | None:
    """A ``PolicyDecision`` from task params (dict) or as given; None when absent."""
    if raw is None or isinstance(raw, PolicyDecision):
        return raw
    if isinstance(raw, Mapping):
        names = {f.name for f in dataclasses.fields(PolicyDecision)}
        data = {k: v for k, v in raw.items() if k in names}
        if "allowed" in data and "operation" in data:
            return PolicyDecision(**{**data, "allowed": data["allowed"] is True})
    raise PolicyDenied(
        "the security decision passed with the task is malformed",
        hint="The API/CLI must pass {allowed, operation, risk, code, reason, hint}.",
        details={"policy": str(raw)[:200]},
    )


def check_policy(risk: str, what: str, decision: PolicyDecision | None) -> None:
    """Refuse a risky source unless ``decision`` allows it."""
    if not risk:
        return
    if decision is None:
        raise PolicyDenied(
            f"installing {what} ({risk.replace('_', ' ')}) needs an allowed security decision, and none was given",
            details={"risk": risk, "source": what},
        )
    if not decision.allowed:
        raise PolicyDenied(
            f"installing {what} was refused by the security policy: "
            f"{decision.reason or decision.code or 'not allowed'}",
            hint=decision.hint or PolicyDenied.default_hint,
            details={"risk": risk, "source": what, "decision": decision.to_dict()},
        )
