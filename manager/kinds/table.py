"""THE task-kind table: every kind of queued work, declared once.

A ``TaskKind`` names its parameters dataclass, the security operation and the classifier that
gives the request's risk, the runner the worker calls, the CLI command that reaches it and the
rows it adds to the policy table. The doors (HTTP classic, v1 and /v2, the CLI, the panel) only
translate their input into ``(kind, target, params)`` and call ``plan``/``submit``
(``planner.py``); the OpenAPI file and the CLI's help are generated from this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import security as sec
from ..errors import RequestInvalid
from . import params as kp
from . import runners
from .classify import Classified, classify_install, find_model, model_risk, spec_kind, url_params

if TYPE_CHECKING:
    from ..context import CatalogView, Manager
    from ..events import TaskSpec

# (manager, view or None, target, params) -> (what the policy sees, the params the worker gets)
Classifier = Callable[["Manager", "CatalogView | None", str, Any], "tuple[Classified, kp.KindParams]"]


@dataclass(frozen=True)
class TaskKind:
    name: str
    summary: str  # the doc line: OpenAPI, CLI help, docs/architecture.md
    target: str  # what the target names
    params: type[kp.KindParams]
    operation: str  # a manager.security operation
    classify: Classifier
    run: Callable[[Any], Mapping[str, Any]]
    cli: str  # the cm-cli.py command that queues it ("": an alias)
    policy_rows: tuple[tuple[str, str], ...]  # (row name, risk) cells of GET /v1/policy
    runs_as: str = ""  # queue kind when it shares another kind's runner
    needs_catalog: bool = False  # refused without a loaded channel catalog
    default_target: str = ""
    at_next_start: bool = False  # may be scheduled for ComfyUI's next start
    # the risk when it does not depend on the request: decided before the target is even parsed
    fixed_risk: str | None = None
    # (manager, spec) -> None or a coded refusal: facts that need disk or the cache, checked before
    # queueing (a worker thread runs it for the HTTP doors), so a refusal is an answer, not a failed task
    vet: Callable[[Manager, TaskSpec], None] | None = None
    # (manager, target, params, decision) -> what the task would change, changing nothing (dry run):
    # an answer holding the shared plan record (manager.plans) as "shared_plan"
    preview: Callable[..., Mapping[str, Any]] | None = None

    @property
    def queue_kind(self) -> str:
        return self.runs_as or self.name


def _preview(name: str) -> Callable[..., Mapping[str, Any]]:
    """``kinds.previews.<name>``, imported on the first dry run: the table is read when a host
    mounts our routes, and the previews pull in the plan and resolver modules."""

    def preview(*args: Any, **kwargs: Any) -> Mapping[str, Any]:
        from . import previews

        fn: Callable[..., Mapping[str, Any]] = getattr(previews, name)
        return fn(*args, **kwargs)

    preview.__name__ = f"preview_{name}"
    return preview


# --- classifiers --------------------------------------------------------------------------------------
def _plain(
    manager: Manager, view: CatalogView | None, target: str, params: kp.KindParams
) -> tuple[Classified, kp.KindParams]:
    return Classified(target), params


def _vet_install(manager: Manager, spec: TaskSpec) -> None:
    """A pack on the known-compromise list is refused at submit (the cached lists only: no request)."""
    from ..compromised import check_source, load

    target = spec.target
    pack_id = target.split("@", 1)[0] if spec_kind(target) == "id" else ""
    urls = [str(spec.params.get("url") or ""), *([] if pack_id else [target])]
    check_source(load(manager, refresh="never"), target, ids=[pack_id] if pack_id else [], urls=urls)


def _vet_bundle(manager: Manager, spec: TaskSpec) -> None:
    """A bundle path must name a plain readable file (no link, device or folder), checked at submit."""
    from ..bundles.source import bundle_source

    bundle_source(spec.target)


def _preview_bundle(manager: Manager, target: str, params: kp.BundleImportParams, decision: Any) -> Mapping[str, Any]:
    from ..bundles.source import bundle_source

    return runners.bundle_import_preview(manager, str(bundle_source(target)), params, decision)


def _switch(manager: Manager, view: CatalogView | None, target: str, params: Any) -> tuple[Classified, kp.KindParams]:
    if bool(params.version) == bool(params.commit):
        raise RequestInvalid(
            "switch_version needs exactly one of version and commit",
            details={"fields": ["version", "commit"]},
            hint="Give version (x.y.z, latest, nightly or a tag) or commit, not both.",
        )
    return Classified(target), params


def _pack_source(
    manager: Manager, view: CatalogView | None, target: str, params: Any
) -> tuple[Classified, kp.KindParams]:
    """install/reinstall: a URL or path becomes url (+ ref); the catalog decides its risk."""
    raw = params.url or target
    if raw and spec_kind(raw) != "id":
        extra = url_params(raw.strip())
        params = type(params).from_mapping({**params.to_dict(), **extra})
    return classify_install(view, target, params.to_dict()), params


def _git_url(manager: Manager, view: CatalogView | None, target: str, params: Any) -> tuple[Classified, kp.KindParams]:
    """The classic flag route: an install from a git URL decided as ``install_git_url``."""
    url = (params.url or target).strip()
    params = kp.InstallParams.from_mapping({**params.to_dict(), **url_params(url)})
    return Classified(classify_install(view, url, {"url": url}).target, sec.RISK_GIT_URL, url), params


def _model(manager: Manager, view: CatalogView | None, target: str, params: Any) -> tuple[Classified, kp.KindParams]:
    from ..models import model_id  # the models package is imported when a model is queued

    assert view is not None  # needs_catalog: the planner refused a missing catalog
    model = find_model(view, target, params.to_dict())
    chosen = kp.InstallModelParams.from_mapping(
        {"sha256": params.sha256, "force": params.force, **model.to_dict()}, lenient=True
    )  # the catalog's URL
    return Classified(model_id(model), model_risk(view, model)), chosen


def _pip(manager: Manager, view: CatalogView | None, target: str, params: Any) -> tuple[Classified, kp.KindParams]:
    packages = list(params.packages) or target.split()
    if not packages:
        raise RequestInvalid(
            "no package named",
            details={"field": "packages"},
            hint='Give the requirement specs, e.g. {"packages": ["name1", "name2>=1.0"]}.',
        )
    params = kp.InstallPipParams(packages=tuple(packages), index_url=params.index_url)
    return Classified(" ".join(packages)[:200], sec.pip_spec_risk(packages), params.index_url), params


def _snapshot(
    manager: Manager, view: CatalogView | None, target: str, params: kp.KindParams
) -> tuple[Classified, kp.KindParams]:
    from ..snapshots import SUBMIT_CHECK_BYTES, check_stored
    from ..snapshots.store import check_name  # a stored name only: never a path (invalid_name)

    name = check_name(target)
    if not getattr(params, "dry_run", False):
        # refused at submit time (not_found, snapshot_invalid naming every unsafe entry), not as a failed
        # task; it reads one stored file (a larger one is checked by the task before its first change)
        check_stored(manager, name, max_bytes=SUBMIT_CHECK_BYTES)
    return Classified(name), params


# --- the table ------------------------------------------------------------------------------------------
_PACK = "pack id, id@version, git URL or local path"
_INSTALLED = "installed pack (folder name or id)"

KINDS: tuple[TaskKind, ...] = (
    TaskKind(
        "install",
        "Install a node pack from the catalog, the registry, a git URL or a local path",
        _PACK,
        kp.InstallParams,
        sec.INSTALL,
        _pack_source,
        runners.install,
        "install",
        (
            ("install", sec.RISK_CATALOG),
            ("install_registry", sec.RISK_REGISTRY),
            ("install_git_url", sec.RISK_GIT_URL),
            ("install_local_path", sec.RISK_LOCAL_PATH),
        ),
        vet=_vet_install,
        preview=_preview("install"),
    ),
    TaskKind(
        "install_git_url",
        "Install from a git URL through the classic flag route (allow_git_url_install)",
        "git URL",
        kp.InstallParams,
        sec.INSTALL_GIT_URL,
        _git_url,
        runners.install,
        "",
        (("direct_git_url", sec.RISK_GIT_URL),),
        runs_as="install",
        fixed_risk=sec.RISK_GIT_URL,
        vet=_vet_install,
        preview=_preview("install"),
    ),
    TaskKind(
        "reinstall",
        "Fetch an installed pack again (the old copy goes to the trash)",
        _INSTALLED,
        kp.ReinstallParams,
        sec.REINSTALL,
        _pack_source,
        runners.reinstall,
        "reinstall",
        (("reinstall", sec.RISK_CATALOG),),
        vet=_vet_install,
        preview=_preview("reinstall"),
    ),
    TaskKind(
        "uninstall",
        "Move a pack to the trash",
        _INSTALLED,
        kp.UninstallParams,
        sec.UNINSTALL,
        _plain,
        runners.uninstall,
        "uninstall",
        (("uninstall", ""),),
        at_next_start=True,
        preview=_preview("uninstall"),
    ),
    TaskKind(
        "update",
        "Update a pack (git pull or the newest registry version)",
        _INSTALLED,
        kp.UpdateParams,
        sec.UPDATE,
        _plain,
        runners.update,
        "update",
        (("update", ""),),
        preview=_preview("update"),
    ),
    TaskKind(
        "update_all",
        "Update every pack that has an update (auto-snapshot first)",
        "'all'",
        kp.UpdateAllParams,
        sec.UPDATE_ALL,
        _plain,
        runners.update_all,
        "update all",
        (("update_all", ""),),
        default_target="all",
        preview=_preview("update_all"),
    ),
    TaskKind(
        "fix",
        "Reinstall a pack's requirements and run its install script again",
        _INSTALLED,
        kp.FixParams,
        sec.FIX,
        _plain,
        runners.fix,
        "fix",
        (("fix", ""),),
        preview=_preview("fix"),
    ),
    TaskKind(
        "disable",
        "Disable a pack (moved aside atomically; ComfyUI skips it)",
        _INSTALLED,
        kp.KindParams,
        sec.DISABLE,
        _plain,
        runners.disable,
        "disable",
        (("disable", ""),),
        at_next_start=True,
        preview=_preview("disable"),
    ),
    TaskKind(
        "enable",
        "Enable a disabled pack",
        "disabled pack (folder name or id)",
        kp.EnableParams,
        sec.ENABLE,
        _plain,
        runners.enable,
        "enable",
        (("enable", ""),),
        at_next_start=True,
        preview=_preview("enable"),
    ),
    TaskKind(
        "switch_version",
        "Move a pack to a registry version, nightly or a git commit",
        _INSTALLED,
        kp.SwitchVersionParams,
        sec.SWITCH_VERSION,
        _switch,
        runners.switch_version,
        "switch-version",
        (("switch_version", ""),),
        preview=_preview("switch_version"),
    ),
    TaskKind(
        "restore_trash",
        "Put a trashed pack back where it was",
        "trash entry id",
        kp.KindParams,
        sec.RESTORE_TRASH,
        _plain,
        runners.restore_trash,
        "trash restore",
        (("restore_trash", ""),),
    ),
    TaskKind(
        "empty_trash",
        "Delete trash entries for good",
        "'trash'",
        kp.EmptyTrashParams,
        sec.EMPTY_TRASH,
        _plain,
        runners.empty_trash,
        "trash empty",
        (("empty_trash", ""),),
        default_target="trash",
    ),
    TaskKind(
        "install_model",
        "Download a model of the channel's model list into its folder",
        "model id (save_path/filename), name, URL or file name",
        kp.InstallModelParams,
        sec.INSTALL_MODEL,
        _model,
        runners.install_model,
        "install-model",
        (("install_model", sec.RISK_MODEL_CATALOG), ("install_model_url", sec.RISK_MODEL_URL)),
        needs_catalog=True,
    ),
    TaskKind(
        "install_pip",
        "Install python packages into ComfyUI's environment (allow_pip_install)",
        "requirement specs",
        kp.InstallPipParams,
        sec.INSTALL_PIP,
        _pip,
        runners.install_pip,
        "install-pip",
        (("direct_pip", sec.RISK_PIP_PACKAGE), ("direct_pip_external", sec.RISK_PIP_EXTERNAL)),
    ),
    TaskKind(
        "snapshot_save",
        "Save a snapshot of the tree",
        "snapshot name, or '-' for <time>_snapshot",
        kp.SnapshotSaveParams,
        sec.SNAPSHOT_SAVE,
        _plain,
        runners.snapshot_save,
        "snapshot save",
        (("snapshot_save", ""),),
        default_target="-",
    ),
    TaskKind(
        "snapshot_restore",
        "Restore a saved snapshot (packs, commits, python packages)",
        "snapshot name",
        kp.SnapshotRestoreParams,
        sec.SNAPSHOT_RESTORE,
        _snapshot,
        runners.snapshot_restore,
        "snapshot restore",
        (("snapshot_restore", ""),),
        at_next_start=True,
        preview=_preview("snapshot_restore"),
    ),
    TaskKind(
        "undo",
        "Put back the python packages and the pack a finished task changed (offline: from the wheelhouse)",
        "task id (cm-cli.py undo --list)",
        kp.UndoParams,
        sec.UNDO,
        _plain,
        runners.undo,
        "undo",
        (("undo", ""),),
        preview=runners.undo_preview,
    ),
    TaskKind(
        "bundle_import",
        "Import an offline bundle into the local stores (verified first; atomic), optionally restoring its snapshot",
        "bundle file path (readable by the server)",
        kp.BundleImportParams,
        sec.BUNDLE_IMPORT,
        _plain,
        runners.bundle_import,
        "bundle import",
        (("bundle_import", ""),),
        vet=_vet_bundle,
        preview=_preview_bundle,
    ),
)

BY_NAME: Mapping[str, TaskKind] = {k.name: k for k in KINDS}
QUEUE_KINDS: tuple[str, ...] = tuple(dict.fromkeys(k.queue_kind for k in KINDS))


def kind_named(name: str) -> TaskKind:
    """The kind called ``name``; ``request_invalid`` naming the kinds there are."""
    kind = BY_NAME.get(name)
    if kind is None:
        raise RequestInvalid(
            f"unknown task kind {name!r}", hint="Use one of: " + ", ".join(BY_NAME), details={"kind": name}
        )
    return kind
