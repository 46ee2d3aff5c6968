"""``Ops``: what every verb is handed (the Manager, the dependency step, the install.py timeout),
and the real dependency step that runs ``DependencyInstaller``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..inventory import Inventory
from ..layout import Layout
from .reporting import LineFn

if TYPE_CHECKING:  # pragma: no cover
    from ..context import Manager
    from ..deps.installer import DependencyInstaller, RunInstaller

DEFAULT_SCRIPT_TIMEOUT = 600.0


class DepsStep(Protocol):
    """Installs one staged pack's Python requirements; returns a JSON-able summary."""

    def __call__(self, pack_dir: Path, pack_name: str, progress: LineFn) -> Mapping[str, Any] | None: ...


@dataclass
class Ops:
    """What every verb needs: the Manager plus an optional dependency step (tests, CLI dry runs)."""

    manager: Manager
    deps_step: DepsStep | None = None
    script_timeout: float = DEFAULT_SCRIPT_TIMEOUT
    installer: RunInstaller | None = None  # the task run's (one probe of ComfyUI's python per run)
    # a restore's clones made ahead from the git mirror ((url, ref) -> folder), kept by prepare_tree
    prefetched: Mapping[tuple[str, str], Path] = field(default_factory=dict)
    keep: tuple[Path, ...] = ()

    @property
    def layout(self) -> Layout:
        return self.manager.layout

    def inventory(self) -> Inventory:
        return self.manager.inventory()

    def deps(self) -> DepsStep:
        """The dependency step: the injected one, else the real installer (policy read now)."""
        if self.deps_step is not None:
            return self.deps_step
        return real_deps_step(self.manager, self.installer.get() if self.installer is not None else None)


def real_deps_step(manager: Manager, installer: DependencyInstaller | None = None) -> DepsStep:
    """``DependencyInstaller.install_pack_requirements`` under the current config, using the
    host's python unless ``python_executable`` is set; ``installer``: the run's, already built."""
    if installer is None:
        from ..deps.installer import installer_for  # imported on use: keeps import light

        installer = installer_for(manager)

    def step(pack_dir: Path, pack_name: str, progress: LineFn) -> Mapping[str, Any]:
        others = [
            (p.name, Path(p.path))
            for p in manager.inventory(with_catalog=False).enabled
            if p.has_requirements and p.name != pack_name
        ]
        return installer.install_pack_requirements(Path(pack_dir), pack_name, progress, other_packs=others).to_dict()

    return step
