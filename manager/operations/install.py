"""Install and reinstall: resolve, stage, fetch, run install scripts, rename into place.

Stages, in order: ``resolve``, ``stage``, ``clone`` | ``download`` + ``extract`` (+ ``tracking``
for registry zips) | ``copy``, ``deps``, ``install-script``, ``rename``, ``done``. Everything
before ``rename`` happens inside ``custom_nodes/.cm-staging.disabled/<name>-<random>/``; the
rename is journalled (``staging.RenameTxn``), so any failure or kill leaves the tree as it was.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InstallUnsupported, ManagerError, PackExists
from ..inventory import InstalledPack, read_tracking
from ..records import PolicyDecision
from ..security import RISK_PIP_PACKAGE, pip_spec_risk
from .installed import find_pack
from .names import name_from_url
from .ops import Ops
from .pack_scripts import run_pack_scripts
from .policy import check_policy
from .remove import trash_into
from .reporting import OpResult, Reporter, Step
from .sources import NodeSpec, Source, fetch_into, registry_source, resolve
from .staging import RenameTxn, carry_over_user_files, new_staging_dir, remove_tree, tidy_staging
from .vetting import vet_source, vet_staged

__all__ = ["install", "reinstall", "stage_and_place", "source_of_installed"]

# Moves the copy being replaced out of the way inside the transaction; returns a note.
Displace = Callable[[RenameTxn], str]


def _targets(ops: Ops, source: Source) -> list[Path]:
    root = ops.layout.custom_nodes
    if source.kind == "copy" and source.urls:
        return [root / name_from_url(u) for u in source.urls]
    return [root / source.name]


def stage_and_place(
    ops: Ops,
    source: Source,
    rep: Reporter,
    *,
    action: str = "install",
    displace: Displace | None = None,
    carry_from: Path | None = None,
    skip_deps: bool = False,
    script_timeout: float | None = None,
    previous: str = "",
    catalog_pip: tuple[str, ...] = (),
    folders_checked: bool = False,
) -> OpResult:
    """Fetch ``source`` into staging, run its scripts, then rename it to ``custom_nodes/<name>``.

    ``displace`` moves the copy being replaced (to the trash or ``.disabled/``) in the same
    transaction; ``carry_from`` is an old registry copy whose user files are carried over.
    ``folders_checked``: the caller's ``prepare_tree`` checked the working folders just now, with
    nothing (no download) in between.
    """
    layout = ops.layout
    label = source.pack_id or source.name
    rep.stage("stage", None, f"staging {source.describe()}")
    notes: list[str] = []
    pip_done: dict[str, Any] | None = None
    if not folders_checked:
        layout.check_working_folders()  # staging, trash, .disabled/ real folders before the fetch writes
    clist = vet_source(ops, source, rep)  # known-compromise list: refused before any fetch
    staging_existed = layout.staging_dir.exists()
    work = new_staging_dir(layout, source.name)
    try:
        fetched = fetch_into(ops, source, work, rep, hashes=clist.has_hashes)
        findings = vet_staged(ops, source, fetched, clist, rep)  # before scripts run and the move
        if carry_from is not None and fetched.files == ():
            carried = carry_over_user_files(carry_from, fetched.root, read_tracking(carry_from))
            if carried:
                notes.append(f"kept {len(carried)} file(s) not shipped by the pack: " + ", ".join(carried[:10]))
        deps = run_pack_scripts(ops, fetched.root, source.name, rep, skip_deps=skip_deps, timeout=script_timeout)
        if catalog_pip and not skip_deps:
            pip_done = _install_catalog_pip(ops, work, source.name, catalog_pip, rep)
        rep.check_cancelled()
        with Step(rep, "rename", label):
            single = displace is None and not fetched.files  # one new pack: one atomic rename
            with RenameTxn(layout, label=f"{action} {source.name}", single=single) as txn:
                if displace is not None:
                    notes.append(displace(txn))
                if fetched.files:
                    for file_name in fetched.files:
                        txn.move(work / file_name, layout.custom_nodes / file_name)
                else:
                    txn.move(fetched.root, layout.custom_nodes / source.name)
    finally:
        remove_tree(work)
        if not staging_existed:
            tidy_staging(layout)
    rep.stage("done", 100.0)
    rep.require_restart(f"{source.name}: {action}")
    dest = layout.custom_nodes / (fetched.files[0] if fetched.files else source.name)
    return OpResult(
        action,
        dest.name,
        path=str(dest),
        source=source.kind,
        version=source.version,
        commit=fetched.commit,
        previous=previous,
        restart_required=True,
        deps=deps,
        notes=tuple(n for n in notes if n),
        extra={
            **({"files": list(fetched.files)} if fetched.files else {}),
            **({"catalog_pip": pip_done} if pip_done is not None else {}),
            "findings": findings,
        },
    )


def install(
    ops: Ops,
    spec: str | NodeSpec,
    rep: Reporter,
    *,
    version: str | None = None,
    name: str | None = None,
    ref: str | None = None,
    policy: PolicyDecision | None = None,
    skip_deps: bool = False,
    script_timeout: float | None = None,
) -> OpResult:
    """Install a pack from a spec (see ``sources``). Raw git URLs and local paths need an allowed
    ``policy``; an existing ``custom_nodes/<name>`` is never replaced (``pack_exists``)."""
    label = spec.raw if isinstance(spec, NodeSpec) else str(spec)
    parked = _disabled_copy(ops, label, version=version, name=name, ref=ref)
    if parked is not None:
        # already installed but disabled: enabling it is the install (never a second copy)
        from .toggle import enable

        result = enable(ops, parked.name, rep, version=parked.version or None)
        note = (
            f"{label} was already installed but disabled ({parked.name}): it was enabled instead of "
            "installing a second copy"
        )
        return dataclasses.replace(
            result, notes=(note, *result.notes), extra={**result.extra, "enabled_instead": parked.name}
        )
    with Step(rep, "resolve", label):
        source = resolve(ops, spec, version=version, name=name, ref=ref)
        check_policy(source.risk, source.describe(), policy)
        ops.prepare_tree()  # after validation: refused input touches nothing
        taken = [p for p in _targets(ops, source) if os.path.lexists(p)]
        if taken:
            raise PackExists(
                f"{taken[0].name} is already installed at {taken[0]}",
                details={"pack": taken[0].name, "path": str(taken[0]), "source": source.to_dict()},
            )
    listed_pip = _catalog_pip(ops, source)
    plain = tuple(p for p in listed_pip if pip_spec_risk([p]) == RISK_PIP_PACKAGE)
    external = tuple(p for p in listed_pip if p not in plain)
    result = stage_and_place(
        ops, source, rep, skip_deps=skip_deps, script_timeout=script_timeout, catalog_pip=plain, folders_checked=True
    )
    refused: list[tuple[tuple[str, ...], str]] = []
    if external:
        refused.append(
            (
                external,
                "a catalog 'pip' entry that is a URL, VCS spec, local path or pip option is not installed with the "
                "pack (it is what allow_pip_install guards); install it yourself if you trust it: "
                f"cm-cli.py install-pip {' '.join(external)}",
            )
        )
    if plain and skip_deps:
        refused.append(
            (plain, "skip_deps was given: the catalog entry's 'pip' list was left out with the requirements")
        )
    if not refused:
        return result
    notes = tuple(f"not installed: pip package(s) {', '.join(specs)}: {why}" for specs, why in refused)
    return dataclasses.replace(
        result,
        notes=(*result.notes, *notes),
        extra={
            **result.extra,
            "pip_not_installed": [{"packages": list(specs), "why": why} for specs, why in refused],
        },
    )


def _install_catalog_pip(ops: Ops, work: Path, name: str, specs: tuple[str, ...], rep: Reporter) -> dict[str, Any]:
    """The catalog entry's plain ``pip`` specs, through the same dependency step (same policy:
    blacklist, overrides, uv/pip, offline wheelhouse) as the pack's requirements.txt, in staging."""
    folder = work / ".catalog-pip"
    folder.mkdir()
    (folder / "requirements.txt").write_text("\n".join(specs) + "\n", encoding="utf-8")
    with Step(rep, "deps", f"{name}: catalog pip list"):
        out = ops.deps()(folder, name, rep.line_fn("deps"))
    return {"packages": list(specs), "result": dict(out) if out else {}}


def _disabled_copy(
    ops: Ops, label: str, *, version: str | None, name: str | None, ref: str | None
) -> InstalledPack | None:
    """The disabled copy an install of ``label`` (a bare id, or ``id@version``) means, when the pack
    is installed only disabled and that copy is the version asked for; else None (install as usual)."""
    key, _, at = label.partition("@")
    wanted = (version or at or "").strip()
    if name or ref or not key or any(c in key for c in "/\\:") or wanted in ("nightly", "unknown"):
        return None
    try:
        copies = ops.inventory().find(key)
    except ManagerError:
        return None
    if not copies or any(p.enabled for p in copies):
        return None
    if wanted and wanted != "latest":
        token = wanted.lstrip("v").replace("_", ".")
        copies = tuple(p for p in copies if p.version and p.version.replace("_", ".") == token)
    return copies[0] if len(copies) == 1 else None


def _catalog_pip(ops: Ops, source: Source) -> tuple[str, ...]:
    """The ``pip`` list of the catalog entry ``source`` came from (empty for other sources)."""
    if not source.pack_id or source.kind not in ("git", "copy", "unzip"):
        return ()
    # only a catalog ``resolve`` already loaded: this note never fetches channel data
    view = getattr(getattr(ops, "manager", None), "_catalog_view", None)
    pack = view.catalog.get(source.pack_id) if view is not None else None
    return tuple(p for p in pack.pip if p.strip()) if pack is not None else ()


def source_of_installed(ops: Ops, pack: InstalledPack) -> Source:
    """Where an installed pack came from, to fetch the same again (git remote + branch/commit,
    or registry id + version)."""
    if pack.kind == "git":
        if not pack.remote_url:
            raise InstallUnsupported(
                f"{pack.name} is a git checkout without a remote; it cannot be fetched again",
                hint="Install it again from a URL or path with the install command.",
            )
        return Source(
            "git",
            pack.name,
            pack.cnr_id or pack.catalog_id,
            "nightly",
            url=pack.remote_url,
            ref=pack.branch or pack.commit,
        )
    if pack.kind == "cnr" and pack.cnr_id and pack.version:
        return registry_source(ops, pack.cnr_id, pack.version, pack.name)
    raise InstallUnsupported(
        f"{pack.name} ({pack.kind}) has no known source to fetch it again",
        hint="Reinstall it by giving a spec (catalog id, URL or path) with the `spec` parameter.",
        details={"pack": pack.name, "kind": pack.kind},
    )


def reinstall(
    ops: Ops,
    key: str,
    rep: Reporter,
    *,
    spec: str | None = None,
    policy: PolicyDecision | None = None,
    skip_deps: bool = False,
    script_timeout: float | None = None,
) -> OpResult:
    """Fetch an installed pack again; the old copy goes to the trash in the same transaction."""
    with Step(rep, "resolve", key):
        ops.prepare_tree()
        pack = find_pack(ops.inventory(), key, enabled=True)
        if spec:
            source = resolve(ops, spec, name=pack.name)
            check_policy(source.risk, source.describe(), policy)
        else:
            source = source_of_installed(ops, pack)
        old = Path(pack.path)

    def to_trash(txn: RenameTxn) -> str:
        entry = trash_into(txn, old, reason="reinstall", pack=pack)
        return f"previous copy kept in the trash as {entry.name}"

    return stage_and_place(
        ops,
        source,
        rep,
        action="reinstall",
        displace=to_trash,
        skip_deps=skip_deps,
        script_timeout=script_timeout,
        previous=pack.version or pack.commit,
    )
