"""Apply the operations scheduled for this start, before ComfyUI imports any pack.

Called by the root ``prestartup_script.py`` only when ``startup/pending.json`` exists. Builds a
Manager for the tree ``folder_paths`` describes with the network gate forced offline (no
network at start, ever: a restore then uses local sources only, or stops before any change
with ``snapshot_sources_missing``), and applies the entries inside the operations lock.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("offline_manager")


def layout_for(folder_paths: Any, package_dir: str) -> Any:
    """The tree's layout: from ``folder_paths`` when ComfyUI provides it, else from our folder
    (``<ComfyUI>/custom_nodes/<us>``)."""
    from ..manager.layout import Layout

    if folder_paths is not None:
        from .comfy_host import layout_from_folder_paths

        return layout_from_folder_paths(folder_paths)
    return Layout.from_root(Path(package_dir).resolve().parent.parent)


def run(folder_paths: Any, package_dir: str) -> list[dict[str, Any]] | None:
    """Apply what is pending; returns the per-entry results (None: nothing applied). Never raises."""
    started = time.perf_counter()
    try:
        from ..manager.context import Manager
        from ..manager.host import StandaloneHost
        from ..manager.startup import apply_pending

        layout = layout_for(folder_paths, package_dir)
        manager = Manager.create(StandaloneHost(layout=layout), cli={"network_mode": "offline"})
        applied = apply_pending(manager)
    except Exception:  # ComfyUI must start whatever happens here; the entries stay for the next start
        log.exception("[offline-manager] could not apply the operations scheduled for this start")
        return None
    if applied is None:
        return None
    failed = [a for a in applied if not a.ok]
    log.info(
        "[offline-manager] applied %d operation(s) scheduled for this start (%d failed) in %.1f s; details in %s",
        len(applied),
        len(failed),
        time.perf_counter() - started,
        layout.manager_dir / "startup" / "last.json",
    )
    for a in failed:
        log.warning(
            "[offline-manager] %s %s failed at start: %s", a.op.action, a.op.target, (a.error or {}).get("message")
        )
    return [a.to_dict() for a in applied]
