"""export-deps -> download-deps (pip download from a 127.0.0.1 index) -> offline install into a
fresh venv from the wheelhouse it filled."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from manager.deps.blacklist import downgrade_protected
from manager.deps.errors import DepsSourceNotAllowed
from manager.deps.export import OFFLINE_REQUIREMENTS, download_deps, export_requirements
from manager.deps.installer import DependencyInstaller
from manager.deps.overrides import load_overrides
from manager.deps.plan import PackSource
from manager.deps.policy import DepsPolicy
from manager.network import NetworkGate, NetworkMode, NetworkPolicy
from support.wheels import (
    ConnectTrap,
    Pkg,
    build_wheel,
    build_wheels,
    installed_version,
    make_venv,
    serve_simple_index,
)

DIST = [
    Pkg("alpha", "1.0", ("beta>=1",)),
    Pkg("beta", "1.0"),
    Pkg("beta", "2.0"),
    Pkg("gamma", "3.0"),
    Pkg("unused", "1.0"),
]


@pytest.fixture(autouse=True)
def _own_caches(own_caches):
    return own_caches


def packs(root: Path) -> list[PackSource]:
    out = []
    for name, text in (
        ("PackA", "alpha\nbeta<2  # old API\nnumpy; sys_platform == 'nope'\n"),
        ("PackB", "gamma>=2\nbeta\nevil\n"),
    ):
        folder = root / "custom_nodes" / name
        folder.mkdir(parents=True)
        (folder / "requirements.txt").write_text(text)
        out.append(PackSource(name, folder))
    return out


def gate(mode: str, mirrors: tuple[str, ...] = ()) -> NetworkGate:
    return NetworkGate(NetworkPolicy(mode=NetworkMode(mode), private_mirrors=mirrors))


def test_export_download_then_fresh_offline_install(tmp_path, http_server, uv_bin, monkeypatch):
    index = serve_simple_index(http_server, build_wheels(tmp_path / "dist", DIST))
    manager_dir = tmp_path / "__manager"
    build_wheel(manager_dir / "local", "special", "9.1")
    (manager_dir / "pip_overrides.json").write_text(
        json.dumps({"gamma": {"local_path": "local/special-9.1-py3-none-any.whl"}})
    )
    overrides = load_overrides(manager_dir / "pip_overrides.json")

    # 1. export on the "online" machine (its own venv only informs installed versions)
    source_venv = make_venv(tmp_path / "source-venv", uv=uv_bin)
    policy = DepsPolicy(python=str(source_venv), index_url=index, blacklist=frozenset({"evil"}), overrides=overrides)
    out = tmp_path / OFFLINE_REQUIREMENTS
    result = export_requirements(DependencyInstaller(policy, gate("public")), packs(tmp_path), out)
    text = out.read_text()
    assert result.requirements == ("alpha", "beta<2", 'numpy; sys_platform == "nope"', "special==9.1")
    assert "alpha  # PackA\n" in text and "beta<2  # PackA, PackB\n" in text
    assert "special==9.1  # PackB (local wheel" in text
    assert "# skipped evil (PackB): evil is listed in" in text

    # 2. download-deps fills an empty wheelhouse through the index (pip download)
    wheelhouse = tmp_path / "carry" / "wheelhouse"
    lines: list[str] = []
    dl = download_deps(out, wheelhouse, policy=policy, gate=gate("public"), progress=lines.append)
    assert set(dl.added) == {"alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", "special-9.1-py3-none-any.whl"}
    assert f"--index-url {index}" in dl.commands[0] and lines
    assert http_server.count("/simple/unused/") == 0

    # 3. the air-gapped machine: a fresh venv, offline, nothing but the wheelhouse
    trap = ConnectTrap()
    try:
        for key, value in trap.proxy_env().items():
            monkeypatch.setenv(key, value)
        target = make_venv(tmp_path / "airgapped", uv=uv_bin)
        offline = DependencyInstaller(DepsPolicy(python=str(target), wheelhouse_dirs=(wheelhouse,)), gate("offline"))
        done = offline.install_requirements_file(out)
        assert done.ran and "--offline" in done.commands[0]
        assert installed_version(target, "alpha") == "1.0" and installed_version(target, "beta") == "1.0"
        assert installed_version(target, "special") == "9.1"
        assert trap.count == 0
    finally:
        trap.close()


def test_export_pins_installed_versions_and_reports_conflicts(tmp_path, uv_bin):
    wheels = tmp_path / "wh"
    build_wheels(wheels, DIST)
    venv = make_venv(tmp_path / "venv", uv=uv_bin)
    inst = DependencyInstaller(DepsPolicy(python=str(venv), wheelhouse_dirs=(wheels,)), gate("offline"))
    folder = tmp_path / "P0"
    folder.mkdir()
    (folder / "requirements.txt").write_text("beta==2.0\n")
    inst.install_pack_requirements(folder, "P0")
    a, b = tmp_path / "A", tmp_path / "B"
    for path, text in ((a, "beta>=1\nalpha\n"), (b, "beta<2\n")):
        path.mkdir()
        (path / "requirements.txt").write_text(text)
    out = tmp_path / "req.txt"
    result = export_requirements(inst, [("A", a), ("B", b), ("P0", folder)], out, pin_installed=True)
    assert result.requirements == ("beta==2.0", "alpha")
    assert result.conflicts and result.conflicts[0].winner == "P0"
    assert "# conflict beta:" in out.read_text()


def test_export_lists_a_refused_pack_and_goes_on(tmp_path, uv_bin):
    venv = make_venv(tmp_path / "venv", uv=uv_bin)
    good, bad = tmp_path / "Good", tmp_path / "Bad"
    good.mkdir()
    bad.mkdir()
    (good / "requirements.txt").write_text("alpha\n")
    (bad / "requirements.txt").write_text("--extra-index-url https://evil.example/simple\nx\n")
    inst = DependencyInstaller(DepsPolicy(python=str(venv)), gate("offline"))
    result = export_requirements(inst, [("Good", good), ("Bad", bad)], tmp_path / "out.txt")
    assert result.requirements == ("alpha",)
    assert result.problems and result.problems[0].startswith("Bad: Bad: requirements.txt line 1")
    assert "# left out Bad:" in (tmp_path / "out.txt").read_text()


def test_download_private_mode_uses_only_the_mirror_and_refuses_foreign_sources(tmp_path, http_server):
    index = serve_simple_index(http_server, build_wheels(tmp_path / "dist", DIST))
    req = tmp_path / "requirements-offline.txt"
    req.write_text("gamma\n")
    policy = DepsPolicy(index_url=index)
    dl = download_deps(req, tmp_path / "wh", policy=policy, gate=gate("private", (index,)))
    assert dl.added == ("gamma-3.0-py3-none-any.whl",)
    req.write_text("--extra-index-url https://pypi.org/simple\ngamma\n")
    with pytest.raises(DepsSourceNotAllowed):
        download_deps(req, tmp_path / "wh2", policy=policy, gate=gate("private", (index,)))
    assert not (tmp_path / "wh2").exists()
    assert os.listdir(tmp_path / "wh") == ["gamma-3.0-py3-none-any.whl"]


def test_protected_set_does_not_block_export(tmp_path, uv_bin):
    venv = make_venv(tmp_path / "venv", uv=uv_bin)
    folder = tmp_path / "P"
    folder.mkdir()
    (folder / "requirements.txt").write_text("torch>=2\n")
    inst = DependencyInstaller(DepsPolicy(python=str(venv), protected=downgrade_protected()), gate("offline"))
    assert export_requirements(inst, [("P", folder)], tmp_path / "o.txt").requirements == ("torch>=2",)
