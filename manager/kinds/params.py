"""Parameters of task kinds: frozen dataclasses validated once, from JSON (a door) or argv (the CLI).

Each field's type is one of ``str``, ``bool``, ``float | None``, ``int | None``, ``tuple[str, ...]``
or ``Mapping | None``; ``field(metadata={"help": ...})`` documents it for the OpenAPI file and the
CLI's ``--help``. ``from_mapping`` refuses unknown keys and wrong types with ``request_invalid``
naming the key and the fix, so a typo never runs as a silent default.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from ..errors import RequestInvalid

P = TypeVar("P", bound="KindParams")

# keys a planned task's params carry besides the kind's own: the door's decision, the 4.x identity
RESERVED = ("policy", "v2")


def doc(text: str, default: Any, **extra: Any) -> Any:
    """A documented field: ``version: str = doc("registry version", "")``."""
    return field(default=default, metadata={"help": text, **extra})


@dataclass(frozen=True)
class KindParams:
    """Base of every kind's parameters (a kind without parameters uses it as is)."""

    # argv flags the CLI offers for this kind (field names); the rest are API-only
    CLI_FIELDS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field[Any], ...]:
        return dataclasses.fields(cls)

    @classmethod
    def from_mapping(cls: type[P], raw: Mapping[str, Any] | None, *, lenient: bool = False) -> P:
        """Validate ``raw`` (JSON params or parsed argv) into the dataclass.

        ``lenient`` (the worker re-reading a planned task) skips unknown keys instead of refusing
        them: the door already refused what the client sent."""
        raw = dict(raw or {})
        known = {f.name: f for f in cls.fields()}
        unknown = sorted(k for k in raw if k not in known and k not in RESERVED)
        if unknown and not lenient:
            raise RequestInvalid(
                f"unknown parameter(s) for this task: {', '.join(unknown)}",
                hint=("Parameters of this kind: " + ", ".join(known)) if known else "This kind takes no parameters.",
                details={"unknown": unknown, "allowed": list(known)},
            )
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for name in known:
            if name not in raw or raw[name] is None:
                continue
            values[name] = _coerce(name, raw[name], hints[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON params of a task spec (defaults left out, so task records stay short)."""
        out: dict[str, Any] = {}
        for f in self.fields():
            value = getattr(self, f.name)
            if value == f.default or value is None:
                continue
            out[f.name] = (
                list(value) if isinstance(value, tuple) else (dict(value) if isinstance(value, Mapping) else value)
            )
        return out

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """JSON schema of the params object (the OpenAPI file)."""
        hints = typing.get_type_hints(cls)
        props = {
            f.name: {**_json_type(hints[f.name]), "description": str(f.metadata.get("help", ""))} for f in cls.fields()
        }
        return {"type": "object", "properties": props, "additionalProperties": False}


def _json_type(hint: Any) -> dict[str, Any]:
    base = _strip_optional(hint)
    if base is bool:
        return {"type": "boolean"}
    if base in (float, int):
        return {"type": "number" if base is float else "integer"}
    if typing.get_origin(base) is tuple:
        return {"type": "array", "items": {"type": "string"}}
    if base is str:
        return {"type": "string"}
    return {"type": "object"}


def _strip_optional(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if type(None) in typing.get_args(hint) and len(args) == 1:
        return args[0]
    return hint


def _bad(name: str, want: str, value: Any) -> RequestInvalid:
    return RequestInvalid(
        f"parameter {name!r} must be {want}, not {value!r}",
        details={"field": name},
        hint=f"Give {name} as {want}, or leave it out.",
    )


def _coerce(name: str, value: Any, hint: Any) -> Any:
    base = _strip_optional(hint)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise _bad(name, "true or false", value)
    if base in (float, int):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _bad(name, "a number", value)
        try:
            number = float(value)
        except ValueError:
            raise _bad(name, "a number", value) from None
        if number != number or number < 0:
            raise _bad(name, "a number of zero or more", value)
        return int(number) if base is int else number
    if typing.get_origin(base) is tuple:
        items = value.split() if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise _bad(name, "a list of strings", value)
        return tuple(i.strip() for i in items if i.strip())
    if base is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # a version typed as a number in JSON
        if not isinstance(value, str):
            raise _bad(name, "a string", value)
        return value.strip()
    if not isinstance(value, Mapping):
        raise _bad(name, "an object", value)
    return dict(value)


# --- the kinds' parameters ------------------------------------------------------------------------
@dataclass(frozen=True)
class InstallParams(KindParams):
    CLI_FIELDS: ClassVar[tuple[str, ...]] = ("version", "skip_deps")
    version: str = doc("registry version, 'latest' or 'nightly'", "")
    ref: str = doc("git commit or tag to check out (URL installs)", "")
    url: str = doc("git URL or local path to install from (else the target)", "")
    name: str = doc("folder name under custom_nodes (default: from the source)", "")
    skip_deps: bool = doc("do not install requirements.txt or run install.py", False, flag="--no-deps")
    script_timeout: float | None = doc("seconds install.py may run", None)


@dataclass(frozen=True)
class ReinstallParams(KindParams):
    CLI_FIELDS: ClassVar[tuple[str, ...]] = ("version", "skip_deps")
    version: str = doc("registry version, 'latest' or 'nightly'", "")
    ref: str = doc("git commit or tag to check out (URL installs)", "")
    url: str = doc("git URL or local path to reinstall from", "")
    spec: str = doc("what to reinstall from (default: the installed pack's own source)", "")
    skip_deps: bool = doc("do not install requirements.txt or run install.py", False, flag="--no-deps")
    script_timeout: float | None = doc("seconds install.py may run", None)


@dataclass(frozen=True)
class UninstallParams(KindParams):
    version: str = doc("the installed version to remove when several copies exist", "")
    enabled: bool | None = doc("remove the enabled (true) or the disabled (false) copy", None)


@dataclass(frozen=True)
class UpdateParams(KindParams):
    CLI_FIELDS: ClassVar[tuple[str, ...]] = ("skip_deps",)
    version: str = doc("registry version to update to (default: the newest)", "")
    skip_deps: bool = doc("do not install requirements.txt", False, flag="--no-deps")


@dataclass(frozen=True)
class UpdateAllParams(KindParams):
    CLI_FIELDS: ClassVar[tuple[str, ...]] = ("skip_deps",)
    mode: str = doc("classic data mode of the request (cache, local, remote)", "")
    skip_deps: bool = doc("do not install requirements.txt", False, flag="--no-deps")
    auto_snapshot: bool = doc("save a snapshot first, so a restore undoes the update", True)
    plan: Mapping[str, Any] | None = doc("run exactly this shown plan (Plan.to_dict()) instead of planning again", None)


@dataclass(frozen=True)
class FixParams(KindParams):
    script_timeout: float | None = doc("seconds install.py may run", None)


@dataclass(frozen=True)
class EnableParams(KindParams):
    version: str = doc("which disabled copy to enable when several exist", "")


@dataclass(frozen=True)
class SwitchVersionParams(KindParams):
    CLI_FIELDS: ClassVar[tuple[str, ...]] = ("version", "commit")
    version: str = doc("registry version, 'latest', 'nightly' or a tag", "")
    commit: str = doc("git commit to check out", "")
    skip_deps: bool = doc("do not install requirements.txt", False, flag="--no-deps")


@dataclass(frozen=True)
class EmptyTrashParams(KindParams):
    CLI_FIELDS: ClassVar[tuple[str, ...]] = ("older_than_days",)
    older_than_days: float | None = doc("only entries older than this many days", None)
    entries: tuple[str, ...] = doc("only these trash entries", ())


@dataclass(frozen=True)
class InstallModelParams(KindParams):
    # lookup keys: which catalog model is meant (the catalog's URL is used, never the client's)
    url: str = doc("the model's URL as the model list gives it (lookup only)", "")
    filename: str = doc("the model's file name (lookup)", "")
    save_path: str = doc("the model list's save_path (lookup)", "")
    base: str = doc("the model list's base (lookup)", "")
    sha256: str = doc("expected sha256 of the file", "")
    force: bool = doc("download again over an existing file", False)
    # the catalog entry the planner resolved (the worker's input; a client's value is replaced)
    name: str = doc("model name (set from the catalog)", "")
    type: str = doc("model type (set from the catalog)", "")
    size: str = doc("size (set from the catalog)", "")
    description: str = doc("description (set from the catalog)", "")
    reference: str = doc("reference (set from the catalog)", "")
    channel: str = doc("channel (set from the catalog)", "")


@dataclass(frozen=True)
class InstallPipParams(KindParams):
    packages: tuple[str, ...] = doc("requirement specs, as pip takes them", ())
    index_url: str = doc("package index to install from", "")


@dataclass(frozen=True)
class SnapshotSaveParams(KindParams):
    name: str = doc("snapshot name (default <time>_snapshot)", "")
    reason: str = doc("why it was saved (shown in the list)", "")
    hash_models: bool = doc("also record each model file's sha256", False)
    overwrite: bool = doc("replace a snapshot of the same name", False)


@dataclass(frozen=True)
class SnapshotRestoreParams(KindParams):
    CLI_FIELDS: ClassVar[tuple[str, ...]] = ("pip_non_url", "pip_non_local_url", "pip_local_url", "no_deps", "only")
    pip_non_url: bool = doc("restore packages from an index (name==version)", False)
    pip_non_local_url: bool = doc("restore packages installed from remote URLs", False)
    pip_local_url: bool = doc("restore packages installed from file:// paths", False)
    no_deps: bool = doc("do not install the packs' requirements", False)
    only: str = doc("all, nodes or pips", "all", choices=("all", "nodes", "pips"))
    unlisted: str = doc(
        "packs the snapshot does not list: remove, disable or keep", "", choices=("", "remove", "disable", "keep")
    )
    remove_extra_pips: bool = doc("uninstall packages the snapshot does not list", False)
    auto_snapshot: bool = doc("save a snapshot first, so the restore can be undone", True)
    dry_run: bool = doc("only plan: change nothing", False)

    def __post_init__(self) -> None:
        for f in self.fields():
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise RequestInvalid(
                    f"restore option {f.name}={getattr(self, f.name)!r} is not one of "
                    f"{', '.join(c for c in choices if c)}",
                    details={"option": f.name},
                    hint="Restore options are described in docs/snapshots.md.",
                )


@dataclass(frozen=True)
class UndoParams(KindParams):
    CLI_FIELDS: ClassVar[tuple[str, ...]] = ("include_torch", "dry_run")
    include_torch: bool = doc("also put back torch, torchvision, torchaudio, xformers, triton, nvidia-*", False)
    dry_run: bool = doc("only resolve: show what would be put back, change nothing", False)


@dataclass(frozen=True)
class BundleImportParams(KindParams):
    CLI_FIELDS: ClassVar[tuple[str, ...]] = ("apply", "dry_run")
    apply: bool = doc(
        "then restore the bundled snapshot: packs from the git mirror and archive cache, packages from the wheelhouse",
        False,
    )
    dry_run: bool = doc("only verify and list what the import would add: change nothing", False)


__all__ = [
    "KindParams",
    "BundleImportParams",
    "InstallParams",
    "ReinstallParams",
    "UninstallParams",
    "UpdateParams",
    "UpdateAllParams",
    "FixParams",
    "EnableParams",
    "SwitchVersionParams",
    "EmptyTrashParams",
    "InstallModelParams",
    "InstallPipParams",
    "SnapshotSaveParams",
    "SnapshotRestoreParams",
    "UndoParams",
    "RESERVED",
    "doc",
]
