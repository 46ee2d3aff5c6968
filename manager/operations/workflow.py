"""Missing node packs of a workflow: node types nobody installed provides, mapped to packs.

Reads ComfyUI's UI format (``nodes[].type``, plus the nodes of ``definitions.subgraphs`` and
``extra.groupNodes``) and the API format (``{id: {"class_type": ...}}``). Core node names are
not known to the Manager: the caller passes them as ``known_types`` (ComfyUI's
``NODE_CLASS_MAPPINGS`` keys when running inside ComfyUI).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import WorkflowInvalid
from ..inventory import Inventory
from ..records import _Record

__all__ = ["WorkflowPlan", "WorkflowStep", "node_types_of", "missing_packs"]


@dataclass(frozen=True)
class WorkflowStep(_Record):
    """One pack to install (or enable) and the missing node types it provides."""

    pack_id: str
    title: str
    action: str  # install | enable
    node_types: tuple[str, ...]
    alternatives: tuple[str, ...] = ()  # other packs that also provide these types
    installed_name: str = ""  # the disabled entry to enable


@dataclass(frozen=True)
class WorkflowPlan(_Record):
    """What the workflow needs that is not installed; ``steps`` is the install plan."""

    node_types: tuple[str, ...]  # every distinct type used
    provided: tuple[str, ...]  # by core (known_types) or installed packs
    steps: tuple[WorkflowStep, ...]
    unresolved: tuple[str, ...]  # no pack in the catalog provides these

    def to_plan(self, target: str = "workflow") -> Any:
        """The shared plan record (``manager.plans.Plan``): packs added or enabled."""
        from ..plans import PackChange, Plan

        return Plan(
            "workflow",
            target,
            packs=tuple(
                PackChange(
                    "added" if s.action == "install" else "enabled",
                    s.installed_name or s.pack_id,
                    note="provides " + ", ".join(s.node_types),
                )
                for s in self.steps
            ),
            notes=tuple(f"no pack provides {t}" for t in self.unresolved),
        )


def _ui_nodes(doc: Mapping[str, Any]) -> Iterable[str]:
    subgraph_ids: set[str] = set()
    graphs: list[Any] = [doc.get("nodes")]
    defs = doc.get("definitions")
    if isinstance(defs, Mapping):
        for sub in defs.get("subgraphs") or ():
            if isinstance(sub, Mapping):
                if isinstance(sub.get("id"), str):
                    subgraph_ids.add(sub["id"])
                graphs.append(sub.get("nodes"))
    extra = doc.get("extra")
    group_names: set[str] = set()
    if isinstance(extra, Mapping) and isinstance(extra.get("groupNodes"), Mapping):
        for gname, group in extra["groupNodes"].items():
            group_names.add(f"workflow>{gname}")
            group_names.add(f"workflow/{gname}")
            if isinstance(group, Mapping):
                graphs.append(group.get("nodes"))
    for nodes in graphs:
        if not isinstance(nodes, list):
            continue
        for node in nodes:
            if isinstance(node, Mapping):
                t = node.get("type")
                if isinstance(t, str) and t and t not in subgraph_ids and t not in group_names:
                    yield t


def node_types_of(workflow: Any) -> tuple[str, ...]:
    """Distinct node types a workflow uses (UI or API format; bytes/str are parsed as JSON)."""
    doc = workflow
    if isinstance(workflow, (bytes, str)):
        try:
            doc = json.loads(workflow)
        except ValueError as exc:
            raise WorkflowInvalid(
                f"the workflow is not JSON: {exc}", hint="Export the workflow again from ComfyUI (Save or Export API)."
            ) from None
    if not isinstance(doc, Mapping):
        raise WorkflowInvalid(
            "the workflow is not a JSON object", hint="Export the workflow again from ComfyUI (Save or Export API)."
        )
    if isinstance(doc.get("nodes"), list):
        found = list(_ui_nodes(doc))
    else:
        entries = [v for v in doc.values() if isinstance(v, Mapping) and "class_type" in v]
        if not entries and doc:
            raise WorkflowInvalid(
                "the workflow has neither nodes[] (UI format) nor {id: {class_type}} entries (API format)",
                hint="Export the workflow again from ComfyUI (Save or Export API).",
            )
        found = [str(v["class_type"]) for v in entries if isinstance(v.get("class_type"), str) and v["class_type"]]
    return tuple(dict.fromkeys(found))


def missing_packs(
    workflow: Any, *, catalog: Any, inventory: Inventory, known_types: Collection[str] = ()
) -> WorkflowPlan:
    """The install plan for the node types of ``workflow`` that nothing enabled provides.

    Installed packs count through their catalog match (``catalog.node_types``). A type a
    disabled pack provides becomes an ``enable`` step. Several candidate packs: the first
    (channel order) is chosen and the rest are listed as ``alternatives``.
    """
    types = node_types_of(workflow)
    enabled_provides: set[str] = set(known_types)
    disabled_by_pack: dict[str, str] = {}
    for pack in inventory.packs:
        if not pack.catalog_id:
            continue
        if pack.enabled:
            enabled_provides.update(catalog.node_types(pack.catalog_id))
        else:
            disabled_by_pack.setdefault(pack.catalog_id, pack.name)
    missing = [t for t in types if t not in enabled_provides]
    chosen: dict[str, list[str]] = {}
    alternatives: dict[str, set[str]] = {}
    unresolved: list[str] = []
    for t in missing:
        candidates = catalog.packs_for_node_type(t)
        if not candidates:
            unresolved.append(t)
            continue
        ids = [c.id for c in candidates]
        pick = next((i for i in ids if i in chosen or i in disabled_by_pack), ids[0])
        chosen.setdefault(pick, []).append(t)
        alternatives.setdefault(pick, set()).update(i for i in ids if i != pick)
    steps = []
    for pack_id, needed in chosen.items():
        pack = catalog.get(pack_id)
        parked = disabled_by_pack.get(pack_id, "")
        steps.append(
            WorkflowStep(
                pack_id=pack_id,
                title=getattr(pack, "title", pack_id) or pack_id,
                action="enable" if parked else "install",
                node_types=tuple(needed),
                alternatives=tuple(sorted(alternatives.get(pack_id, set()) - set(chosen))),
                installed_name=parked,
            )
        )
    provided = tuple(t for t in types if t in enabled_provides)
    return WorkflowPlan(types, provided, tuple(steps), tuple(unresolved))
