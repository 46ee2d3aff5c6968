"""Which folder a model goes to: ComfyUI's model folders, extra_model_paths.yaml, type mapping.

Inside ComfyUI the host already reports ``folder_paths.folder_names_and_paths`` (yaml and
command-line paths applied). Standalone, ``<ComfyUI>/extra_model_paths.yaml`` is read here
with ComfyUI's rules (see ``apply_extra_paths``), so both doors place a model in the same spot.

Placement rules (``place``):
* ``save_path: default`` -> the model ``type`` names a folder (``checkpoint`` -> checkpoints,
  ``upscale`` -> upscale_models, ...); the file goes into that folder's first directory,
  exactly where ComfyUI's own downloads go. An unknown type is ``model_folder_unknown``.
* any other ``save_path`` -> its first part names the folder (legacy ``clip``/``unet`` mapped).
  The path lands under ``<models>/<save_path>`` unless the folder's first directory was moved
  out of the models tree (``is_default`` in extra_model_paths.yaml): then it lands there.
  A first part ComfyUI does not know (``ipadapter``, ``sams``) is a custom-node folder under
  the models tree (or wherever the host registered that name).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ..errors import ModelFolderUnknown
from ..host import Host, StandaloneHost
from ..layout import MODEL_FOLDERS
from ..records import ModelEntry, Notice
from .paths import join_inside, rel_posix, safe_filename, safe_save_path

log = logging.getLogger("offline_manager.models")

EXTRA_PATHS_FILE = "extra_model_paths.yaml"
# ComfyUI maps these old folder names onto the new ones in every folder_paths accessor.
LEGACY_FOLDERS: Mapping[str, str] = MappingProxyType({"unet": "diffusion_models", "clip": "text_encoders"})
# folder_paths sets this name to redirect every manager download under another base folder.
DOWNLOAD_BASE = "download_model_base"
# Model ``type`` (lower case) -> ComfyUI folder, for entries whose save_path is "default".
TYPE_FOLDERS: Mapping[str, str] = MappingProxyType(
    {
        "checkpoint": "checkpoints",
        "checkpoints": "checkpoints",
        "unclip": "checkpoints",
        "clip": "text_encoders",
        "text_encoder": "text_encoders",
        "text_encoders": "text_encoders",
        "vae": "vae",
        "lora": "loras",
        "loras": "loras",
        "controlnet": "controlnet",
        "t2i-adapter": "controlnet",
        "t2i-style": "controlnet",
        "clip_vision": "clip_vision",
        "gligen": "gligen",
        "upscale": "upscale_models",
        "upscale_models": "upscale_models",
        "latent_upscale": "latent_upscale_models",
        "embedding": "embeddings",
        "embeddings": "embeddings",
        "unet": "diffusion_models",
        "diffusion_model": "diffusion_models",
        "diffusion_models": "diffusion_models",
        "style_model": "style_models",
        "style_models": "style_models",
        "hypernetwork": "hypernetworks",
        "hypernetworks": "hypernetworks",
        "photomaker": "photomaker",
        "taesd": "vae_approx",
        "vae_approx": "vae_approx",
        "model_patch": "model_patches",
        "model_patches": "model_patches",
        "audio_encoder": "audio_encoders",
        "audio_encoders": "audio_encoders",
        "diffusers": "diffusers",
        "classifier": "classifiers",
        "classifiers": "classifiers",
    }
)
# ComfyUI's built-in folder names (folder_paths.py); other names belong to node packs.
COMFY_FOLDERS = frozenset(MODEL_FOLDERS)
# main.py adds these output sub-folders as extra (non-default) search paths.
_OUTPUT_FOLDERS = ("checkpoints", "clip", "vae", "diffusion_models", "loras")


def canonical_folder(name: str) -> str:
    """The folder name ComfyUI would use for ``name`` (legacy aliases mapped)."""
    return LEGACY_FOLDERS.get(name, name)


def add_folder_path(table: dict[str, list[Path]], name: str, path: Path, is_default: bool = False) -> None:
    """``folder_paths.add_model_folder_path`` semantics: append, or put first when ``is_default``
    (moving an existing entry to the front); a new name gets its own list."""
    name = canonical_folder(name)
    paths = table.setdefault(name, [])
    if path in paths:
        if is_default and paths[0] != path:
            paths.remove(path)
            paths.insert(0, path)
        return
    if is_default:
        paths.insert(0, path)
    else:
        paths.append(path)


def _expand(text: str) -> str:
    return os.path.expandvars(os.path.expanduser(text))


def apply_extra_paths(table: dict[str, list[Path]], yaml_path: Path) -> list[Notice]:
    """Add the folders of one extra_model_paths.yaml to ``table`` the way ComfyUI does.

    Top-level keys are free section names; each section may set ``base_path`` (``~``/``$VAR``
    expanded, relative to the yaml's folder) and ``is_default``; every other key is a folder
    name whose value holds one path per line, joined to ``base_path`` or else to the yaml's
    folder. Problems (unreadable file, a value that is not text) are returned as notices and
    the rest of the file still applies; ComfyUI itself would stop at them.
    """
    notices: list[Notice] = []

    def note(message: str) -> None:
        notices.append(
            Notice(
                "warning",
                "extra_model_paths_invalid",
                message,
                hint=f"Fix {yaml_path} (ComfyUI reads the same file at start).",
                details={"file": str(yaml_path)},
            )
        )

    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        note(f"{yaml_path.name} could not be read: {exc}")
        return notices
    if data is None:
        return notices
    if not isinstance(data, dict):
        note(f"{yaml_path.name} is not a mapping of sections")
        return notices
    yaml_dir = yaml_path.resolve().parent
    for section, conf in data.items():
        if conf is None:
            continue
        if not isinstance(conf, dict):
            note(f"section {section!r} is not a mapping; skipped")
            continue
        conf = dict(conf)
        base: str | None = None
        if "base_path" in conf:
            raw_base = conf.pop("base_path")
            if not isinstance(raw_base, str):
                note(f"section {section!r}: base_path is not text; section skipped")
                continue
            base = _expand(raw_base)
            if not os.path.isabs(base):
                base = os.path.abspath(os.path.join(yaml_dir, base))
        is_default = bool(conf.pop("is_default", False))
        for folder, value in conf.items():
            if not isinstance(value, str):
                note(f"section {section!r}: {folder!r} is not a path (got {type(value).__name__}); skipped")
                continue
            for line in value.split("\n"):
                line = line.strip()
                if not line:
                    continue
                full = os.path.join(base, line) if base else line
                if not os.path.isabs(full):
                    full = os.path.abspath(os.path.join(yaml_dir, full))
                add_folder_path(table, str(folder), Path(os.path.normpath(full)), is_default)
    return notices


@dataclass(frozen=True)
class ModelFolders:
    """Model folder names -> directories (first = where downloads go), plus the models base.

    ``models_base`` is where a ``save_path`` lands (``download_model_base`` when the host sets
    it, else ``models_dir``); ``models_dir`` is ComfyUI's own models folder.
    """

    models_base: Path
    models_dir: Path
    folders: Mapping[str, tuple[Path, ...]]
    notices: tuple[Notice, ...] = ()
    yaml_files: tuple[Path, ...] = ()

    def dirs(self, name: str) -> tuple[Path, ...]:
        return self.folders.get(canonical_folder(name), ())

    def known(self, name: str) -> bool:
        return canonical_folder(name) in self.folders

    def roots(self) -> tuple[Path, ...]:
        """Every directory that belongs to the models tree (the base and each folder's dirs)."""
        seen: dict[Path, None] = {self.models_base: None, self.models_dir: None}
        for paths in self.folders.values():
            for p in paths:
                seen.setdefault(p, None)
        return tuple(seen)


def load_model_folders(
    host: Host, *, extra_yaml: Iterable[str | os.PathLike[str]] = (), models_dir: Path | None = None
) -> ModelFolders:
    """The model folders of ``host``; standalone also applies ``<ComfyUI>/extra_model_paths.yaml``
    (if present), then each of ``extra_yaml`` (``--extra-model-paths-config``), then the output
    folders ComfyUI adds at start."""
    table: dict[str, list[Path]] = {name: list(paths) for name, paths in host.model_folders().items()}
    notices: list[Notice] = []
    yaml_files: list[Path] = []
    layout = host.layout
    if isinstance(host, StandaloneHost):
        candidates = [layout.comfyui_root / EXTRA_PATHS_FILE, *(Path(p) for p in extra_yaml)]
        for cand in candidates:
            if cand.is_file():
                yaml_files.append(cand)
                notices.extend(apply_extra_paths(table, cand))
        for name in _OUTPUT_FOLDERS:
            add_folder_path(table, name, layout.comfyui_root / "output" / name)
    table.pop("custom_nodes", None)
    comfy_models = Path(models_dir or layout.models_dir)
    base = table.pop(DOWNLOAD_BASE, None) or [comfy_models]
    return ModelFolders(
        models_base=Path(base[0]),
        models_dir=comfy_models,
        folders=MappingProxyType({k: tuple(v) for k, v in table.items() if v}),
        notices=tuple(notices),
        yaml_files=tuple(yaml_files),
    )


@dataclass(frozen=True)
class Placement:
    """Where one model file goes: ``base/subdir/filename``, validated."""

    folder: str  # ComfyUI folder name ("checkpoints") or a custom one ("ipadapter")
    kind: str  # "comfy" (ComfyUI knows it) | "custom" (a node pack's folder)
    base: Path  # the folder directory the relative name is under
    subdir: tuple[str, ...]  # parts between base and the file
    filename: str
    search: tuple[Path, ...] = field(default=())  # other dirs of the same folder (already-installed check)

    @property
    def path(self) -> Path:
        return join_inside(self.base, self.subdir, self.filename)

    @property
    def relpath(self) -> str:
        """The file's name relative to its folder (``SDXL/x.safetensors``)."""
        return rel_posix(self.subdir, self.filename)

    def candidates(self) -> tuple[Path, ...]:
        """The target first, then the same relative name in the folder's other directories."""
        out = [self.path]
        for d in self.search:
            p = join_inside(d, self.subdir, self.filename)
            if p not in out:
                out.append(p)
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "kind": self.kind,
            "folder_dir": str(self.base),
            "relpath": self.relpath,
            "path": str(self.path),
        }


def place(entry: ModelEntry, folders: ModelFolders, *, filename: str | None = None) -> Placement:
    """Map a catalog entry to its ``Placement``; raises ``ModelFolderUnknown``, ``PathEscape``
    or ``ModelPathInvalid`` (nothing is created)."""
    name = safe_filename(filename if filename is not None else entry.filename)
    parts = safe_save_path(entry.save_path)
    if not parts:
        kind_key = entry.type.strip().lower()
        folder = TYPE_FOLDERS.get(kind_key) or (canonical_folder(kind_key) if folders.known(kind_key) else None)
        if folder is None:
            raise ModelFolderUnknown(
                f"model {entry.name!r}: type {entry.type!r} maps to no model folder and save_path is 'default'",
                details={"name": entry.name, "type": entry.type, "filename": entry.filename},
            )
        dirs = folders.dirs(folder) or (folders.models_base / folder,)
        placement = Placement(
            folder=folder,
            kind="comfy" if folder in COMFY_FOLDERS else "custom",
            base=dirs[0],
            subdir=(),
            filename=name,
            search=dirs[1:],
        )
    else:
        head, rest = parts[0], parts[1:]
        folder = canonical_folder(head)
        dirs = folders.dirs(folder)
        written = folders.models_base / head  # the save_path as the channel wrote it
        if dirs and folders.models_dir not in dirs[0].parents:
            base, others = dirs[0], (*dirs[1:], written)  # the folder was moved out (is_default)
        else:
            base, others = written, dirs
        placement = Placement(
            folder=folder,
            kind="comfy" if folder in COMFY_FOLDERS else "custom",
            base=base,
            subdir=rest,
            filename=name,
            search=tuple(dict.fromkeys(d for d in others if d != base)),
        )
    placement.path  # noqa: B018 - join_inside raises PathEscape if the parts ever leave the base
    return placement
