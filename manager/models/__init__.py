"""Models: the catalog's models mapped to ComfyUI folders, install (resumable, store first),
verify (cached sha256), the model store, and path safety. See docs/models.md.

``install_requested`` is what the ``install_model`` task runs (manager/kinds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import ManagerError, NotFound
from ..network import run_sync
from ..records import ModelEntry
from .catalog import (
    InstalledModel,
    ModelItem,
    ModelListing,
    catalog_models,
    find_model,
    installed_models,
    list_models,
    model_id,
)
from .folders import ModelFolders, Placement, apply_extra_paths, load_model_folders, place
from .install import InstallResult, ModelProgress, install_entry, install_model
from .paths import safe_filename, safe_save_path
from .store import ModelStore
from .verify import Expectation, HashCache, VerifyReport, verify_catalog, verify_expectations

__all__ = [
    "Expectation",
    "HashCache",
    "InstallResult",
    "InstalledModel",
    "ModelFolders",
    "ModelItem",
    "ModelListing",
    "ModelProgress",
    "ModelStore",
    "Placement",
    "VerifyReport",
    "apply_extra_paths",
    "catalog_models",
    "find_model",
    "install_entry",
    "install_model",
    "install_requested",
    "installed_models",
    "list_models",
    "load_model_folders",
    "model_id",
    "place",
    "resolve_entry",
    "safe_filename",
    "safe_save_path",
    "verify_catalog",
    "verify_expectations",
    "verify_models",
    "verify_request",
    "digest_sources",
]

_ENTRY_KEYS = ("name", "type", "base", "save_path", "filename", "url", "size", "description", "reference")


def _exact_size(value: Any) -> int | None:
    """A byte count from params; the classic payload's ``size`` ("6.46GB") is display text, ignored."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():  # a byte count passed through the params dataclass
        return int(value)
    return None


def _entry_from_params(params: Mapping[str, Any]) -> ModelEntry:
    fields = {k: str(params[k]) for k in _ENTRY_KEYS if isinstance(params.get(k), (str, int, float))}
    fields.setdefault("name", fields["filename"])
    fields.setdefault("type", "")
    fields["save_path"] = fields.get("save_path") or "default"
    return ModelEntry(**fields)


def resolve_entry(manager: Any, target: str, params: Mapping[str, Any]) -> tuple[ModelEntry, bool]:
    """The catalog entry for a request, and whether it is listed in the catalog.

    A classic request carries the whole entry (url, filename, save_path, ...): it is matched to
    the catalog by URL and file name. An entry the catalog does not list is used as given
    (the API's security check decides whether such a request may be queued at all).
    """
    has_entry = bool(params.get("url")) and bool(params.get("filename"))
    try:
        items = catalog_models(manager).items
    except ManagerError:
        if not has_entry:
            raise
        return _entry_from_params(params), False
    if has_entry:
        for item in items:
            if item.entry.url == params["url"] and item.entry.filename == params["filename"]:
                return item.entry, True
    try:
        return find_model(items, target).entry, True
    except NotFound:
        if not has_entry:
            raise
    return _entry_from_params(params), False


def verify_models(
    manager: Any, expectations: Any = None, *, cache: HashCache | None = None, with_sha256: bool = False
) -> VerifyReport:
    """Verify against ``expectations`` (snapshot entries: folder, name, size, sha256) when given,
    else the installed catalog models against the catalog's sizes."""
    folders = load_model_folders(manager.host)
    cache = cache or HashCache.for_manager(manager)
    if expectations is not None:
        return verify_expectations(folders, expectations, cache)
    models = manager.catalog_view().catalog.models
    report = verify_catalog(folders, models, cache, with_sha256=with_sha256)
    return dataclasses.replace(report, notes=report.notes + digest_sources(models))


DIGEST_SOURCES_NOTE = (
    "sha256 sources: the channel's model-list.json ({listed} of {total} entries give one); the registry and "
    "Hugging Face metadata: none in the cache (the Manager caches channel files and registry pack lists, "
    "which carry no model digests), so entries without a model-list sha256 are checked by size"
)


def digest_sources(models: Any) -> tuple[str, ...]:
    """Where the expected digests came from, said in the report (also when nothing holds one)."""
    listed = sum(1 for m in models if getattr(m, "sha256", ""))
    return (DIGEST_SOURCES_NOTE.format(listed=listed, total=len(models)),)


def verify_request(manager: Any, *, with_sha256: bool = False) -> dict[str, Any]:
    """The verify door (CLI ``models verify``, ``GET /v1/models/verify``): the installed catalog models
    checked, digests from the hash cache (computed now with ``with_sha256``)."""
    report = verify_models(manager, with_sha256=with_sha256)
    out = report.to_dict()
    out["with_sha256"] = with_sha256
    out["digests_not_checked"] = sum(
        1 for f in report.findings if f.expected_sha256 and not f.actual_sha256 and f.status != "sha_mismatch"
    )
    out["counts"] = {
        s: sum(1 for f in report.findings if f.status == s)
        for s in ("ok", "unchecked", "size_suspect", "sha_mismatch", "size_mismatch", "missing")
    }
    return out


def install_requested(manager: Any, ctx: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``install_model`` task: the planned entry (target: model id, name or URL; params: the
    catalog entry's fields, an exact ``size`` in bytes, ``sha256``, ``force``) downloaded into its folder."""
    ctx.progress("resolve", 0.0, f"looking up {ctx.target}")
    entry, listed = resolve_entry(manager, ctx.target, params)

    def report(p: ModelProgress) -> None:
        ctx.progress("download", p.percent, p.line)

    result = run_sync(
        install_model(
            manager,
            entry,
            sha256=params.get("sha256") or None,
            size=_exact_size(params.get("size")),
            force=bool(params.get("force")),
            progress=report,
            check_cancelled=ctx.check_cancelled,
        )
    )
    ctx.progress("done", 100.0, f"{result.relpath} in {result.folder} ({result.source})")
    return {**result.to_dict(), "listed": listed}
