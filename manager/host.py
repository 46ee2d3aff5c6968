"""What the Manager needs from whoever hosts it: ComfyUI (via glob/) or the standalone server.

The core never imports ComfyUI; it talks to a ``Host``. ``StandaloneHost`` serves the CLI,
the standalone server and the tests, from a ComfyUI folder on disk.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .layout import MODEL_FOLDERS, Layout


class Host(Protocol):
    """The host-facing surface the core relies on."""

    layout: Layout

    @property
    def python_executable(self) -> str: ...

    def comfyui_version(self) -> str | None: ...

    def model_folders(self) -> dict[str, list[Path]]: ...


@dataclass
class StandaloneHost:
    """A ComfyUI tree on disk with no ComfyUI process around it."""

    layout: Layout
    python: str = field(default_factory=lambda: sys.executable)

    @classmethod
    def from_root(cls, comfyui_root: str | os.PathLike[str], **layout_kw: Any) -> StandaloneHost:
        return cls(layout=Layout.from_root(comfyui_root, **layout_kw))

    @property
    def python_executable(self) -> str:
        return self.python

    def comfyui_version(self) -> str | None:
        """ComfyUI's version from comfyui_version.py, else the git commit; None when unknown."""
        root = self.layout.comfyui_root
        version_file = root / "comfyui_version.py"
        if version_file.is_file():
            for line in version_file.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("__version__"):
                    return line.split("=", 1)[1].strip().strip("\"'")
        if (root / ".git").exists():
            from .git import run_local  # here, not at the top: the prestartup script imports this module

            rc, out = run_local("git", root, "rev-parse", "HEAD", timeout=10)
            return out.decode("utf-8", "replace").strip() if rc == 0 else None
        return None

    def model_folders(self) -> dict[str, list[Path]]:
        """Model folder names to their directories (standalone: the default ComfyUI layout)."""
        base = self.layout.models_dir
        folders = {name: [base / name] for name in MODEL_FOLDERS}
        folders["text_encoders"].append(base / "clip")
        folders["diffusion_models"].insert(0, base / "unet")
        folders["controlnet"].append(base / "t2i_adapter")
        return folders
