"""Issue 17's hostile classes through real parts: the standalone app over a demo tree, real
config files read by the Manager. Each case ends in a coded refusal and an unchanged tree
(checksum listing before and after; only the audit log and the lock files may change).

- ``channel-path``: channels the admin did not name, or folders that hold no channel;
- ``config-file``: config.ini with repeated sections and keys that would lower security;
- ``duplicate-keys``: request bodies that name one key twice, at any depth;
- ``malformed-request``: a request line or header beyond aiohttp's limits (standalone server).
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from aiohttp import web

from manager.api.standalone import EnvelopeAppRunner, build_app
from manager.cli.main import main as cli_main
from support import treesum
from support.api_tree import demo_root, make_api, write_config

PREFIX = "/offline-manager/v1"
LOCKS = "demo/ComfyUI/user/__manager/locks"
AUDIT = "demo/ComfyUI/user/__manager/logs"


async def _refused(resp, status: int, code: str) -> dict:
    doc = json.loads(await resp.text())
    assert doc.get("ok") is False, doc
    err = doc["error"]
    assert resp.status == status and err["code"] == code, (resp.status, err)
    assert err["message"] and err["hint"], err
    return err


def _unchanged(before: dict[str, str], tmp_path: Path) -> None:
    diff = treesum.changes(before, treesum.listing(tmp_path)).outside(LOCKS, AUDIT)
    assert not diff, diff.describe()


@pytest.fixture
def tree(tmp_path: Path, aiohttp_client):
    """``make(security=..., default=...) -> (client, api, root)`` over a fresh demo tree."""
    apis = []

    async def make(*, security: str = "", default: str = "", config_text: str | None = None):
        root = demo_root(tmp_path)
        path = write_config(root, security=security, default=default)
        if config_text is not None:
            path.write_text(config_text.replace("{channel}", (root.parent / "demo-channel").as_uri()), "utf-8")
        victim = root / "custom_nodes" / "victim-pack"  # an installed pack a hostile request would act on
        victim.mkdir(parents=True, exist_ok=True)
        (victim / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n", "utf-8")
        api = make_api(root)
        apis.append(api)
        client = await aiohttp_client(build_app(api))
        return client, api, root

    yield make
    for api in apis:
        api.manager.queue.stop(timeout=10)


def _other_channel(tmp_path: Path) -> Path:
    """A real channel (a copy of the demo's) in a folder neither channels.list nor allowed_channels names."""
    dest = tmp_path / "elsewhere" / "channel"
    shutil.copytree(tmp_path / "demo" / "demo-channel", dest)
    return dest


# --- channel-path ---------------------------------------------------------------------------------
CHANNEL_DOORS = [
    pytest.param(lambda url: (PREFIX + "/channels", {"url": url}), id="v1-channels"),
    pytest.param(lambda url: ("/manager/channel_url_list", {"value": url}), id="classic-channel_url_list"),
    pytest.param(lambda url: (PREFIX + "/config", {"changes": {"channel_url": url}}), id="v1-config"),
    pytest.param(lambda url: (PREFIX + "/config", {"changes": {"Channel-URL": url}}), id="v1-config-spelling"),
]


@pytest.mark.hostile("channel-path")
@pytest.mark.parametrize("door", CHANNEL_DOORS)
async def test_an_unlisted_local_channel_needs_the_local_path_flag(door, tree, tmp_path: Path) -> None:
    """Finding 2: with allow_git_url_install = false a folder the admin did not name cannot
    become the channel (its entries would be cloned and their install.py run)."""
    client, api, root = await tree()
    url = _other_channel(tmp_path).as_uri()
    config_before = api.manager.config.path.read_bytes()
    before = treesum.listing(tmp_path)
    path, body = door(url)
    err = await _refused(await client.post(path, json=body), 403, "security_denied")
    assert "allow_git_url_install" in err["message"] + err["hint"], err
    assert "channels.list" in err["hint"], err
    assert api.manager.config.path.read_bytes() == config_before
    assert api.manager.config["channel_url"] != url
    _unchanged(before, tmp_path)


HOSTILE_CHANNELS = [
    # (id, url builder given tmp_path, security config, status, code)
    pytest.param(lambda t: "file:///etc", "", 403, "security_denied", id="etc-flag-off"),
    pytest.param(lambda t: "file:///etc", "allow_git_url_install = true", 400, "channel_invalid", id="etc-flag-on"),
    pytest.param(lambda t: "FILE:///etc", "", 403, "security_denied", id="etc-upper-scheme"),
    pytest.param(lambda t: "/etc", "allow_git_url_install = true", 400, "channel_invalid", id="etc-bare-path"),
    pytest.param(
        lambda t: (t / "demo" / "demo-channel").as_uri() + "/../../../../../../etc",
        "",
        403,
        "security_denied",
        id="dotdot-out-of-listed",
    ),
    pytest.param(
        lambda t: (t / "demo" / "demo-channel").as_uri() + "/../demo-channel",
        "allow_git_url_install = true",
        400,
        "channel_invalid",
        id="dotdot-back-in",
    ),
    pytest.param(lambda t: "file://fileserver/share/channel", "", 400, "channel_invalid", id="file-remote-host"),
    pytest.param(lambda t: "ftp://mirror.example/channel", "", 400, "channel_invalid", id="ftp-scheme"),
    pytest.param(lambda t: str(t / "nowhere"), "allow_git_url_install = true", 400, "channel_invalid", id="missing"),
]


@pytest.mark.hostile("channel-path")
@pytest.mark.parametrize("make_url,security,status,code", HOSTILE_CHANNELS)
async def test_hostile_channel_paths_are_refused(make_url, security, status, code, tree, tmp_path: Path) -> None:
    client, api, _root = await tree(security=security)
    url = make_url(tmp_path)
    config_before = api.manager.config.path.read_bytes()
    before = treesum.listing(tmp_path)
    await _refused(await client.post(PREFIX + "/channels", json={"url": url}), status, code)
    await _refused(await client.post(PREFIX + "/config", json={"changes": {"channel_url": url}}), status, code)
    assert api.manager.config.path.read_bytes() == config_before
    _unchanged(before, tmp_path)


def _index_link_out(folder: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"custom_nodes": []}', "utf-8")
    (folder / "custom-node-list.json").unlink()
    (folder / "custom-node-list.json").symlink_to(secret)


def _index_not_json(folder: Path, tmp_path: Path) -> None:
    (folder / "custom-node-list.json").write_text("#!/bin/sh\nrm -rf ~\n", "utf-8")


def _index_missing(folder: Path, tmp_path: Path) -> None:
    (folder / "custom-node-list.json").unlink()


def _index_is_folder(folder: Path, tmp_path: Path) -> None:
    (folder / "custom-node-list.json").unlink()
    (folder / "custom-node-list.json").mkdir()


@pytest.mark.hostile("channel-path")
@pytest.mark.parametrize(
    "spoil,problem",
    [
        (_index_link_out, "links outside"),
        (_index_not_json, "not a JSON object"),
        (_index_missing, "holds no custom-node-list.json"),
        (_index_is_folder, "not a regular file"),
    ],
    ids=["index-links-out", "index-not-json", "no-index", "index-is-folder"],
)
async def test_a_channel_must_hold_a_channel(spoil, problem: str, tree, tmp_path: Path) -> None:
    """Even with the flag, a folder is selected only when it holds a readable channel index."""
    client, api, _root = await tree(security="allow_git_url_install = true")
    folder = _other_channel(tmp_path)
    spoil(folder, tmp_path)
    config_before = api.manager.config.path.read_bytes()
    before = treesum.listing(tmp_path)
    err = await _refused(await client.post(PREFIX + "/channels", json={"url": folder.as_uri()}), 400, "channel_invalid")
    assert problem in err["message"], err
    assert api.manager.config.path.read_bytes() == config_before
    _unchanged(before, tmp_path)


@pytest.mark.hostile("channel-path")
async def test_a_listed_channel_folder_with_no_index_is_refused(tree, tmp_path: Path) -> None:
    """channels.list names the demo channel; emptied of its index it is refused, not selected."""
    client, api, root = await tree()
    (tmp_path / "demo" / "demo-channel" / "custom-node-list.json").unlink()
    config_before = api.manager.config.path.read_bytes()
    before = treesum.listing(tmp_path)
    await _refused(await client.post("/manager/channel_url_list", json={"value": "demo"}), 400, "channel_invalid")
    assert api.manager.config.path.read_bytes() == config_before
    _unchanged(before, tmp_path)


@pytest.mark.parametrize("security", ["allowed_channels = {elsewhere}", "allow_git_url_install = true"])
async def test_named_channels_still_select(security: str, tree, tmp_path: Path) -> None:
    """Control: a channel under a folder allowed_channels names, or with the flag, is selected."""
    elsewhere = (tmp_path / "elsewhere").as_uri()
    client, api, _root = await tree(security=security.replace("{elsewhere}", elsewhere))
    other = _other_channel(tmp_path)
    resp = await client.post(PREFIX + "/channels", json={"url": other.as_uri()})
    assert resp.status == 200, await resp.text()
    assert api.manager.config["channel_url"] == other.as_uri()


# --- config-file ----------------------------------------------------------------------------------
def _first_pack(root: Path) -> str:
    return "victim-pack"


CONFIG_FILES = [
    pytest.param(
        "[default]\nnetwork_mode = offline\nchannel_url = {channel}\nsecurity_level = strong\n\n[security]\n\n"
        "[default]\nsecurity_level = weak\n",
        "security_level",
        id="second-default-section",
    ),
    pytest.param(
        "[default]\nnetwork_mode = offline\nchannel_url = {channel}\nsecurity_level = strong\nsecurity_level = weak\n",
        "security_level",
        id="key-twice",
    ),
    pytest.param(
        "[default]\nnetwork_mode = offline\nchannel_url = {channel}\nsecurity_level = strong\n"
        "[DEFAULT]\nSecurity_Level: weak\n",
        "security_level",
        id="section-in-other-case",
    ),
    pytest.param(
        "[default]\nnetwork_mode = offline\nchannel_url = {channel}\nsecurity_level = strong\n"
        "[security]\n[default]\n  # looks like a comment block\nsecurity_level = normal-\n",
        "security_level",
        id="repeat-after-security",
    ),
]


@pytest.mark.hostile("config-file")
@pytest.mark.parametrize("text,key", CONFIG_FILES)
async def test_a_repeated_section_never_lowers_the_level(text: str, key: str, tree, tmp_path: Path) -> None:
    """Finding 3: the later section's weaker level is not used; an uninstall stays refused at
    strong, and the problem is shown (startup alerts, /v1/config, cm-cli.py config)."""
    client, api, root = await tree(config_text=text)
    assert api.manager.config[key] == "strong"
    before = treesum.listing(tmp_path)
    await _refused(
        await client.post(PREFIX + "/queue", json={"kind": "uninstall", "target": _first_pack(root)}),
        403,
        "security_denied",
    )
    api.manager.queue.run_until_idle(timeout=30)
    alerts = await (await client.get("/manager/startup_alerts")).json()
    assert any(key in a["message"] and a["level"] == "error" for a in alerts), alerts
    problems = (await (await client.get(PREFIX + "/config")).json())["data"]["problems"]
    assert problems and all(p["code"] == "config_invalid" for p in problems), problems
    assert any(p["details"].get("lines") for p in problems), problems
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["--comfyui", str(root), "config"]) == 0
    assert "PROBLEM [config_invalid]" in out.getvalue() and "fix:" in out.getvalue(), out.getvalue()
    _unchanged(before, tmp_path)


LOOSENING = [
    pytest.param(
        "allow_git_url_install = false\n[security]\nallow_git_url_install = true\n",
        {"kind": "install", "target": "{local}"},
        id="flag-in-repeated-security",
    ),
    pytest.param(
        "[security]\nallow_git_url_install = true\n",
        {"kind": "install", "target": "{local}"},
        id="flag-only-in-repeat",
    ),
]


@pytest.mark.hostile("config-file")
@pytest.mark.parametrize("extra,task", LOOSENING)
async def test_a_flag_in_a_repeated_section_is_not_used(extra: str, task: dict, tree, tmp_path: Path) -> None:
    client, api, root = await tree(
        config_text="[default]\nnetwork_mode = offline\nchannel_url = {channel}\n[security]\n" + extra
    )
    assert api.manager.config["allow_git_url_install"] is False
    source = next(p for p in (tmp_path / "demo" / "sources").iterdir() if p.is_dir())
    body = {**task, "target": str(source)}
    before = treesum.listing(tmp_path)
    err = await _refused(await client.post(PREFIX + "/queue", json=body), 403, "security_denied")
    assert "allow_git_url_install" in err["message"], err
    api.manager.queue.run_until_idle(timeout=30)
    assert any("allow_git_url_install" in p.message for p in api.manager.config.problems)
    _unchanged(before, tmp_path)


@pytest.mark.hostile("config-file")
async def test_a_repeated_allow_list_keeps_only_what_every_line_lists(tree, tmp_path: Path) -> None:
    client, api, _root = await tree(
        config_text="[default]\nnetwork_mode = offline\nchannel_url = {channel}\n[security]\n"
        "allowed_channels = https://a.example/c\nallowed_channels = https://a.example/c, https://evil.example/c\n"
        "allow_remote_channel = false\n[security]\nallow_remote_channel = true\n"
    )
    assert api.manager.config["allowed_channels"] == ("https://a.example/c",)
    assert api.manager.config["allow_remote_channel"] is False
    config_before = api.manager.config.path.read_bytes()
    before = treesum.listing(tmp_path)
    await _refused(
        await client.post(PREFIX + "/channels", json={"url": "https://evil.example/c"}), 403, "security_denied"
    )
    assert api.manager.config.path.read_bytes() == config_before
    _unchanged(before, tmp_path)


# --- duplicate-keys -------------------------------------------------------------------------------
DUPLICATES = [
    pytest.param(PREFIX + "/config", '{"changes": {"db_mode": "local", "db_mode": "remote"}}', "db_mode", id="config"),
    pytest.param(
        PREFIX + "/config", '{"changes": {"db_mode": "local"}, "changes": {"db_mode": "remote"}}', "changes", id="top"
    ),
    pytest.param(
        PREFIX + "/queue",
        '{"kind": "install", "target": "demo-mask-utils", "kind": "uninstall", "target": "{pack}"}',
        "kind",
        id="install-turned-uninstall",
    ),
    pytest.param(
        PREFIX + "/queue",
        '{"tasks": [{"kind": "disable", "target": "{pack}", "params": {"a": 1, "a": 2}}]}',
        "a",
        id="deep-in-a-batch",
    ),
    pytest.param(
        "/manager/channel_url_list", '{"value": "demo", "value": "file:///etc"}', "value", id="classic-channel"
    ),
    pytest.param(PREFIX + "/network", '{"mode": "offline", "mod\\u0065": "public"}', "mode", id="escaped-spelling"),
]


@pytest.mark.hostile("duplicate-keys")
@pytest.mark.parametrize("path,body,key", DUPLICATES)
async def test_duplicate_json_keys_are_refused(path: str, body: str, key: str, tree, tmp_path: Path) -> None:
    """Finding 4: the last key no longer wins silently; the body is refused naming the key."""
    client, api, root = await tree()
    body = body.replace("{pack}", _first_pack(root))
    config_before = api.manager.config.path.read_bytes()
    before = treesum.listing(tmp_path)
    resp = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    err = await _refused(resp, 400, "request_invalid")
    assert repr(key) in err["message"] and err["details"]["key"] == key, err
    api.manager.queue.run_until_idle(timeout=30)
    assert api.manager.config.path.read_bytes() == config_before
    assert api.manager.queue.status()["pending_count"] == 0
    _unchanged(before, tmp_path)


# --- malformed-request (standalone server only) ----------------------------------------------------
@pytest.mark.hostile("malformed-request")
@pytest.mark.parametrize(
    "request_bytes,code",
    [
        (
            b"GET /offline-manager/v1/status?" + b"a" * 20000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "request_too_large",
        ),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", "request_too_large"),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n", "request_invalid"),
    ],
    ids=["url-too-long", "header-too-long", "not-a-header"],
)
async def test_unreadable_requests_get_the_envelope(request_bytes: bytes, code: str, tmp_path: Path) -> None:
    root = demo_root(tmp_path)
    write_config(root)
    api = make_api(root)
    runner = EnvelopeAppRunner(build_app(api), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        before = treesum.listing(tmp_path)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)  # the answer closes the connection
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"400" and b"application/json" in head, raw[:300]
        doc = json.loads(body)
        assert doc["ok"] is False and doc["error"]["code"] == code and doc["error"]["hint"], doc
        assert len(body) < 2000, "the refused line is not echoed back whole"
        _unchanged(before, tmp_path)
    finally:
        await runner.cleanup()
        api.manager.queue.stop(timeout=10)


async def test_a_well_formed_request_still_answers(tmp_path: Path) -> None:
    root = demo_root(tmp_path)
    write_config(root)
    api = make_api(root)
    runner = EnvelopeAppRunner(build_app(api), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /offline-manager/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert raw.split(b" ")[1] == b"200", raw[:300]
    finally:
        await runner.cleanup()
        api.manager.queue.stop(timeout=10)
