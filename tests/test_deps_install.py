"""Real installs: hand-built wheels, a wheelhouse, a PEP 503 index on 127.0.0.1, real venvs,
real uv and real pip, driven through ``DependencyInstaller`` in every network mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from manager.deps.backends.detect import detect_installer
from manager.deps.blacklist import downgrade_protected
from manager.deps.errors import (
    DepsInstallerUnavailable,
    DepsInstallFailed,
    DepsMissingWheels,
    DepsRequirementInvalid,
    DepsSourceNotAllowed,
)
from manager.deps.installer import DependencyInstaller
from manager.deps.overrides import load_overrides
from manager.deps.policy import DepsPolicy
from manager.errors import NetworkBlocked, OfflineModeEnabled
from manager.network import NetworkGate, NetworkMode, NetworkPolicy
from support.wheels import (
    ConnectTrap,
    Pkg,
    build_wheel,
    build_wheels,
    installed_names,
    installed_version,
    make_venv,
    serve_simple_index,
)

BASIC = [
    Pkg("alpha", "1.0", ("beta>=1",)),
    Pkg("beta", "1.0"),
    Pkg("beta", "2.0"),
    Pkg("gamma", "3.0"),
    Pkg("evil", "1.0"),
]


@pytest.fixture(autouse=True)
def _own_caches(own_caches):
    return own_caches


@pytest.fixture
def wheelhouse(tmp_path) -> Path:
    folder = tmp_path / "wheelhouse"
    build_wheels(folder, BASIC)
    return folder


@pytest.fixture
def venv(tmp_path, uv_bin) -> Path:
    return make_venv(tmp_path / "venv", uv=uv_bin)


@pytest.fixture(scope="session")
def seed_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uv-seed-cache")


@pytest.fixture
def venv_pip(tmp_path, uv_bin, seed_cache) -> Path:
    return make_venv(tmp_path / "venv-pip", with_pip=True, uv=uv_bin, cache_dir=seed_cache)


@pytest.fixture
def trap(monkeypatch):
    """Every HTTP(S) request of uv/pip goes to this counting listener instead of anywhere else."""
    listener = ConnectTrap()
    for key, value in listener.proxy_env().items():
        monkeypatch.setenv(key, value)
    yield listener
    listener.close()


def gate(mode: str, mirrors: tuple[str, ...] = ()) -> NetworkGate:
    return NetworkGate(NetworkPolicy(mode=NetworkMode(mode), private_mirrors=mirrors))


def installer(python: Path, mode: str = "offline", *, mirrors: tuple[str, ...] = (), **kw) -> DependencyInstaller:
    policy = DepsPolicy(python=str(python), **kw)
    return DependencyInstaller(policy, gate(mode, mirrors))


def pack(root: Path, text: str, name: str = "ComfyUI-Demo") -> Path:
    folder = root / "custom_nodes" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requirements.txt").write_text(text)
    return folder


# --- offline wheelhouse ---------------------------------------------------------------------
@pytest.mark.parametrize("use_uv", [True, False])
def test_offline_install_from_wheelhouse_with_uv_and_pip(
    tmp_path, venv_pip, wheelhouse, trap, socket_audit_log, use_uv
):
    lines: list[str] = []
    inst = installer(venv_pip, use_uv=use_uv, wheelhouse_dirs=(wheelhouse,))
    result = inst.install_pack_requirements(pack(tmp_path, "alpha\nbeta<2\n"), "ComfyUI-Demo", lines.append)
    assert result.ran and result.installer.name == ("uv" if use_uv else "pip")
    assert installed_version(venv_pip, "alpha") == "1.0" and installed_version(venv_pip, "beta") == "1.0"
    cmd = result.commands[0]
    assert "--no-index" in cmd and f"--find-links {wheelhouse}" in cmd
    assert ("--offline" in cmd) is use_uv
    assert any(line.startswith("[deps] $ ") for line in lines) and len(lines) > 2
    assert trap.count == 0  # uv/pip opened no connection at all
    assert socket_audit_log.inet_connects() == []


def test_offline_missing_wheel_fails_before_running_anything(tmp_path, venv, wheelhouse, trap, socket_audit_log):
    build_wheel(wheelhouse, "delta", "1.0", requires=("epsilon>=2", "beta>=5"))
    inst = installer(venv, wheelhouse_dirs=(wheelhouse,))
    lines: list[str] = []
    with pytest.raises(DepsMissingWheels) as info:
        inst.install_pack_requirements(pack(tmp_path, "alpha\ndelta\nzeta==1.2\n"), "ComfyUI-Demo", lines.append)
    err = info.value
    assert err.details["missing"] == ["zeta==1.2", "epsilon>=2", "beta>=5"]
    assert err.details["needed_by"] == ["ComfyUI-Demo", "delta 1.0", "delta 1.0"]
    assert "wheelhouse has 1.0, 2.0" in err.message and "ComfyUI-Demo" in err.message
    assert "cm-cli.py download-deps" in err.hint and f"pip download -d {wheelhouse}" in err.hint
    assert "zeta==1.2" in err.hint and "'epsilon>=2'" in err.hint
    assert not any(line.startswith("[deps] $") for line in lines)  # no installer ran
    assert installed_version(venv, "alpha") is None
    assert trap.count == 0 and socket_audit_log.inet_connects() == []


def test_offline_already_installed_requirements_need_no_wheelhouse(tmp_path, venv, wheelhouse):
    inst = installer(venv, wheelhouse_dirs=(wheelhouse,))
    inst.install_pack_requirements(pack(tmp_path, "alpha\n", "First"), "First")
    empty = installer(venv, wheelhouse_dirs=(tmp_path / "no-such-folder",))
    result = empty.install_pack_requirements(pack(tmp_path, "alpha>=1\nbeta\n", "Second"), "Second")
    assert not result.ran and result.installer is None


def test_offline_direct_url_requirement_is_taken_from_the_wheelhouse(tmp_path, venv, wheelhouse):
    inst = installer(venv, wheelhouse_dirs=(wheelhouse,), allowed_sources=("https://files.corp.example",))
    folder = pack(tmp_path, "gamma @ https://files.corp.example/gamma-3.0-py3-none-any.whl\n")
    result = inst.install_pack_requirements(folder, "ComfyUI-Demo")
    assert result.requirements == ("gamma",) and installed_version(venv, "gamma") == "3.0"


# --- index on 127.0.0.1: public and private modes -----------------------------------------
@pytest.mark.parametrize("use_uv", [True, False])
def test_public_mode_installs_from_local_index(tmp_path, venv_pip, http_server, use_uv):
    index = serve_simple_index(http_server, build_wheels(tmp_path / "dist", BASIC))
    inst = installer(venv_pip, "public", use_uv=use_uv, index_url=index)
    result = inst.install_pack_requirements(pack(tmp_path, "alpha\n"), "ComfyUI-Demo")
    assert result.installer.name == ("uv" if use_uv else "pip")
    assert installed_version(venv_pip, "beta") == "2.0"
    assert http_server.count("/simple/alpha/") >= 1
    assert http_server.count("/simple-files/beta-2.0-py3-none-any.whl") >= 1


@pytest.mark.parametrize("use_uv", [True, False])
def test_private_mode_uses_only_the_mirror_never_pypi(tmp_path, venv_pip, http_server, monkeypatch, use_uv):
    index = serve_simple_index(http_server, build_wheels(tmp_path / "dist", BASIC))
    listener = ConnectTrap()  # HTTPS to anywhere but 127.0.0.1 lands here
    monkeypatch.setenv("HTTPS_PROXY", listener.url)
    monkeypatch.setenv("HTTP_PROXY", listener.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://pypi.org/simple")  # must be ignored
    monkeypatch.setenv("UV_EXTRA_INDEX_URL", "https://pypi.org/simple")
    lines: list[str] = []
    try:
        inst = installer(venv_pip, "private", mirrors=(index,), use_uv=use_uv, index_url=index)
        result = inst.install_pack_requirements(pack(tmp_path, "gamma\n"), "ComfyUI-Demo", lines.append)
        assert installed_version(venv_pip, "gamma") == "3.0"
        assert f"--index-url {index}" in result.commands[0]
        assert listener.count == 0
        assert not any("pypi.org" in line or "/opt/" in line for line in lines)
        if not use_uv:
            assert f"Looking in indexes: {index}" in lines
    finally:
        listener.close()


def test_private_mode_without_an_allowed_index_is_refused_before_running(tmp_path, venv, http_server):
    inst = installer(venv, "private", mirrors=("https://mirror.corp.example",))
    with pytest.raises(NetworkBlocked) as info:
        inst.install_pack_requirements(pack(tmp_path, "gamma\n"), "ComfyUI-Demo")
    assert "pip_index_url" in info.value.hint and "pypi.org" in info.value.message
    assert installed_version(venv, "gamma") is None


def test_offline_mode_refuses_download_deps(tmp_path):
    from manager.deps.export import download_deps

    (tmp_path / "req.txt").write_text("alpha\n")
    with pytest.raises(OfflineModeEnabled):
        download_deps(tmp_path / "req.txt", tmp_path / "wh", policy=DepsPolicy(), gate=gate("offline"))
    assert not (tmp_path / "wh").exists()


# --- overrides, blacklist, downgrade protection, sources: each with a real install --------------
def test_override_rename_installs_the_replacement(tmp_path, venv, wheelhouse):
    (tmp_path / "pip_overrides.json").write_text(json.dumps({"opencv-python": "gamma"}))
    inst = installer(venv, wheelhouse_dirs=(wheelhouse,), overrides=load_overrides(tmp_path / "pip_overrides.json"))
    result = inst.install_pack_requirements(pack(tmp_path, "opencv-python>=2\n"), "ComfyUI-Demo")
    assert result.requirements == ("gamma>=2",)
    assert [(o.original, o.result) for o in result.overrides] == [("opencv-python>=2", "gamma>=2")]
    assert installed_version(venv, "gamma") == "3.0"


def test_override_index_url_takes_that_package_from_its_own_index(tmp_path, venv, http_server):
    main = serve_simple_index(http_server, build_wheels(tmp_path / "main", BASIC), prefix="/main/simple")
    internal = serve_simple_index(
        http_server, [build_wheel(tmp_path / "corp", "corp-lib", "4.2")], prefix="/corp/simple"
    )
    (tmp_path / "pip_overrides.json").write_text(json.dumps({"corp-lib": {"index_url": internal}}))
    inst = installer(venv, "public", index_url=main, overrides=load_overrides(tmp_path / "pip_overrides.json"))
    result = inst.install_pack_requirements(pack(tmp_path, "corp_lib\nalpha\n"), "ComfyUI-Demo")
    assert installed_version(venv, "corp_lib") == "4.2" and installed_version(venv, "alpha") == "1.0"
    assert f"--index-url {internal}" in result.commands[0] and "corp_lib" in result.commands[0]
    assert f"--index-url {main}" in result.commands[1]
    assert http_server.count("/main/simple/corp-lib/") == 0


def test_override_local_path_installs_that_wheel_offline(tmp_path, venv, wheelhouse):
    manager_dir = tmp_path / "__manager"
    build_wheel(manager_dir / "wheels", "special", "9.1")
    (manager_dir / "pip_overrides.json").write_text(
        json.dumps({"special": {"local_path": "wheels/special-9.1-py3-none-any.whl"}})
    )
    inst = installer(venv, wheelhouse_dirs=(wheelhouse,), overrides=load_overrides(manager_dir / "pip_overrides.json"))
    result = inst.install_pack_requirements(pack(tmp_path, "special>=9\n"), "ComfyUI-Demo")
    assert installed_version(venv, "special") == "9.1"
    assert str(manager_dir / "wheels" / "special-9.1-py3-none-any.whl") in result.commands[0]


def test_blacklisted_package_is_never_installed(tmp_path, venv, wheelhouse):
    lines: list[str] = []
    inst = installer(venv, wheelhouse_dirs=(wheelhouse,), blacklist=frozenset({"evil"}))
    result = inst.install_pack_requirements(pack(tmp_path, "gamma\nEvil==1.0\n"), "ComfyUI-Demo", lines.append)
    assert installed_version(venv, "gamma") == "3.0" and installed_version(venv, "evil") is None
    assert [(s.requirement, s.reason) for s in result.skipped] == [("Evil==1.0", "blacklisted")]
    assert any("skipped Evil==1.0" in line for line in lines)


def test_protected_package_is_not_downgraded_but_others_are(tmp_path, venv, wheelhouse):
    inst = installer(venv, wheelhouse_dirs=(wheelhouse,), protected=downgrade_protected(["beta"]))
    inst.install_pack_requirements(pack(tmp_path, "beta==2.0\ngamma\n", "Newer"), "Newer")
    assert installed_version(venv, "beta") == "2.0"
    result = inst.install_pack_requirements(pack(tmp_path, "beta==1.0\n", "ComfyUI-Old"), "ComfyUI-Old")
    assert installed_version(venv, "beta") == "2.0" and not result.ran
    (warning,) = result.warnings()
    assert "ComfyUI-Old" in warning and "beta==1.0" in warning and "2.0 is installed" in warning
    unprotected = installer(venv, wheelhouse_dirs=(wheelhouse,), protected=frozenset())
    unprotected.install_pack_requirements(pack(tmp_path, "beta==1.0\n", "ComfyUI-Old2"), "ComfyUI-Old2")
    assert installed_version(venv, "beta") == "1.0"


def test_pack_index_option_needs_allowed_pip_sources(tmp_path, venv, http_server):
    main = serve_simple_index(http_server, build_wheels(tmp_path / "main", BASIC), prefix="/main/simple")
    extra = serve_simple_index(http_server, [build_wheel(tmp_path / "x", "extra-pkg", "1.5")], prefix="/x/simple")
    folder = pack(tmp_path, f"--extra-index-url {extra}\nextra-pkg\n")
    refused = installer(venv, "public", index_url=main)
    with pytest.raises(DepsSourceNotAllowed) as info:
        refused.install_pack_requirements(folder, "ComfyUI-Demo")
    assert "ComfyUI-Demo: requirements.txt line 1" in info.value.message
    assert http_server.count("/x/simple/extra-pkg/") == 0
    allowed = installer(venv, "public", index_url=main, allowed_sources=(extra,))
    result = allowed.install_pack_requirements(folder, "ComfyUI-Demo")
    assert installed_version(venv, "extra_pkg") == "1.5" and f"--extra-index-url {extra}" in result.commands[0]


def test_bad_line_is_a_coded_error_and_nothing_runs(tmp_path, venv, wheelhouse):
    inst = installer(venv, wheelhouse_dirs=(wheelhouse,))
    with pytest.raises(DepsRequirementInvalid) as info:
        inst.install_pack_requirements(pack(tmp_path, "gamma\n--global-option=--evil\n"), "ComfyUI-Demo")
    assert info.value.details["line_no"] == 2 and "ComfyUI-Demo" in info.value.message
    assert installed_version(venv, "gamma") is None


def test_installer_failure_is_coded_with_the_output_tail(tmp_path, venv, wheelhouse):
    # each requirement exists in the wheelhouse (the pre-check passes), but they cannot resolve together
    build_wheel(wheelhouse, "needs-two", "1.0", requires=("beta>=2",))
    inst = installer(venv, wheelhouse_dirs=(wheelhouse,))
    with pytest.raises(DepsInstallFailed) as info:
        inst.install_pack_requirements(pack(tmp_path, "needs-two\nbeta<2\n"), "ComfyUI-Demo")
    assert info.value.details["returncode"] != 0 and info.value.details["output_tail"]
    assert info.value.details["command"].startswith(inst.choice.command[0])


# --- detection ------------------------------------------------------------------------------
def test_detection_runs_the_tools_and_records_why(tmp_path, venv, venv_pip, uv_bin):
    assert detect_installer(str(venv_pip), None).name == "uv"
    chosen = detect_installer(str(venv_pip), False)
    assert chosen.name == "pip" and "use_uv = false" in chosen.reason and chosen.version.startswith("pip ")
    no_pip = detect_installer(str(venv), False)  # pip missing in a uv-style venv
    assert no_pip.name == "uv" and "pip does not run" in no_pip.reason
    no_uv = detect_installer(str(venv_pip), True, uv_search=[("/nonexistent/uv",)])
    assert no_uv.name == "pip" and "uv was not found" in no_uv.reason
    with pytest.raises(DepsInstallerUnavailable) as info:
        detect_installer(str(venv), None, uv_search=[])
    assert "neither uv nor pip" in info.value.message and "python_executable" in info.value.hint


def test_pip_backend_is_used_when_uv_is_absent(tmp_path, venv_pip, wheelhouse):
    inst = DependencyInstaller(
        DepsPolicy(python=str(venv_pip), wheelhouse_dirs=(wheelhouse,)), gate("offline"), uv_search=[]
    )
    result = inst.install_pack_requirements(pack(tmp_path, "gamma\n"), "ComfyUI-Demo")
    assert result.installer.name == "pip" and installed_version(venv_pip, "gamma") == "3.0"


def test_missing_python_is_reported(tmp_path):
    with pytest.raises(DepsInstallerUnavailable) as info:
        detect_installer(str(tmp_path / "nope" / "python"), None)
    assert "python_executable" in info.value.hint


def test_installed_names_match_what_the_installer_reads(tmp_path, venv, wheelhouse):
    inst = installer(venv, wheelhouse_dirs=(wheelhouse,))
    inst.install_pack_requirements(pack(tmp_path, "alpha\n"), "ComfyUI-Demo")
    assert inst.environment.installed() == installed_names(venv)
    assert sys.executable != inst.environment.python
