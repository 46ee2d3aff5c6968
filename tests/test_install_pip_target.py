"""``install_pip`` installs into ComfyUI's python (the host's interpreter when ``python_executable``
is unset), never into the Manager's own: found when an undo test put a package into the suite's venv."""

from __future__ import annotations

import sys
from pathlib import Path

from support.ops_fixtures import make_env
from support.wheels import Pkg, build_wheels, installed_version, make_venv


def test_install_pip_goes_to_the_hosts_python(tmp_path: Path, own_caches, uv_bin: str) -> None:
    comfy_python = make_venv(tmp_path / "comfy-venv", uv=uv_bin)
    env = make_env(tmp_path, python=str(comfy_python))
    try:
        config = env.manager.config.path
        text = config.read_text(encoding="utf-8") + "[security]\nallow_pip_install = true\n"
        config.write_text(text, encoding="utf-8")
        env.manager.apply_config(type(env.manager.config).load(config, env={}))
        build_wheels(env.manager.layout.wheelhouse_dir, [Pkg("cm-target-probe", "1.0")])
        planned = env.manager.plan("install_pip", "", {"packages": ["cm-target-probe==1.0"]}, listen="127.0.0.1")
        (task,) = env.manager.submit([planned])
        assert env.manager.queue.run_until_idle(120)
        done = env.manager.queue.get(task.id)
        assert done.state.value == "done", done.error
        assert installed_version(comfy_python, "cm_target_probe") == "1.0"
        assert installed_version(sys.executable, "cm_target_probe") is None  # the suite's own venv untouched
    finally:
        env.close()
