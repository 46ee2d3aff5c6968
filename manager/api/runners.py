"""The API's own task runner, ``install_pip`` (the classic ``/customnode/install/pip``), run
through the dependency installer under the same rules as a pack's requirements.txt."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from ..context import Manager
    from ..tasks import Runner, TaskContext

log = logging.getLogger("offline_manager.api")

PIP_KIND = "install_pip"


def pip_runners(manager: "Manager") -> dict[str, "Runner"]:
    """``install_pip``: the given specs as a requirements file, installed by the dependency installer."""
    def run(ctx: "TaskContext") -> dict[str, Any]:
        from ..deps.installer import DependencyInstaller
        from ..deps.policy import deps_policy_from_config
        from ..fsops import atomic_write_text

        packages = [str(p) for p in ctx.params.get("packages") or []]
        index = str(ctx.params.get("index_url") or "")
        lines = ([f"--index-url {index}"] if index else []) + packages
        path = manager.layout.manager_dir / "tmp" / f"api-pip-{uuid.uuid4().hex[:8]}.txt"
        atomic_write_text(path, "\n".join(lines) + "\n")
        try:
            installer = DependencyInstaller(deps_policy_from_config(manager.config, manager.layout), manager.gate)
            result = installer.install_requirements_file(
                path, lambda line: ctx.progress("pip", None, str(line)), label="pip request")
        finally:
            path.unlink(missing_ok=True)
        return result.to_dict()
    return {PIP_KIND: run}


def register_runners(manager: "Manager", *, extra: Mapping[str, "Runner"] | None = None) -> None:
    """Add the API's own runners to ``manager`` (before its queue is first used).

    The Manager already registers the shipped operation, model and snapshot runners; this adds
    ``install_pip``, and ``extra`` runners (tests, demos) that override same-named kinds.
    Nothing is imported now: the pip runner imports the dependency installer when it runs.
    """
    manager.add_runners(pip_runners)
    if extra:
        fixed = dict(extra)
        manager.add_runners(lambda _m: fixed)
