"""Vetting a pack before it is placed: the known-compromise list, then what the staged files hold.

``vet_source`` runs before anything is fetched (pack id and repository URL against the list);
``vet_staged`` runs on the staged tree, before the pack's scripts run and before the rename into
``custom_nodes/``: it lists native libraries, pickles and executables (``inspect_files``),
matches file hashes against the list, and refuses by ``security_level`` (docs/decisions.md). An
archive's files were already inspected while they were extracted (``Fetched.inspection``): the
tree is walked only for clones and copies.
Either refusal leaves the tree as it was: the staging folder is removed by the caller.
"""

from __future__ import annotations

from typing import Any

from ..compromised import CompromiseList, check_files, check_source
from ..errors import ArchiveContentRefused
from ..inspect_files import decide_findings, inspect_tree
from .ops import Ops
from .reporting import Reporter, Step
from .sources import Fetched, Source

__all__ = ["vet_source", "vet_staged", "outside_catalog"]

_KIND_WORDS = {"native_library": "native library", "pickle": "pickled file", "executable": "executable"}


def outside_catalog(source: Source) -> bool:
    """A pack the catalog or the registry does not vouch for: a raw URL or path, or no id."""
    return bool(source.risk) or not source.pack_id


def vet_source(ops: Ops, source: Source, rep: Reporter) -> CompromiseList:
    """Refuse a listed pack id or repository before anything is fetched; returns the list."""
    label = source.pack_id or source.name
    rep.check_cancelled()
    # the cached lists only: update-cache / --cache-only fetch the channel's list with its data, so an
    # install never costs a request for a file most channels do not publish
    clist = ops.compromise_list()  # once per run
    check_source(clist, f"{label} ({source.kind})", ids=[source.pack_id], urls=[source.url, *source.urls])
    return clist


def vet_staged(
    ops: Ops, source: Source, fetched: Fetched, clist: CompromiseList, rep: Reporter
) -> list[dict[str, Any]]:
    """Inspect the staged pack; refuse by level or by a listed hash; return the findings."""
    label = source.pack_id or source.name
    with Step(rep, "inspect", label):
        report = fetched.inspection
        if report is None or (clist.has_hashes and len(report.hashes) != report.files):
            report = inspect_tree(fetched.root, hashes=clist.has_hashes, only=fetched.files)
        check_files(clist, f"{label} ({source.kind})", report.hashes)
        for f in report.findings[:20]:
            rep.stage("inspect", None, f"{f.kind}: {f.path} ({f.detail})")
        config = ops.manager.config
        level = str(config["security_level"])
        outside = outside_catalog(source)
        refused = decide_findings(report.findings, level, outside_catalog=outside)
        if refused:
            kinds = sorted({_KIND_WORDS[f.kind] for f in refused})
            shown = ", ".join(f.path for f in refused[:5]) + (
                f" and {len(refused) - 5} more" if len(refused) > 5 else ""
            )
            where = f" in {config.path}" if config.path else ""
            if level == "strong":
                why = "security_level is 'strong', which refuses them in every pack"
                fix = f"set security_level = normal{where} to install catalog and registry packs that ship them"
            else:
                why = "security_level is 'normal', which refuses them in packs from outside the catalog and registry"
                fix = (
                    f"install it from the catalog or the registry, or set security_level = normal-{where} "
                    "to install it with these files reported"
                )
            raise ArchiveContentRefused(
                f"{label} holds {', '.join(kinds)} ({shown}); {why}; nothing was installed",
                hint=f"Check the files with the pack's author; {fix}.",
                details={
                    "pack": label,
                    "security_level": level,
                    "outside_catalog": outside,
                    "setting": "security_level",
                    "findings": [f.to_dict() for f in refused[:50]],
                },
            )
    return report.to_list()
