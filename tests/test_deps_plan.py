"""Overrides, blacklists, downgrade protection and conflict reports, planned without installing."""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.markers import default_environment

from manager.config import Config
from manager.deps.blacklist import downgrade_protected, load_blacklist, would_downgrade
from manager.deps.environment import TargetEnvironment, probe_environment
from manager.deps.errors import DepsListInvalid
from manager.deps.overrides import load_overrides
from manager.deps.plan import PackSource, Planner
from manager.deps.policy import DepsPolicy, deps_policy_from_config
from manager.layout import Layout
from support.wheels import build_wheel


def here_env(site_dirs: tuple[str, ...] = ()) -> TargetEnvironment:
    return TargetEnvironment(
        python=sys.executable,
        markers=default_environment(),
        site_dirs=site_dirs,
        platform=sysconfig.get_platform(),
        implementation=sys.implementation.name,
        version=sys.version_info[:2],
    )


def make_pack(root: Path, name: str, requirements: str) -> PackSource:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "requirements.txt").write_text(requirements)
    return PackSource(name, folder)


# --- pip_overrides.json ----------------------------------------------------------------
def test_classic_overrides_rename_and_replace(tmp_path):
    path = tmp_path / "pip_overrides.json"
    path.write_text(
        json.dumps({"opencv-python": "opencv-contrib-python-headless", "numpy<1.24>=1.18": "numpy==1.26.4"})
    )
    overrides = load_overrides(path)
    pack = make_pack(tmp_path, "P", "opencv-python>=4.5; python_version >= '3'\nnumpy<1.24>=1.18\nnumpy\n")
    policy = DepsPolicy(overrides=overrides)
    deps = Planner(policy, here_env()).plan_pack(pack, {})
    texts = [p.text for p in deps.planned]
    assert texts == ['opencv-contrib-python-headless>=4.5; python_version >= "3"', "numpy==1.26.4", "numpy"]
    assert [(o.original, o.result) for o in deps.overrides] == [
        ("opencv-python>=4.5; python_version >= '3'", 'opencv-contrib-python-headless>=4.5; python_version >= "3"'),
        ("numpy<1.24>=1.18", "numpy==1.26.4"),
    ]


def test_rich_overrides_index_url_and_local_path(tmp_path):
    build_wheel(tmp_path / "wheels", "insight", "0.7.3")
    data = {
        "insight": {"local_path": "wheels/insight-0.7.3-py3-none-any.whl"},
        "internal-lib": {"index_url": "https://pypi.corp.example/simple", "trusted_host": "pypi.corp.example"},
    }
    (tmp_path / "pip_overrides.json").write_text(json.dumps(data))
    policy = DepsPolicy(overrides=load_overrides(tmp_path / "pip_overrides.json"))
    pack = make_pack(tmp_path, "P", "insight>=0.7\ninternal_lib==2.0\n")
    planned = Planner(policy, here_env()).plan_pack(pack, {}).planned
    assert planned[0].kind == "path" and planned[0].text == str(tmp_path / "wheels/insight-0.7.3-py3-none-any.whl")
    assert planned[1].text == "internal_lib==2.0"
    assert (planned[1].index_url, planned[1].trusted_host) == ("https://pypi.corp.example/simple", "pypi.corp.example")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{not json", "is not valid JSON (line 1"),
        ("[1, 2]", "top level must be a JSON object"),
        ('{"a": {"index_url": "ftp://x"}}', "index_url must be an http(s)://"),
        ('{"a": {"color": "red"}}', "unknown field(s) color"),
        ('{"a": {"local_path": "x.tar.gz"}}', "local_path must name a .whl"),
        ('{"a": "not a >> requirement"}', "is not a valid requirement"),
        ('{"a": {"trusted_host": "h"}}', "trusted_host only makes sense with index_url"),
    ],
)
def test_broken_overrides_file_is_a_coded_error_and_left_untouched(tmp_path, text, fragment):
    path = tmp_path / "pip_overrides.json"
    path.write_text(text)
    with pytest.raises(DepsListInvalid) as info:
        load_overrides(path)
    assert fragment in info.value.message and str(path) in info.value.message
    assert path.read_text() == text


def test_missing_lists_are_empty(tmp_path):
    assert len(load_overrides(tmp_path / "none.json")) == 0
    assert load_blacklist(tmp_path / "none.list") == frozenset()


# --- blacklist and downgrade protection --------------------------------------------------
def test_blacklist_file_and_bad_line(tmp_path):
    path = tmp_path / "pip_blacklist.list"
    path.write_text("# never\nEvil_Pkg\n\nother.pkg  # why\n")
    assert load_blacklist(path) == {"evil-pkg", "other-pkg"}
    path.write_text("ok\nbad==1.0\n")
    with pytest.raises(DepsListInvalid) as info:
        load_blacklist(path)
    assert "line 2" in info.value.message


def test_downgrade_set_includes_builtins_and_classic_comma_string():
    protected = downgrade_protected("numpy, Pillow")
    assert {"torch", "torchvision", "torchaudio", "numpy", "pillow"} <= protected


@pytest.mark.parametrize(
    "spec, installed, expected",
    [
        ("==1.0", "2.0", True),
        ("<2", "2.0", True),
        ("<=1.5", "1.6", True),
        ("~=1.2", "2.0", True),
        ("==1.*", "2.0", True),
        (">=1,<2", "2.5", True),
        ("==3", "2.0", False),
        (">=3", "2", False),
        ("", "2", False),
        ("~=1.2", "1.1", False),
        (">=2.0", "2.1", False),
        ("!=2.0", "2.0", False),
    ],
)
def test_would_downgrade(spec, installed, expected):
    assert would_downgrade(spec, installed) is expected


def test_plan_skips_blacklisted_downgrades_and_other_markers(tmp_path):
    policy = DepsPolicy(blacklist=frozenset({"evil"}), protected=downgrade_protected(["beta"]))
    pack = make_pack(tmp_path, "ComfyUI-Foo", "evil\nbeta==1.0\ntorch<2\nalpha\nwinonly; sys_platform == 'nope'\n")
    deps = Planner(policy, here_env()).plan_pack(pack, {"beta": "2.0", "torch": "2.4.1"})
    assert [p.text for p in deps.planned] == ["alpha"]
    reasons = {s.requirement: (s.reason, s.message, s.installed) for s in deps.skipped}
    assert reasons["evil"][0] == "blacklisted"
    assert reasons["beta==1.0"][0] == "downgrade" and reasons["beta==1.0"][2] == "2.0"
    msg = reasons["beta==1.0"][1]
    assert "ComfyUI-Foo" in msg and "beta==1.0" in msg and "2.0 is installed" in msg
    assert reasons["torch<2"][0] == "downgrade" and "2.4.1" in reasons["torch<2"][1]
    assert reasons['winonly; sys_platform == "nope"'][0] == "marker"


def test_protected_upgrade_and_fresh_install_are_allowed(tmp_path):
    policy = DepsPolicy(protected=downgrade_protected(["beta"]))
    pack = make_pack(tmp_path, "P", "beta>=3\ntorch==2.1\n")
    deps = Planner(policy, here_env()).plan_pack(pack, {"beta": "2.0"})
    assert [p.text for p in deps.planned] == ["beta>=3", "torch==2.1"]


# --- conflicts ------------------------------------------------------------------------------
def test_conflicting_pins_are_reported_and_the_later_pack_wins(tmp_path):
    a = make_pack(tmp_path, "PackA", "numpy==1.26.4\nscipy>=1.10\nshared<2\n")
    b = make_pack(tmp_path, "PackB", "numpy>=2\nscipy<1.14\nshared\n")
    plan = Planner(DepsPolicy(), here_env()).plan([a, b], {})
    assert [c.name for c in plan.conflicts] == ["numpy"]
    conflict = plan.conflicts[0]
    assert conflict.winner == "PackB" and conflict.wanted == (("PackA", "==1.26.4"), ("PackB", ">=2"))
    assert "PackB wins" in conflict.message
    merged = {p.name: p for p in plan.merged}
    assert merged["numpy"].text == "numpy>=2" and merged["numpy"].packs == ("PackB",)
    assert merged["scipy"].text == "scipy<1.14,>=1.10" and merged["scipy"].packs == ("PackA", "PackB")
    assert merged["shared"].text == "shared<2"
    assert [(s.pack, s.reason) for s in plan.skipped] == [("PackA", "conflict")]
    assert any(line.startswith("conflict numpy") for line in plan.describe())
    assert plan.to_dict()["conflicts"][0]["winner"] == "PackB"


@pytest.mark.parametrize(
    "a, b, clash",
    [
        ("==1.0", "==1.0", False),
        ("<2", ">=2", True),
        ("<=2", ">=2", False),
        ("~=1.4", ">=2", True),
        ("==1.*", "<1.0.1", False),
        (">1.0", "<1.0.0.1", False),
        ("!=1.0", "==1.0", True),
    ],
)
def test_conflict_detection_edges(tmp_path, a, b, clash):
    pa = make_pack(tmp_path, "A", f"pkg{a}\n")
    pb = make_pack(tmp_path, "B", f"pkg{b}\n")
    plan = Planner(DepsPolicy(), here_env()).plan([pa, pb], {})
    assert bool(plan.conflicts) is clash


def test_a_bad_pack_is_reported_in_the_plan_not_raised(tmp_path):
    good = make_pack(tmp_path, "Good", "alpha\n")
    bad = make_pack(tmp_path, "Bad", "--index-url https://evil.example/simple\n")
    plan = Planner(DepsPolicy(), here_env()).plan([good, bad], {})
    assert [p.text for p in plan.merged] == ["alpha"]
    assert plan.errors[0].code == "deps_source_not_allowed" and "Bad" in plan.errors[0].message


# --- environment and policy -----------------------------------------------------------------
def test_probe_reads_markers_and_installed_versions_of_this_python():
    env = probe_environment(sys.executable)
    assert env.python_version == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert env.installed()["packaging"]
    assert env.markers["sys_platform"] == sys.platform


def test_policy_from_real_config_and_layout(tmp_path):
    layout = Layout.from_root(tmp_path / "ComfyUI")
    layout.manager_dir.mkdir(parents=True)
    layout.pip_blacklist_file.write_text("evil\n")
    layout.pip_overrides_file.write_text('{"a": "b"}')
    ini = layout.config_file
    ini.write_text(
        "[default]\nuse_uv = false\npip_index_url = https://pypi.corp.example/simple\n"
        "wheelhouse_dirs = /srv/wheels, file:///mnt/more\ndowngrade_blacklist = numpy, scipy\n"
        "[security]\nallowed_pip_sources = https://extra.corp.example/simple\n"
    )
    policy = deps_policy_from_config(Config.load(ini, env={}), layout)
    assert policy.use_uv is False and policy.index_url == "https://pypi.corp.example/simple"
    assert policy.wheelhouse_dirs == (layout.wheelhouse_dir, Path("/srv/wheels"), Path("/mnt/more"))
    assert {"numpy", "scipy", "torch"} <= policy.protected and policy.blacklist == {"evil"}
    assert len(policy.overrides) == 1
    assert policy.source_rules().allowed_prefixes == (
        "https://extra.corp.example/simple",
        "https://pypi.corp.example/simple",
    )
    unset = deps_policy_from_config(Config.load(tmp_path / "none.ini", env={}), layout)
    assert unset.use_uv is None and unset.python == sys.executable


# --- command lines and the child environment ---------------------------------------------------
def test_backend_commands_carry_only_the_given_sources():
    from manager.deps.backends.base import InstallArgs, InstallerChoice
    from manager.deps.backends.pip import PipBackend
    from manager.deps.backends.uv import UvBackend

    offline = InstallArgs(("alpha",), no_index=True, find_links=("/wh",), offline=True)
    uv = UvBackend(InstallerChoice("uv", "test", ("/bin/uv",), "/py"))
    assert uv.install_command(offline) == [
        "/bin/uv",
        "pip",
        "install",
        "--python",
        "/py",
        "--no-config",
        "--offline",
        "--no-index",
        "--find-links",
        "/wh",
        "alpha",
    ]
    private = InstallArgs(
        ("alpha",), index_url="https://mirror/simple", extra_index_urls=("https://x/simple",), trusted_hosts=("x",)
    )
    pip = PipBackend(InstallerChoice("pip", "test", ("/py", "-m", "pip"), "/py"))
    cmd = pip.install_command(private)
    assert cmd[:3] == ["/py", "-m", "pip"] and "--no-index" not in cmd
    assert cmd[cmd.index("--index-url") + 1] == "https://mirror/simple" and "--trusted-host" in cmd
    assert "--allow-insecure-host" in uv.install_command(private)


def test_commands_are_shown_without_credentials():
    from manager.deps.installer import shown_command

    shown = shown_command(["uv", "--index-url", "https://user:secret@mirror.corp/simple", "a b"])
    assert "secret" not in shown and "***@mirror.corp" in shown and "'a b'" in shown


def test_child_env_drops_package_source_settings(monkeypatch):
    import os

    from manager.deps.backends.base import child_env

    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://pypi.org/simple")
    monkeypatch.setenv("UV_INDEX_URL", "https://pypi.org/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    env = child_env()
    assert "PIP_EXTRA_INDEX_URL" not in env and "UV_INDEX_URL" not in env and "PIP_FIND_LINKS" not in env
    assert env["PIP_CONFIG_FILE"] == os.devnull and env["UV_NO_CONFIG"] == "1"
    assert env["HTTPS_PROXY"] == "http://proxy.corp:3128"  # proxies and certificates still apply


def test_wheelhouse_listing_cache_follows_folder_changes(tmp_path):
    import os

    from packaging.requirements import Requirement

    from manager.deps.wheelhouse import Wheelhouse

    folder = tmp_path / "wh"
    build_wheel(folder, "alpha", "1.0", requires=("beta>=2",))
    old = 1_600_000_000
    os.utime(folder, (old, old))
    folders: dict = {}
    requires: dict = {}
    env = here_env()
    first = Wheelhouse([folder], folder_cache=folders, requires_cache=requires)
    assert [m.requirement for m in first.missing([(Requirement("alpha"), "P")], env, {})] == ["beta>=2"]
    build_wheel(folder, "beta", "2.0")  # the folder's mtime moves: read again
    second = Wheelhouse([folder], folder_cache=folders, requires_cache=requires)
    assert second.missing([(Requirement("alpha"), "P")], env, {}) == []
    assert len(requires) == 2
