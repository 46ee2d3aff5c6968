"""The local model store: a company's copy of model files, tried before a model's own URL.

``model_store`` in config.ini lists store roots: folders, ``file://`` URLs or http(s) URL
prefixes. A root holds files under any of these names (first match wins):

1. ``sha256/<hex>``                  when the expected sha256 is known (snapshots, bundles);
2. ``<folder>/<subfolder>/<file>``   a mirror of a ComfyUI models folder (``checkpoints/SDXL/x.safetensors``);
3. ``<save_path>/<file>``            the channel's own spelling when it differs (legacy ``clip/...``);
4. ``<file>``                        a flat folder of files.

Folders and ``file://`` roots are checked on disk (no network); http(s) roots are tried in
order through the gate and a 404 moves on to the next name. In offline mode only local roots
count, and a miss fails at once with the paths where the file must be placed.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelNotInStore
from ..network import NetworkGate
from .folders import LEGACY_FOLDERS, Placement
from .paths import rel_posix
from .verify import normalise_sha

SETTING = "model_store"


@dataclass(frozen=True)
class StoreRoot:
    """One configured store root: a local folder or an http(s) URL prefix."""

    raw: str
    path: Path | None = None
    url: str | None = None

    @property
    def is_local(self) -> bool:
        return self.path is not None

    def location(self, rel: str) -> str:
        """Where ``rel`` lives in this root (a filesystem path or a URL)."""
        if self.path is not None:
            return str(self.path.joinpath(*rel.split("/")))
        assert self.url is not None
        return self.url.rstrip("/") + "/" + urllib.parse.quote(rel)


@dataclass(frozen=True)
class StoreSource:
    """One place to try: a local file that exists, or a remote URL that may answer 404."""

    root: StoreRoot
    rel: str
    url: str  # file:// URL for local hits, http(s) URL for remote roots

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.root.raw, "name": self.rel, "url": self.url}


class ModelStore:
    """The configured store roots, in order. Pure lookups; no I/O at construction."""

    def __init__(self, roots: Sequence[StoreRoot] = ()) -> None:
        self.roots = tuple(roots)

    @classmethod
    def parse(cls, values: Iterable[str], *, base_dir: Path) -> ModelStore:
        """Build from ``model_store`` values; relative folders are taken from ``base_dir`` (ComfyUI root)."""
        roots: list[StoreRoot] = []
        for raw in values:
            text = str(raw).strip()
            if not text:
                continue
            scheme = urllib.parse.urlsplit(text).scheme.lower() if "://" in text else ""
            if scheme in ("http", "https"):
                roots.append(StoreRoot(raw=text, url=text))
                continue
            path = NetworkGate.local_path(text) if scheme == "file" else Path(os.path.expanduser(text))
            roots.append(StoreRoot(raw=text, path=path if path.is_absolute() else base_dir / path))
        return cls(roots)

    @classmethod
    def from_manager(cls, manager: Any) -> ModelStore:
        """The store configured for ``manager`` (``model_store``; empty when the key is unknown), then
        the model store bundles fill (``Layout.model_store_dir``) when it exists."""
        try:
            values = tuple(manager.config[SETTING])
        except KeyError:
            values = ()
        bundled = manager.layout.model_store_dir
        if bundled.is_dir():
            values = (*values, str(bundled))
        return cls.parse(values, base_dir=manager.layout.comfyui_root)

    @property
    def local_roots(self) -> tuple[StoreRoot, ...]:
        return tuple(r for r in self.roots if r.is_local)

    @staticmethod
    def names(placement: Placement, sha256: str | None = None) -> list[str]:
        """The relative names a store may hold this model under, most specific first."""
        out: list[str] = []
        digest = normalise_sha(sha256)  # only 64 hex digits ever become a path
        if digest:
            out.append(f"sha256/{digest}")
        out.append(f"{placement.folder}/{placement.relpath}")
        written = placement.base.name
        if written in LEGACY_FOLDERS and LEGACY_FOLDERS[written] == placement.folder:
            out.append(rel_posix((written, *placement.subdir), placement.filename))
        out.append(placement.filename)
        return list(dict.fromkeys(out))

    def sources(self, placement: Placement, sha256: str | None = None, *, remote: bool = True) -> list[StoreSource]:
        """Sources to try in order: local hits (existing files), then every remote candidate."""
        out: list[StoreSource] = []
        for root in self.roots:
            for rel in self.names(placement, sha256):
                if root.is_local:
                    path = Path(root.location(rel))
                    if path.is_file():
                        out.append(StoreSource(root, rel, path.absolute().as_uri()))
                        break
                elif remote:
                    out.append(StoreSource(root, rel, root.location(rel)))
        return out

    def expected_paths(self, placement: Placement) -> list[str]:
        """Where a user may put the file so the local store finds it (folder-mirror name first)."""
        rel = self.names(placement)[0]
        return [root.location(rel) for root in self.local_roots]

    def miss(self, placement: Placement, sha256: str | None = None) -> ModelNotInStore:
        """The offline-mode error for a model the store does not hold."""
        target = placement.path
        places = self.expected_paths(placement)
        if places:
            message = (
                f"offline mode: {placement.filename} is not in the model store; put it at "
                f"{places[0]} (or directly at {target})"
            )
            hint = (
                "Copy the file into the model store (model_store in config.ini: "
                + ", ".join(r.raw for r in self.local_roots)
                + f") or into {target.parent}, then retry."
            )
        else:
            message = (
                f"offline mode: {placement.filename} cannot be downloaded and no local model store is "
                f"configured; put it at {target}"
            )
            hint = (
                f"Copy {placement.filename} into {target.parent}, or set model_store in config.ini to a "
                "folder holding model files (see docs/models.md), then retry."
            )
        return ModelNotInStore(
            message,
            hint=hint,
            details={
                "filename": placement.filename,
                "folder": placement.folder,
                "target": str(target),
                "store_paths": places,
                "looked_for": self.names(placement, sha256),
            },
        )
