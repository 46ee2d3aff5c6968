"""The operations engine: one module per verb, and the task runners the queue calls.

The task kinds that run these verbs are declared in ``manager/kinds`` (one table); their targets
and params (see docs/operations.md):

==============  ============================  ====================================================
kind            target                        params
==============  ============================  ====================================================
install         node spec (id, id@ver, URL,   version, name, ref, policy, skip_deps, script_timeout
                absolute path, file:// URL)
reinstall       installed pack key            spec, policy, skip_deps, script_timeout
uninstall       installed pack key            version, enabled
update          installed pack key            version (registry), skip_deps
update_all      anything (e.g. "all")         plan (a shown ``Plan.to_dict()``), skip_deps
fix             installed pack key            script_timeout
disable         enabled pack key              -
enable          disabled pack key             version
switch_version  enabled pack key              version (x.y.z | latest | nightly | tag), commit
restore_trash   trash entry id                -
empty_trash     anything (e.g. "trash")       older_than_days, entries
==============  ============================  ====================================================

Runners never take the operations lock: the queue holds it around each task.
"""

from __future__ import annotations

from .ops import DepsStep, Ops
from .policy import parse_policy
from .reporting import OpResult, Reporter

__all__ = ["Ops", "Reporter", "OpResult", "DepsStep", "parse_policy"]
