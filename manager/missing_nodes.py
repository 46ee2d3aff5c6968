"""The node types a workflow needs that nothing loaded provides: every candidate pack, a choice
that is never the first hit in silence, and the re-check after an install.

``analyse(workflow, catalog=..., inventory=...)`` answers a ``MissingReport``: one row per node
type of the workflow (``provided``, ``missing``, ``choose``, ``unknown``, or, for a type whose
pack is installed yet the type is still not there, ``import_failed``, ``restart_needed``,
``wrong_pack``), with ALL candidate packs of the catalog's extension-node-map (channel, stars,
last update, registry id and version when the catalog knows them). A pack is chosen for a type
only when that is unambiguous (one candidate, or an installed but disabled one), the user chose
it (``choices``), a preference entry names it (``preference``: ``node_pack_preference`` and
``--prefer``, pack ids or authors, first match wins), or it is already chosen for another type of
the same workflow; each chosen pack says why. Several candidates and none of these: the type is
``choose`` and nothing is picked for it.

What is "loaded": ``known_types`` are the node class names the running ComfyUI registered (the
page sends them; the CLI has none); ``loaded`` are the pack folder names ComfyUI loaded at its
start (None: unknown). The doors turn ``MissingReport.requests()`` into tasks through
``Manager.plan``/``submit`` (one batch), then call ``analyse`` again for the re-check.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import RequestInvalid
from .import_failures import ImportFailureReport
from .inventory import InstalledPack, Inventory
from .operations.workflow import node_types_of
from .records import _Record

__all__ = ["Candidate", "ChosenPack", "MissingReport", "TypeRow", "analyse", "preference_of", "row_json"]

STILL_MISSING = ("import_failed", "restart_needed", "wrong_pack")


@dataclass(frozen=True)
class Candidate(_Record):
    """One pack the catalog says provides a node type."""

    id: str
    title: str
    author: str = ""
    channel: str = ""
    stars: int | None = None
    last_update: str = ""
    cnr_id: str = ""
    latest_version: str = ""
    exact: bool = True  # listed by the node map (False: matched by the pack's nodename_pattern)
    installed: str = ""  # "" | "enabled" | "disabled"
    preferred: str = ""  # the preference entry that names it


@dataclass(frozen=True)
class TypeRow(_Record):
    """One node type of the workflow and what is known about it."""

    type: str
    state: str  # provided | missing | choose | unknown | import_failed | restart_needed | wrong_pack
    candidates: tuple[Candidate, ...] = ()
    chosen: str = ""  # the pack id chosen for it ("" when none)
    reason: str = ""  # why chosen, why a choice is needed, or why it is still missing
    pack: str = ""  # installed folder concerned (still-missing states)


@dataclass(frozen=True)
class ChosenPack(_Record):
    """One pack of the install batch and the missing node types it brings."""

    pack_id: str
    title: str
    action: str  # install | enable
    node_types: tuple[str, ...]
    reason: str
    installed_name: str = ""  # the disabled entry to enable


@dataclass(frozen=True)
class MissingReport(_Record):
    """The answer for one workflow; ``chosen`` is the batch, ``choose`` waits for the user."""

    node_types: tuple[str, ...]
    rows: tuple[TypeRow, ...]
    chosen: tuple[ChosenPack, ...]
    choose: tuple[str, ...]
    unknown: tuple[str, ...]
    still_missing: tuple[str, ...]
    preference: tuple[str, ...]
    known_types_given: bool = False

    def requests(self) -> list[tuple[str, str, dict[str, Any]]]:
        """The batch as ``(kind, target, params)`` for ``Manager.plan``."""
        return [
            ("enable", c.installed_name, {}) if c.action == "enable" else ("install", c.pack_id, {})
            for c in self.chosen
        ]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.state] = out.get(r.state, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (nested records too) with the count per state."""
        d: dict[str, Any] = _deep(self)
        d["counts"] = self.counts()
        return d


def _deep(value: Any) -> Any:
    if isinstance(value, _Record):
        return {k: _deep(v) for k, v in value.to_dict().items()}
    if isinstance(value, (list, tuple)):
        return [_deep(v) for v in value]
    if isinstance(value, dict):
        return {k: _deep(v) for k, v in value.items()}
    return value


def row_json(row: TypeRow) -> dict[str, Any]:
    """One row as plain JSON."""
    out: dict[str, Any] = _deep(row)
    return out


def preference_of(config: Any, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """``extra`` (``--prefer``, the request's ``prefer``) first, then ``node_pack_preference``."""
    configured = ()
    if config is not None:
        try:
            configured = tuple(config.get("node_pack_preference") or ())
        except KeyError:
            configured = ()
    seen: dict[str, None] = {}
    for item in (*extra, *configured):
        text = str(item).strip()
        if text:
            seen.setdefault(text)
    return tuple(seen)


def _preferred(pack: Any, preference: Sequence[str]) -> tuple[int, str] | None:
    keys = {str(pack.id).lower(), str(getattr(pack, "cnr_id", "") or "").lower()} - {""}
    author = str(getattr(pack, "author", "") or "").lower()
    for rank, entry in enumerate(preference):
        e = entry.lower()
        if e in keys or (author and e == author):
            return rank, entry
    return None


def _installed_by_id(inventory: Inventory) -> dict[str, list[InstalledPack]]:
    out: dict[str, list[InstalledPack]] = {}
    for p in inventory.packs:
        for key in {p.catalog_id, p.cnr_id, p.pack_id} - {""}:
            out.setdefault(key, []).append(p)
    return out


def analyse(
    workflow: Any,
    *,
    catalog: Any,
    inventory: Inventory,
    known_types: Collection[str] | None = None,
    loaded: Collection[str] | None = None,
    import_failures: ImportFailureReport | None = None,
    preference: Sequence[str] = (),
    choices: Mapping[str, str] | None = None,
) -> MissingReport:
    """Every node type of ``workflow``, its candidates and the batch that may be installed."""
    types = node_types_of(workflow)
    known = set(known_types) if known_types is not None else None
    loaded_set = set(loaded) if loaded is not None else None
    failures = import_failures or ImportFailureReport()
    by_id = _installed_by_id(inventory)
    choices = dict(choices or {})

    def install_state(pack_id: str) -> tuple[str, InstalledPack | None]:
        entries = by_id.get(pack_id, [])
        enabled = next((p for p in entries if p.enabled), None)
        if enabled is not None:
            return "enabled", enabled
        disabled = next(iter(entries), None)
        return ("disabled", disabled) if disabled is not None else ("", None)

    rows: dict[str, TypeRow] = {}
    open_types: dict[str, list[Any]] = {}  # type -> candidate packs not installed (or disabled)
    for t in types:
        if known is not None and t in known:
            rows[t] = TypeRow(t, "provided", reason="registered by the running ComfyUI")
            continue
        packs = catalog.packs_for_node_type(t)
        cands = []
        for p in packs:
            state, _entry = install_state(p.id)
            pref = _preferred(p, preference)
            cands.append(
                Candidate(
                    p.id,
                    p.title or p.id,
                    p.author,
                    p.channel,
                    p.stars,
                    p.last_update,
                    p.cnr_id,
                    p.latest_version,
                    exact=t in catalog.node_types(p.id),
                    installed=state,
                    preferred=pref[1] if pref else "",
                )
            )
        if not packs:
            rows[t] = TypeRow(
                t,
                "unknown",
                reason=(
                    "the running ComfyUI does not have it and no pack of the catalog provides it"
                    if known is not None
                    else "no pack of the catalog provides it (a ComfyUI core node, or a pack no channel lists)"
                ),
            )
            continue
        enabled = [(c, install_state(c.id)[1]) for c in cands if c.installed == "enabled"]
        if enabled:
            rows[t] = _installed_row(t, tuple(cands), enabled, known, loaded_set, failures)
            continue
        rows[t] = TypeRow(t, "missing", tuple(cands))
        open_types[t] = packs

    # decide: the user's choice, then a single candidate or a disabled one, then a preference
    picked: dict[str, tuple[str, str]] = {}  # type -> (pack id, reason)
    for t, packs in open_types.items():
        ids = [p.id for p in packs]
        want = choices.get(t)
        if want:
            if want not in ids:
                raise RequestInvalid(
                    f"{want!r} is not a pack that provides {t!r}",
                    details={"type": t, "pack": want, "candidates": ids},
                    hint="Choose one of the candidates listed for the type.",
                )
            picked[t] = (want, "chosen by the user")
            continue
        disabled = [i for i in ids if install_state(i)[0] == "disabled"]
        if len(ids) == 1:
            picked[t] = (ids[0], "the only pack that provides it")
        elif len(disabled) == 1:
            picked[t] = (disabled[0], "installed but disabled: enabling it")
        else:
            prefs = []
            for p in packs:
                hit = _preferred(p, preference)
                if hit is not None:
                    prefs.append((hit[0], hit[1], p.id))
            if prefs:
                _rank, pref_entry, pack_id = min(prefs)
                picked[t] = (pack_id, f"preferred ({pref_entry!r} in the preference list)")
    # a pack already chosen for another type also covers an ambiguous type it provides
    changed = True
    while changed:
        changed = False
        chosen_ids = {pid for pid, _ in picked.values()}
        for t, packs in open_types.items():
            if t in picked:
                continue
            hits = [p.id for p in packs if p.id in chosen_ids]
            if len(hits) == 1:
                other = next(o for o, (pid, _r) in picked.items() if pid == hits[0])
                picked[t] = (hits[0], f"already chosen for {other}")
                changed = True

    batch: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    for t in open_types:
        row = rows[t]
        if t in picked:
            pack_id, why = picked[t]
            rows[t] = TypeRow(t, "missing", row.candidates, pack_id, why)
            batch.setdefault(pack_id, []).append(t)
            reasons.setdefault(pack_id, why)
        else:
            n = len(row.candidates)
            rows[t] = TypeRow(
                t,
                "choose",
                row.candidates,
                reason=f"{n} packs provide it and none is preferred: choose one (or add one to node_pack_preference)",
            )
    chosen = []
    for pack_id, needed in batch.items():
        pack = catalog.get(pack_id)
        state, entry = install_state(pack_id)
        chosen.append(
            ChosenPack(
                pack_id,
                (getattr(pack, "title", "") or pack_id) if pack is not None else pack_id,
                "enable" if state == "disabled" else "install",
                tuple(needed),
                reasons[pack_id],
                entry.name if state == "disabled" and entry is not None else "",
            )
        )
    ordered = tuple(rows[t] for t in types)
    return MissingReport(
        types,
        ordered,
        tuple(chosen),
        tuple(r.type for r in ordered if r.state == "choose"),
        tuple(r.type for r in ordered if r.state == "unknown"),
        tuple(r.type for r in ordered if r.state in STILL_MISSING),
        tuple(preference),
        known is not None,
    )


def _installed_row(
    t: str,
    cands: tuple[Candidate, ...],
    enabled: list[tuple[Candidate, InstalledPack | None]],
    known: set[str] | None,
    loaded: set[str] | None,
    failures: ImportFailureReport,
) -> TypeRow:
    """A type an enabled installed pack should provide: provided, or why it is still missing."""
    for cand, entry in enabled:
        name = entry.name if entry is not None else cand.id
        failure = failures.find((name,))
        if failure is not None:
            return TypeRow(
                t,
                "import_failed",
                cands,
                reason=f"{name} failed to import at ComfyUI's last start: {failure.message}".strip(),
                pack=name,
            )
    for cand, entry in enabled:
        name = entry.name if entry is not None else cand.id
        if loaded is not None and name not in loaded:
            return TypeRow(
                t,
                "restart_needed",
                cands,
                reason=f"{name} is installed but ComfyUI has not loaded it yet: restart ComfyUI",
                pack=name,
            )
    exact = [(c, e) for c, e in enabled if c.exact]
    name = (enabled[0][1].name if enabled[0][1] is not None else enabled[0][0].id) if enabled else ""
    if known is None and exact:
        return TypeRow(t, "provided", cands, reason=f"{name} is installed and enabled")
    if known is None:
        return TypeRow(
            t,
            "wrong_pack",
            cands,
            reason=f"{name} is installed but the node map does not list {t} for it (only its name pattern matches)",
            pack=name,
        )
    if loaded is None:
        return TypeRow(
            t,
            "restart_needed",
            cands,
            reason=f"{name} is installed but the running ComfyUI has no {t}: restart ComfyUI to load it",
            pack=name,
        )
    return TypeRow(
        t,
        "wrong_pack",
        cands,
        reason=f"{name} was loaded at this start without an import failure, yet it does not register {t}: "
        "it is not the pack that provides this node (choose another candidate)",
        pack=name,
    )
