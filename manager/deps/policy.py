"""``DepsPolicy``: every setting dependency handling reads, as plain values (tests build it directly)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..layout import Layout
from .blacklist import downgrade_protected, load_blacklist
from .overrides import Overrides, load_overrides
from .requirements import SourceRules
from .wheelhouse import local_dir

PYPI_SIMPLE = "https://pypi.org/simple"


@dataclass(frozen=True)
class DepsPolicy:
    """What to install with, from where, and what never to touch.

    ``use_uv``: True/False as configured, None when config.ini does not set it (uv preferred
    when found). ``index_url`` empty means PyPI, which still passes the network gate (so the
    mirror map can redirect it and offline/private modes refuse it).
    """

    python: str = field(default_factory=lambda: sys.executable)
    use_uv: bool | None = None
    wheelhouse_dirs: tuple[Path, ...] = ()  # the Manager's wheelhouse first
    index_url: str = ""
    allowed_sources: tuple[str, ...] = ()
    allow_external: bool = False
    overrides: Overrides = field(default_factory=Overrides.empty)
    blacklist: frozenset[str] = frozenset()
    protected: frozenset[str] = field(default_factory=downgrade_protected)
    overrides_file: Path | None = None  # shown in messages only
    blacklist_file: Path | None = None

    @property
    def effective_index(self) -> str:
        return self.index_url or PYPI_SIMPLE

    def source_rules(self) -> SourceRules:
        """Sources a pack's requirements may name: allowed_pip_sources plus the configured index."""
        prefixes = tuple(self.allowed_sources) + ((self.index_url,) if self.index_url else ())
        return SourceRules(prefixes, self.allow_external)

    @property
    def primary_wheelhouse(self) -> Path | None:
        return self.wheelhouse_dirs[0] if self.wheelhouse_dirs else None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def deps_policy_from_config(config: Any, layout: Layout) -> DepsPolicy:
    """Build the policy from a ``Config`` (reads pip_overrides.json and pip_blacklist.list now).

    Call it per operation: edits to those files apply to the next install, in the server and
    the CLI alike.
    """
    use_uv: bool | None = bool(config["use_uv"])
    source = getattr(config, "source", None)
    if callable(source) and source("use_uv") == "default":
        use_uv = None
    wheelhouses: list[Path] = [layout.wheelhouse_dir]
    for entry in _as_list(config["wheelhouse_dirs"]):
        folder = local_dir(entry)
        if folder not in wheelhouses:
            wheelhouses.append(folder)
    return DepsPolicy(
        python=str(config["python_executable"] or sys.executable),
        use_uv=use_uv,
        wheelhouse_dirs=tuple(wheelhouses),
        index_url=str(config["pip_index_url"] or "").strip(),
        allowed_sources=tuple(_as_list(config["allowed_pip_sources"])),
        allow_external=bool(config["allow_external_pip"]),
        overrides=load_overrides(layout.pip_overrides_file),
        blacklist=load_blacklist(layout.pip_blacklist_file),
        protected=downgrade_protected(_as_list(config["downgrade_blacklist"])),
        overrides_file=layout.pip_overrides_file,
        blacklist_file=layout.pip_blacklist_file,
    )
