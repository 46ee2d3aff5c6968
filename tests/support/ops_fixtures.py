"""Builders for operation tests: a ComfyUI tree with its config.ini, a local channel whose
catalog points at real file:// repositories, real registry zips, and a recording deps step.

Also runnable as a script (``python ops_fixtures.py child <root> <spec> <kill-stage>``): the
child process the SIGKILL tests start; it installs ``spec`` through the task queue and kills
itself with SIGKILL when the named progress stage is reported.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def write_config(root: Path, **settings: Any) -> Path:
    """``user/__manager/config.ini`` of the tree with ``settings`` in ``[default]``."""
    path = root / "user" / "__manager" / "config.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["[default]"] + [f"{k} = {v}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_channel(
    folder: Path, packs: Iterable[Mapping[str, Any]], node_map: Mapping[str, list[str]] | None = None
) -> str:
    """A channel folder (custom-node-list.json + extension-node-map.json); returns its file:// URL.

    ``node_map``: reference URL -> node class names.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "custom-node-list.json").write_text(json.dumps({"custom_nodes": list(packs)}), encoding="utf-8")
    ext = {url: [names, {"title_aux": url.rsplit("/", 1)[-1]}] for url, names in (node_map or {}).items()}
    (folder / "extension-node-map.json").write_text(json.dumps(ext), encoding="utf-8")
    (folder / "model-list.json").write_text(json.dumps({"models": []}), encoding="utf-8")
    return folder.as_uri()


def catalog_entry(
    pack_id: str, url: str, *, install_type: str = "git-clone", files: list[str] | None = None, title: str | None = None
) -> dict[str, Any]:
    return {
        "id": pack_id,
        "title": title or pack_id,
        "author": "test",
        "reference": url,
        "files": files if files is not None else [url],
        "install_type": install_type,
        "description": f"{pack_id} for tests",
    }


def build_zip(path: Path, files: Mapping[str, str | bytes], *, top: str = "") -> Path:
    """A real zip archive with ``files`` (optionally under one top folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel, data in files.items():
            zf.writestr(f"{top}/{rel}" if top else rel, data)
    return path


def cnr_files(node_id: str, version: str, *, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The files of a registry zip of ``node_id`` at ``version`` (pyproject identity included)."""
    files = {
        "__init__.py": "NODE_CLASS_MAPPINGS = {}\n",
        "nodes.py": f"VERSION = {version!r}\n",
        "pyproject.toml": (
            f'[project]\nname = "{node_id}"\nversion = "{version}"\n'
            f'[project.urls]\nRepository = "https://github.com/example/{node_id}"\n'
        ),
    }
    files.update(extra or {})
    return files


@dataclass
class DepsRecorder:
    """A real-but-simple deps step: reads requirements.txt, logs the call, writes a marker file
    into the staged folder (so a test can see it ran before the rename), or fails on demand."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    fail: bool = False

    def __call__(self, pack_dir: Path, pack_name: str, progress: Any) -> dict[str, Any]:
        reqs = (Path(pack_dir) / "requirements.txt").read_text(encoding="utf-8").split()
        self.calls.append((str(pack_dir), pack_name))
        progress(f"[deps] would install {' '.join(reqs)}")
        if self.fail:
            from manager.deps.errors import DepsInstallFailed

            raise DepsInstallFailed(f"pip failed for {pack_name}", details={"output_tail": ["ERROR: boom"]})
        (Path(pack_dir) / ".deps-ran").write_text(str(pack_dir), encoding="utf-8")
        return {"requirements": reqs}


def tree_listing(root: Path) -> dict[str, str]:
    """Relative path -> fingerprint of everything under ``root`` (see support/treesum)."""
    from support import treesum  # here, not at the top: this file also runs as a child script

    return treesum.listing(root)


@dataclass
class OpsEnv:
    """A ComfyUI tree with a Manager whose queue runs the operation runners."""

    root: Path
    manager: Any
    deps: DepsRecorder
    events: list = field(default_factory=list)

    @property
    def custom_nodes(self) -> Path:
        return self.root / "custom_nodes"

    @property
    def ops(self) -> Any:
        from manager.operations import Ops

        return Ops(self.manager, deps_step=self.deps)

    def run(self, kind: str, target: str, **params: Any) -> Any:
        """Queue one task, run it to the end, return its final snapshot."""
        from manager.tasks import TaskSpec

        queue = self.manager.queue
        task = queue.enqueue(TaskSpec(kind, target, params))
        assert queue.run_until_idle(timeout=120)
        return queue.get(task.id)

    def stages(self, task_id: str) -> list[str]:
        out: list[str] = []
        for ev in self.events:
            if ev.task_id == task_id and ev.name == "progress" and (not out or out[-1] != ev.data["stage"]):
                out.append(ev.data["stage"])
        return out

    def close(self) -> None:
        self.manager.queue.stop(timeout=10)


def make_env(
    tmp_path: Path,
    *,
    mode: str = "offline",
    packs: Iterable[Mapping[str, Any]] = (),
    node_map: Mapping[str, list[str]] | None = None,
    python: str | None = None,
    deps: Any = None,
    **settings: Any,
) -> OpsEnv:
    """Tree at ``tmp_path/ComfyUI`` + a local channel + config.ini (``network_mode`` = ``mode``)."""
    from manager.context import Manager
    from manager.host import StandaloneHost

    root = tmp_path / "ComfyUI"
    for sub in ("custom_nodes", "models", "user"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    channel = write_channel(tmp_path / "channel", packs, node_map)
    write_config(root, network_mode=mode, channel_url=channel, **settings)
    host = StandaloneHost.from_root(root)
    if python:
        host.python = python
    manager = Manager.create(host, env={})
    recorder = DepsRecorder() if deps is None else deps
    step = recorder if deps is not False else None
    manager.deps_step = step
    env = OpsEnv(root, manager, recorder if isinstance(recorder, DepsRecorder) else DepsRecorder())
    manager.queue.subscribe(env.events.append)
    return env


# --- the child process of the SIGKILL / lock tests ------------------------------------------------
def _child(root: str, spec: str, kill_stage: str, params_json: str = "{}") -> int:
    """Install ``spec`` through a queue of its own; print every progress event as a JSON line;
    SIGKILL itself at the first event of ``kill_stage`` (``stage:output`` waits for a line of
    tool output in that stage; ``none`` never kills)."""
    import signal
    import time

    from manager.context import Manager
    from manager.tasks import TaskSpec

    manager = Manager.standalone(root, env={})
    queue = manager.queue
    stage, _, when = kill_stage.partition(":")

    def on_event(event: Any) -> None:
        if event.name != "progress":
            return
        data = dict(event.data)
        sys.stdout.write(json.dumps({"stage": data.get("stage"), "line": data.get("line"), "at": time.time()}) + "\n")
        sys.stdout.flush()
        if data.get("stage") == stage and (
            when != "output" or (data.get("line") and not str(data["line"]).startswith("cloning "))
        ):
            os.kill(os.getpid(), signal.SIGKILL)

    queue.subscribe(on_event)
    task = queue.enqueue(TaskSpec("install", spec, json.loads(params_json)))
    queue.run_until_idle(timeout=120)
    final = queue.get(task.id)
    sys.stdout.write(
        json.dumps({"state": final.state.value, "error": dict(final.error or {}), "finished_at": final.finished_at})
        + "\n"
    )
    return 0


if __name__ == "__main__" and len(sys.argv) >= 5 and sys.argv[1] == "child":
    sys.exit(_child(*sys.argv[2:]))
