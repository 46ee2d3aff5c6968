"""The [mirrors] section: config parsing, rule order, effective endpoints, and the gate, git, pip
and model downloads going to a real loopback server standing in for the company mirror."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from manager.config import Config
from manager.context import Manager
from manager.errors import ConfigError, ConfigUnknownKey, NetworkBlocked, OfflineModeEnabled
from manager.mirrors import effective_endpoints, endpoint_report, mirror_rules, public_url, rewrite_url
from manager.network import run_sync
from support.gitrepos import make_repo, serve_smart_http


def write_config(root: Path, text: str) -> Path:
    path = root / "user" / "__manager" / "config.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def manager(root: Path, text: str, env: dict[str, str] | None = None) -> Manager:
    write_config(root, text)
    return Manager.standalone(root, env=env or {})


# --- config ----------------------------------------------------------------------------------
def test_mirrors_section_is_read_with_sources(tmp_path: Path) -> None:
    ini = write_config(
        tmp_path,
        "[default]\nnetwork_mode = private\n[mirrors]\ngithub = https://git.corp/mirror/github\n"
        "rewrites =\n    https://civitai.com/ -> https://models.corp/civitai/\n    https://a.example/ -> file:///srv/a/\n",
    )
    cfg = Config.load(ini, env={})
    assert cfg["github"] == "https://git.corp/mirror/github" and cfg.origin("github") == f"{ini}:4"
    assert cfg["rewrites"] == (
        "https://civitai.com/ -> https://models.corp/civitai/",
        "https://a.example/ -> file:///srv/a/",
    )
    assert cfg.problems == () and cfg.notes == ()
    assert mirror_rules(cfg) == (
        ("https://civitai.com/", "https://models.corp/civitai/"),
        ("https://a.example/", "file:///srv/a/"),
        ("https://github.com", "https://git.corp/mirror/github"),
    )


def test_classic_endpoint_variables_keep_their_meaning_below_cm_variables(tmp_path: Path) -> None:
    ini = write_config(tmp_path, "[mirrors]\ngithub = https://file.corp/gh\n")
    env = {"GITHUB_ENDPOINT": "https://ghproxy.corp/https://github.com", "HF_ENDPOINT": "https://hf-mirror.corp"}
    cfg = Config.load(ini, env=env)
    assert (cfg["github"], cfg.origin("github")) == ("https://ghproxy.corp/https://github.com", "GITHUB_ENDPOINT")
    assert (cfg["huggingface"], cfg.source("huggingface")) == ("https://hf-mirror.corp", "env")
    assert rewrite_url("https://github.com/owner/pack", mirror_rules(cfg)) == (
        "https://ghproxy.corp/https://github.com/owner/pack"
    )
    cfg = Config.load(ini, env={**env, "CM_GITHUB": "https://cm.corp/gh"})
    assert (cfg["github"], cfg.origin("github")) == ("https://cm.corp/gh", "CM_GITHUB")


def test_a_bad_rewrite_line_is_config_invalid_naming_the_line(tmp_path: Path) -> None:
    ini = write_config(
        tmp_path, "[mirrors]\nrewrites =\n    https://ok.example/ -> https://m.corp/\n    github.com => x\n"
    )
    with pytest.raises(ConfigError) as info:
        Config.load(ini, env={})
    assert info.value.code == "config_invalid" and f"{ini}:2" in info.value.message
    assert "FROM -> TO" in info.value.hint


def test_unknown_key_in_mirrors_is_reported_and_mirror_keys_elsewhere_are_ignored(tmp_path: Path) -> None:
    ini = write_config(tmp_path, "[mirrors]\ngithb = https://x.corp\n")
    with pytest.raises(ConfigUnknownKey) as info:
        Config.load(ini, env={})
    assert "github" in info.value.message  # the close match
    write_config(tmp_path, "[default]\ngithub = https://x.corp\n[mirrors]\nnetwork_mode = offline\n")
    cfg = Config.load(ini, env={})
    assert cfg["github"] == "" and cfg["network_mode"] == "public"
    assert any("[mirrors]" in note for note in cfg.notes) and any("[default]" in n for n in cfg.notes)


def test_saving_a_mirror_writes_the_mirrors_section(tmp_path: Path) -> None:
    ini = write_config(tmp_path, "[default]\nnetwork_mode = private\n")
    new = Config.load(ini, env={}).save({"pypi": "https://nexus.corp/simple"})
    assert ini.read_text() == "[default]\nnetwork_mode = private\n\n[mirrors]\npypi = https://nexus.corp/simple\n"
    assert new["pypi"] == "https://nexus.corp/simple"


def test_credentials_in_mirrors_are_masked() -> None:
    cfg = Config.load(
        None, env={}, cli={"github": "https://tok@git.corp/gh", "rewrites": "https://a.b/ -> https://u:p@m.corp/"}
    )
    shown = cfg.values()
    assert shown["github"] == "https://***@git.corp/gh" and shown["rewrites"] == (
        "https://a.b/ -> https://***@m.corp/",
    )
    assert effective_endpoints(cfg)["github"] == "https://***@git.corp/gh"


# --- rule order and the effective endpoints --------------------------------------------------
def test_rule_order_rewrites_then_default_channel_then_families() -> None:
    cfg = Config.load(
        None,
        env={},
        cli={
            "rewrites": "https://raw.githubusercontent.com/corp/ -> https://special.corp/",
            "raw_github": "https://raw.corp",
            "channel_url": "https://raw.githubusercontent.com/corp/channel",
            "default_cache_as_channel_url": "true",
        },
    )
    rules = mirror_rules(cfg)
    default_file = "https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main/custom-node-list.json"
    # the default channel is read from channel_url, itself rewritten by the explicit line
    assert rewrite_url(default_file, rules) == "https://special.corp/channel/custom-node-list.json"
    assert rewrite_url("https://raw.githubusercontent.com/other/x.json", rules) == "https://raw.corp/other/x.json"
    # prefixes match at a path boundary only
    assert rewrite_url("https://raw.githubusercontent.com.evil.example/x", rules) == (
        "https://raw.githubusercontent.com.evil.example/x"
    )
    ends = effective_endpoints(cfg)
    assert ends["default_channel"] == "https://special.corp/channel"
    assert ends["channel"] == "https://special.corp/channel"
    report = {e.family: e for e in endpoint_report(cfg)}
    assert report["default_channel"].rule == "default_cache_as_channel_url"
    assert report["channel"].rule.startswith("rewrites")
    assert not report["github"].rewritten and report["github"].rule == ""


def test_public_url_undoes_the_rewrite_a_mirrored_install_recorded() -> None:
    """A pack installed through ``[mirrors] github`` has the mirror's URL as origin; a bundle made
    from it must name the public URL (issue 20's joint round trip found it under the mirror's host)."""
    cfg = Config.load(
        None,
        env={},
        cli={
            "rewrites": "https://gitlab.com/ -> https://special.corp/gitlab/",
            "github": "http://comfy-mirror.corp/git/github.com/",
        },
    )
    rules = mirror_rules(cfg)
    for public in ("https://github.com/o/pack", "https://gitlab.com/g/sub/pack.git"):
        mirrored = rewrite_url(public, rules)
        assert mirrored != public and public_url(mirrored, rules) == public
    # a URL no rule made, and one that only shares the host or a longer path segment, stay as they are
    for other in (
        "https://github.com/o/pack",
        "http://comfy-mirror.corp/other/pack",
        "http://comfy-mirror.corp/git/github.com.evil/pack",
    ):
        assert public_url(other, rules) == other
    assert public_url("http://comfy-mirror.corp/git/github.com/o/pack", ()) == (
        "http://comfy-mirror.corp/git/github.com/o/pack"
    )


def test_default_cache_as_channel_url_off_or_default_channel_adds_no_rule() -> None:
    assert mirror_rules(Config.load(None, env={}, cli={"channel_url": "https://c.corp/ch"})) == ()
    assert mirror_rules(Config.load(None, env={}, cli={"default_cache_as_channel_url": "true"})) == ()
    on = Config.load(None, env={}, cli={"channel_url": "file:///srv/ch", "default_cache_as_channel_url": "true"})
    assert effective_endpoints(on)["default_channel"] == "file:///srv/ch"
    assert endpoint_report(on)[-1].rule == "default_cache_as_channel_url"


def test_effective_endpoints_of_every_family(tmp_path: Path) -> None:
    cfg = Config.load(
        None,
        env={"HF_ENDPOINT": "https://hf.corp"},
        cli={
            "github": "https://gh.corp",
            "raw_github": "https://raw.corp",
            "registry": "https://reg.corp/api",
            "pypi": "https://nexus.corp/simple",
        },
    )
    assert effective_endpoints(cfg) == {
        "github": "https://gh.corp",
        "raw_github": "https://raw.corp",
        "registry": "https://reg.corp/api",
        "pypi": "https://nexus.corp/simple",
        "huggingface": "https://hf.corp",
        "channel": "https://raw.corp/ltdrdata/ComfyUI-Manager/main",
        "default_channel": "https://raw.corp/ltdrdata/ComfyUI-Manager/main",
    }
    rules = {e.family: e.rule for e in endpoint_report(cfg)}
    assert rules["huggingface"] == "huggingface (HF_ENDPOINT)" and rules["channel"] == "raw_github (command line)"


# --- the gate, with a real loopback server as the mirror ----------------------------------------
def test_private_mode_reaches_a_rewritten_mirror_and_refuses_the_rest(comfy_tree: Path, http_server) -> None:
    http_server.static("/raw/ltdrdata/ComfyUI-Manager/main/alter-list.json", json.dumps({"items": []}))
    http_server.static(
        "/pypi/simple/demo-pkg/", "<html><a href='demo_pkg-1.0.whl'>x</a></html>", content_type="text/html"
    )
    m = manager(
        comfy_tree,
        f"[default]\nnetwork_mode = private\n[mirrors]\nraw_github = {http_server.url('/raw')}\n"
        f"pypi = {http_server.url('/pypi/simple')}\n",
    )
    got = run_sync(
        m.gate.get("https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main/alter-list.json", purpose="channel")
    )
    assert json.loads(got.body) == {"items": []}
    page = run_sync(m.gate.get("https://pypi.org/simple/demo-pkg/", purpose="pip"))
    assert b"demo_pkg-1.0.whl" in page.body
    assert http_server.count("/pypi/simple/demo-pkg/") == 1
    # the installer's index goes through the same rewrite
    assert m.gate.decide("https://pypi.org/simple", "pip") == http_server.url("/pypi/simple")
    with pytest.raises(NetworkBlocked) as info:
        m.gate.decide("https://huggingface.co/x/y.safetensors", "model")
    assert "[mirrors]" in info.value.hint


def test_offline_mode_still_refuses_a_rewritten_url_before_any_socket(
    comfy_tree: Path, http_server, socket_audit_log
) -> None:
    m = manager(comfy_tree, f"[default]\nnetwork_mode = offline\n[mirrors]\ngithub = {http_server.url('/gh')}\n")
    before = len(socket_audit_log.inet_connects())
    with pytest.raises(OfflineModeEnabled):
        run_sync(m.gate.get("https://github.com/owner/pack/archive/main.zip"))
    assert len(socket_audit_log.inet_connects()) == before and http_server.requests == []


def test_hf_endpoint_sends_a_model_download_to_the_mirror(comfy_tree: Path, http_server, tmp_path: Path) -> None:
    body = b"weights" * 1000
    http_server.static("/hf/org/model/resolve/main/m.safetensors", body, content_type="application/octet-stream")
    m = manager(comfy_tree, "[default]\nnetwork_mode = public\n", env={"HF_ENDPOINT": http_server.url("/hf")})
    dest = tmp_path / "m.safetensors"
    run_sync(m.gate.download("https://huggingface.co/org/model/resolve/main/m.safetensors", dest))
    assert dest.read_bytes() == body


def test_a_file_mirror_works_offline(comfy_tree: Path, tmp_path: Path) -> None:
    folder = tmp_path / "raw-mirror" / "ltdrdata" / "ComfyUI-Manager" / "main"
    folder.mkdir(parents=True)
    (folder / "alter-list.json").write_text('{"items": [1]}')
    m = manager(
        comfy_tree, f"[default]\nnetwork_mode = offline\n[mirrors]\nraw_github = {(tmp_path / 'raw-mirror').as_uri()}\n"
    )
    got = run_sync(
        m.gate.get("https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main/alter-list.json", purpose="channel")
    )
    assert json.loads(got.body) == {"items": [1]}


@pytest.mark.usefixtures("git_bin")
def test_git_remotes_go_through_the_github_mirror(comfy_tree: Path, http_server, tmp_path: Path) -> None:
    upstream = make_repo(tmp_path / "srv" / "owner" / "example-pack")
    url = serve_smart_http(http_server, upstream.path.parent.parent, "owner/example-pack", prefix="/mirror")
    assert url == http_server.url("/mirror/owner/example-pack")
    m = manager(
        comfy_tree,
        "[default]\nnetwork_mode = private\n",
        env={"GITHUB_ENDPOINT": http_server.url("/mirror")},
    )
    dest = comfy_tree / "custom_nodes" / "example-pack"
    st = m.git.clone("https://github.com/owner/example-pack", dest)
    assert st.commit == upstream.commits[-1]
    assert http_server.count("/mirror/owner/example-pack/info/refs") >= 1
    # a later fetch of the recorded github remote goes through the mirror too
    assert m.git.fetch(dest) == http_server.url("/mirror/owner/example-pack")
    with pytest.raises(NetworkBlocked):
        m.git.clone("https://gitlab.com/owner/example-pack", tmp_path / "other")
