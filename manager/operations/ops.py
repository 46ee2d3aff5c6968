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
from .staging import prepare_tree

if TYPE_CHECKING:  # pragma: no cover
    from ..compromised import CompromiseList
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
    _prepared: bool = field(default=False, init=False, repr=False)
    _compromise: CompromiseList | None = field(default=None, init=False, repr=False)

    @property
    def layout(self) -> Layout:
        return self.manager.layout

    def prepare_tree(self) -> None:
        """``staging.prepare_tree`` (journals of a killed run rolled back, leftovers removed, the
        run's ``keep`` spared) once per run: the run holds the operations lock, and each of its
        steps cleans up after itself, so later steps (a restore's packs) only check the working
        folders again, which every step must do before it writes."""
        if self._prepared:
            self.layout.check_working_folders()
            return
        prepare_tree(self.layout, keep=self.keep)
        self._prepared = True

    def compromise_list(self) -> CompromiseList:
        """The known-compromise list, read once per run from the cached copies (``refresh="never"``:
        update-cache fetches it with the channel's data). A list that does not parse raises and is
        not kept, so every pack of the run is refused (fails closed)."""
        if self._compromise is None:
            from ..compromised import load

            self._compromise = load(self.manager, refresh="never")
        return self._compromise

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
