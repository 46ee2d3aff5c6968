"""Every path the Manager touches, derived from the ComfyUI root, plus ``ensure_inside``.

Hidden working folders under ``custom_nodes/`` end in ``.disabled`` on purpose: ComfyUI
skips any entry whose path ends in ``.disabled``, so a staging or trash folder is never
imported as a node pack, and it sits on the same filesystem as the packs so a rename
into place is atomic.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ManagerError, PathEscape
from .fsops import refuse_link_entries, refuse_links

# The model folders ComfyUI declares (folder_paths), in its order: the standalone host's layout and
# the "comfy" placement kind both read this one list.
MODEL_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)


STAGING_DIRNAME = ".cm-staging.disabled"
TRASH_DIRNAME = ".cm-trash.disabled"
DISABLED_DIRNAME = ".disabled"
MANAGER_DIRNAME = "__manager"


_RESERVED_STEMS = frozenset({"con", "prn", "aux", "nul", "conin$", "conout$", "clock$"})
_RESERVED_NUMBERED = re.compile(r"^(com|lpt)[0-9\u00b9\u00b2\u00b3]$")


def is_reserved_device_name(name: str) -> bool:
    """True for Windows device names (``CON``, ``com1``, ``nul.txt`` ...): unusable as file names.

    Trees are copied between Linux GPU boxes and Windows desktops, so we refuse them everywhere.
    """
    stem = name.split(".", 1)[0].rstrip(" ").lower()
    return stem in _RESERVED_STEMS or bool(_RESERVED_NUMBERED.match(stem))


def ensure_inside(path: str | os.PathLike[str], *roots: str | os.PathLike[str]) -> Path:
    """Return ``path`` resolved, or raise ``PathEscape`` when it is not inside one of ``roots``.

    Symlinks are resolved on both sides, so a link that points out of the tree is caught.
    """
    target = Path(os.path.realpath(path))
    for root in roots:
        base = Path(os.path.realpath(root))
        if target == base or base in target.parents:
            return target
    raise PathEscape(
        f"path {str(path)!r} is outside the allowed folders",
        details={"path": str(path), "allowed": [str(r) for r in roots]},
    )


@dataclass(frozen=True)
class Layout:
    """Paths of one ComfyUI tree. Only computes paths; creates nothing."""

    comfyui_root: Path
    user_dir: Path
    custom_nodes: Path
    models_dir: Path
    manager_dir: Path

    @classmethod
    def from_root(
        cls,
        comfyui_root: str | os.PathLike[str],
        *,
        user_dir: str | os.PathLike[str] | None = None,
        custom_nodes: str | os.PathLike[str] | None = None,
        models_dir: str | os.PathLike[str] | None = None,
        manager_dir: str | os.PathLike[str] | None = None,
    ) -> Layout:
        root = Path(comfyui_root).absolute()
        user = Path(user_dir).absolute() if user_dir else root / "user"
        return cls(
            comfyui_root=root,
            user_dir=user,
            custom_nodes=Path(custom_nodes).absolute() if custom_nodes else root / "custom_nodes",
            models_dir=Path(models_dir).absolute() if models_dir else root / "models",
            manager_dir=Path(manager_dir).absolute() if manager_dir else user / MANAGER_DIRNAME,
        )

    # custom_nodes side
    @property
    def disabled_dir(self) -> Path:
        return self.custom_nodes / DISABLED_DIRNAME

    @property
    def staging_dir(self) -> Path:
        return self.custom_nodes / STAGING_DIRNAME

    @property
    def trash_dir(self) -> Path:
        return self.custom_nodes / TRASH_DIRNAME

    # manager data side
    @property
    def config_file(self) -> Path:
        return self.manager_dir / "config.ini"

    @property
    def channels_file(self) -> Path:
        return self.manager_dir / "channels.list"

    @property
    def cache_dir(self) -> Path:
        return self.manager_dir / "cache"

    @property
    def snapshots_dir(self) -> Path:
        return self.manager_dir / "snapshots"

    @property
    def wheelhouse_dir(self) -> Path:
        return self.manager_dir / "wheelhouse"

    # the offline stores a bundle import fills and ``mirror build`` lays out (docs/bundles.md)
    @property
    def local_channel_dir(self) -> Path:
        """The channel an imported bundle writes (its ``channels.list`` line points here)."""
        return self.manager_dir / "local-channel"

    @property
    def git_mirror_dir(self) -> Path:
        """Bare git repositories from bundles, at ``<host>/<path>.git`` of their source URL."""
        return self.manager_dir / "git-mirror"

    @property
    def model_store_dir(self) -> Path:
        """Model files from bundles, laid out as a local ``model_store`` root."""
        return self.manager_dir / "model-store"

    @property
    def bundles_dir(self) -> Path:
        """Manifests of imported bundles (the base an increment needs; ``doctor`` coverage)."""
        return self.manager_dir / "bundles"

    @property
    def bundle_staging_dir(self) -> Path:
        """Where a bundle import unpacks before moving entries into the stores (hidden; ours)."""
        return self.manager_dir / ".bundle-staging"

    @property
    def logs_dir(self) -> Path:
        return self.manager_dir / "logs"

    @property
    def locks_dir(self) -> Path:
        return self.manager_dir / "locks"

    @property
    def pip_overrides_file(self) -> Path:
        return self.manager_dir / "pip_overrides.json"

    @property
    def pip_blacklist_file(self) -> Path:
        return self.manager_dir / "pip_blacklist.list"

    def writable_roots(self) -> tuple[Path, ...]:
        """Folders the Manager may ever write into."""
        return (self.custom_nodes, self.models_dir, self.manager_dir)

    def inside(self, path: str | os.PathLike[str]) -> Path:
        """``ensure_inside`` against every writable root of this tree."""
        return ensure_inside(path, *self.writable_roots())

    # our working folders: real folders, never links (docs/security.md)
    @property
    def data_anchor(self) -> Path:
        """The folder the user chose for our data: ``user/`` (``__manager`` and below are ours)."""
        if self.user_dir in self.manager_dir.parents:
            return self.user_dir
        return self.manager_dir.parent

    def data_folders(self) -> tuple[tuple[Path, str], ...]:
        """Our folders under the data anchor, with what each is (for error messages)."""
        cache = self.cache_dir
        return (
            (self.manager_dir, "Manager data folder"),
            (self.snapshots_dir, "snapshots folder"),
            (cache, "cache folder"),
            (cache / "channels", "channel cache"),
            (cache / "registry", "registry cache"),
            (cache / "archives" / "cnr", "registry archive cache"),
            (cache / "archives" / "url", "archive cache"),
            (self.locks_dir, "locks folder"),
            (self.logs_dir, "logs folder"),
            (self.local_channel_dir, "bundle channel folder"),
            (self.git_mirror_dir, "git mirror folder"),
            (self.model_store_dir, "bundle model store"),
            (self.bundles_dir, "imported bundles folder"),
            (self.bundle_staging_dir, "bundle staging folder"),
        )

    def check_working_folders(self) -> None:
        """Before any write: ``.disabled/``, staging and trash (and every entry inside them), and
        our data folders are real folders, not links; ``WorkingFolderLink`` names the first that
        is not. ``custom_nodes/`` and ``user/`` themselves may be links (the user's choice), and
        so may a pack in ``custom_nodes/``."""
        for folder, what in (
            (self.disabled_dir, "disabled packs folder"),
            (self.staging_dir, "staging folder"),
            (self.trash_dir, "trash folder"),
        ):
            refuse_links(folder, self.custom_nodes, what=what)
            refuse_link_entries(folder, what=f"entry in the {what}")
        for folder, what in self.data_folders():
            refuse_links(folder, self.data_anchor, what=what)
        refuse_link_entries(self.cache_dir / "archives" / "cnr", what="entry in the registry archive cache")


def data_anchor_for(folder: str | os.PathLike[str]) -> Path:
    """The anchor of one of our data folders given alone (a store or cache built from a path):
    the parent of its ``__manager`` folder when it has one, else its own parent."""
    path = Path(os.path.abspath(folder))
    for parent in (path, *path.parents):
        if parent.name == MANAGER_DIRNAME:
            return parent.parent
    return path.parent


# --- finding the ComfyUI root ------------------------------------------------------------------
COMFYUI_ENV = "COMFYUI_PATH"


class ComfyUINotFound(ManagerError):
    """No ComfyUI root was given and none was found above the current folder or the CLI."""

    code = "comfyui_not_found"
    http_status = 404


def is_comfyui_root(path: str | os.PathLike[str]) -> bool:
    """A ComfyUI root: a folder holding ``main.py`` and ``custom_nodes/``."""
    folder = Path(path)
    return (folder / "main.py").is_file() and (folder / "custom_nodes").is_dir()


def find_comfyui_root(*starts: str | os.PathLike[str]) -> Path | None:
    """The first ComfyUI root found walking up from each of ``starts`` in turn (itself included),
    None when there is none. Reads only folder entries."""
    for start in starts:
        here = Path(os.path.abspath(start))
        for folder in (here, *here.parents):
            if is_comfyui_root(folder):
                return folder
    return None


def comfyui_not_found(starts: tuple[str | os.PathLike[str], ...]) -> ComfyUINotFound:
    """The coded error naming where the search looked and how to point at a ComfyUI root."""
    looked = [str(Path(os.path.abspath(s))) for s in starts]
    return ComfyUINotFound(
        "no ComfyUI found: no folder holding main.py and custom_nodes/ at or above "
        + " or ".join(looked)
        + f", and neither --comfyui nor {COMFYUI_ENV} was given",
        hint=f"Run cm-cli.py from inside the ComfyUI folder, or name it: "
        f"cm-cli.py --comfyui /path/to/ComfyUI doctor (or set {COMFYUI_ENV}=/path/to/ComfyUI).",
        details={"looked_in": looked, "env": COMFYUI_ENV},
    )
