"""What the classic ComfyUI-Manager 3.41 panel's own JS calls, replayed against our routes.

The calls below are the classic ``js/*.js`` call sites (method, path, headers, body, as the
browser sends them: a body without headers goes out as ``text/plain;charset=UTF-8``). Each is
sent by a real urllib client to a real server on 127.0.0.1 and must answer its classic shape:
no 404 for a missing route, no 405. When the classic sources are at hand
(``../shared/hosts/ComfyUI-Manager-3.41.tar.gz``), a test also reads their JS and fails on any
path this list or our route table misses.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
import sys
import tarfile
import types
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from manager.api.routes import ROUTES
from support import realhost_env

# found as the real-host tier finds it (../shared/hosts, $OFFLINE_MANAGER_HOSTS); the test that reads
# it belongs to that tier (marker ``realhost``): without it, the run's last line says it did not run
_CLASSIC = realhost_env.sources().get("classic-3.41")
CLASSIC_TARBALL = (
    _CLASSIC.tarball if _CLASSIC and _CLASSIC.tarball else Path("/nonexistent/ComfyUI-Manager-3.41.tar.gz")
)
JSON = {"Content-Type": "application/json"}
PLAIN = {"Content-Type": "text/plain;charset=UTF-8"}  # what fetchApi sends for a bare string body
ROW = {
    "id": "demo-image-tools",
    "version": "nightly",
    "selected_version": "nightly",
    "channel": "default",
    "mode": "cache",
    "ui_id": "u1",
    "files": [],
    "title": "Demo Image Tools",
}


def _dict(b: Any) -> bool:
    return isinstance(b, dict)


def _text(value: str | None = None) -> Callable[[Any], bool]:
    return lambda b: isinstance(b, str) and (value is None or b == value)


def _keys(*names: str) -> Callable[[Any], bool]:
    return lambda b: isinstance(b, dict) and set(names) <= set(b)


def _code(code: str) -> Callable[[Any], bool]:
    return lambda b: isinstance(b, dict) and b.get("ok") is False and b["error"]["code"] == code


# (method, path, headers, body, statuses, shape check): every call site of the classic 3.41 JS
CLASSIC_JS_CALLS: list[tuple[str, str, dict[str, str], Any, tuple[int, ...], Callable[[Any], bool]]] = [
    ("GET", "/customnode/getlist?mode=cache&skip_update=true", {}, None, (200,), _keys("channel", "node_packs")),
    ("GET", "/customnode/getmappings?mode=cache", {}, None, (200,), _dict),
    ("GET", "/customnode/alternatives?mode=cache", {}, None, (200,), _dict),
    ("GET", "/customnode/installed", {}, None, (200,), _dict),
    ("GET", "/customnode/versions/demo-image-tools", {}, None, (200, 503), lambda b: isinstance(b, (list, dict))),
    (
        "GET",
        "/customnode/disabled_versions/demo-image-tools",
        {},
        None,
        (200, 404),
        lambda b: isinstance(b, (list, dict)),
    ),
    ("POST", "/customnode/import_fail_info", JSON, {"cnr_id": "demo-image-tools"}, (200, 404), _dict),
    (
        "GET",
        "/customnode/get_node_types_in_workflows",
        {},
        None,
        (200, 204),
        lambda b: b in ("", None) or isinstance(b, list),
    ),
    ("GET", "/externalmodel/getlist?mode=cache", {}, None, (200,), _keys("models")),
    (
        "POST",
        "/customnode/install/git_url",
        JSON,
        {"url": "https://example.invalid/x.git"},
        (403,),
        _code("security_denied"),
    ),
    ("POST", "/customnode/install/pip", JSON, {"packages": "numpy"}, (403,), _code("security_denied")),
    ("GET", "/manager/queue/status", {}, None, (200,), _keys("total_count", "done_count", "is_processing")),
    ("POST", "/manager/queue/reset", {}, None, (200,), _dict),
    ("GET", "/manager/queue/reset", {}, None, (200,), _dict),  # common.js, node-usage-analyzer.js
    ("POST", "/manager/queue/install", PLAIN, ROW, (200,), _keys("ok")),
    ("POST", "/manager/queue/reinstall", PLAIN, dict(ROW, ui_id="u2"), (200,), _keys("ok")),
    ("POST", "/manager/queue/update", PLAIN, dict(ROW, ui_id="u3"), (200,), _keys("ok")),
    ("POST", "/manager/queue/fix", PLAIN, dict(ROW, ui_id="u4"), (200,), _keys("ok")),
    ("POST", "/manager/queue/disable", PLAIN, dict(ROW, ui_id="u5"), (200,), _keys("ok")),
    ("POST", "/manager/queue/uninstall", PLAIN, dict(ROW, ui_id="u6"), (200,), _keys("ok")),
    (
        "POST",
        "/manager/queue/install_model",
        PLAIN,
        {"name": "Demo tiny checkpoint", "filename": "demo-tiny.safetensors", "save_path": "default", "ui_id": "m1"},
        (200,),
        _keys("ok"),
    ),
    ("POST", "/manager/queue/reset", {}, None, (200,), _dict),
    ("POST", "/manager/queue/update_all", JSON, {"mode": "cache"}, (200,), _keys("ok")),
    ("POST", "/manager/queue/reset", {}, None, (200,), _dict),
    ("POST", "/manager/queue/update_comfyui", {}, None, (501,), _code("not_implemented")),
    ("GET", "/comfyui_manager/comfyui_versions", {}, None, (200,), _keys("versions", "current")),
    ("POST", "/comfyui_manager/comfyui_switch_version", JSON, {"ver": "nightly"}, (501,), _code("not_implemented")),
    ("GET", "/manager/share_option", {}, None, (200,), _text("all")),
    ("GET", "/manager/share_option?value=openart", {}, None, (200,), _text("")),
    ("GET", "/manager/notice", {}, None, (200,), _text()),
    ("GET", "/manager/db_mode", {}, None, (200,), _text("cache")),
    ("POST", "/manager/db_mode", JSON, {"value": "local"}, (200,), _keys("ok")),
    ("GET", "/manager/preview_method", {}, None, (200,), _text("none")),
    ("POST", "/manager/preview_method", JSON, {"value": "taesd"}, (200,), _keys("ok")),
    ("GET", "/manager/channel_url_list", {}, None, (200,), _keys("selected", "list")),
    ("POST", "/manager/channel_url_list", JSON, {"value": "demo"}, (200,), _keys("ok")),
    ("GET", "/manager/policy/component", {}, None, (200,), _text("workflow")),
    ("POST", "/manager/policy/component", JSON, {"value": "mine"}, (200,), _keys("ok")),
    ("GET", "/manager/policy/update", {}, None, (200,), _text("stable-comfyui")),
    ("POST", "/manager/policy/update", JSON, {"value": "nightly-comfyui"}, (200,), _keys("ok")),
    ("GET", "/manager/version", {}, None, (200,), lambda b: isinstance(b, str) and b.startswith("V")),
    ("GET", "/manager/startup_alerts", {}, None, (200,), lambda b: isinstance(b, list)),
    ("POST", "/manager/component/loads", {}, None, (200,), _dict),
    (
        "POST",
        "/manager/component/save",
        JSON,
        {"name": "c1", "workflow": {"packname": "", "nodes": []}},
        (200,),
        lambda b: isinstance(b, str) and b.endswith("c1.json"),
    ),
    ("GET", "/manager/get_openart_auth", {}, None, (200,), _keys("openart_key")),
    ("POST", "/manager/set_openart_auth", JSON, {"openart_key": "k-123"}, (200,), _keys("ok")),
    ("GET", "/manager/get_matrix_auth", {}, None, (200,), _keys("homeserver", "username", "password")),
    ("GET", "/manager/get_comfyworkflows_auth", {}, None, (200,), _keys("comfyworkflows_sharekey")),
    ("GET", "/manager/youml/settings", {}, None, (200,), _dict),
    ("POST", "/manager/youml/settings", JSON, {"token": "t-1"}, (200,), _keys("ok")),
    ("POST", "/manager/set_esheep_workflow_and_images", JSON, {"workflow": {}, "images": []}, (200,), _keys("ok")),
    ("POST", "/manager/share", JSON, {"share_destinations": ["matrix"]}, (501,), _code("not_implemented")),
    ("GET", "/snapshot/getlist", {}, None, (200,), _keys("items")),
    ("GET", "/snapshot/get_current", {}, None, (200,), _keys("comfyui", "git_custom_nodes", "pips")),
    ("POST", "/snapshot/save", {}, None, (200,), _keys("ok")),
    ("POST", "/snapshot/remove", JSON, {"target": "no-such-snapshot"}, (200,), _keys("ok")),
    ("POST", "/customnode/toggle_active", JSON, dict(ROW, ui_id="t1"), (200, 404), _dict),  # cm-api.js
    ("POST", "/customnode/install", JSON, dict(ROW, ui_id="t2"), (200,), _keys("ok")),  # cm-api.js
    ("POST", "/manager/queue/start", {}, None, (200, 201), _dict),
    ("GET", "/manager/queue/start", {}, None, (200, 201), _dict),  # common.js, node-usage-analyzer.js
    ("POST", "/manager/reboot", {}, None, (501,), _code("not_implemented")),  # standalone: no ComfyUI
]
SKIPPED_IN_REPLAY = {"/snapshot/restore"}  # restoring is covered by tests/test_api_snapshots.py


def _urllib(base: str, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + "/api" + path,
        data=data,
        method=method,
        headers={"Origin": base, "Sec-Fetch-Site": "same-origin", **headers},
    )  # the ComfyUI page's own requests
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    if "json" in ctype:
        return status, json.loads(raw)
    return status, raw.decode("utf-8")


async def test_every_call_of_the_classic_panel_answers_its_shape(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    base = f"http://{client.server.host}:{client.server.port}"
    for method, path, headers, body, statuses, shape in CLASSIC_JS_CALLS:
        status, answer = await asyncio.to_thread(_urllib, base, method, path, headers, body)
        assert status in statuses and shape(answer), (method, path, status, answer)
        if status == 404:  # only "that pack has nothing of the kind", never a missing route
            assert answer["error"]["code"] == "not_found" and not answer["error"]["message"].startswith("no route")
    config = api.manager.config
    assert (config["share_option"], config["preview_method"], config["component_policy"]) == (
        "openart",
        "taesd",
        "mine",
    )
    api.manager.queue.stop(timeout=10)


MANAGER_FAMILIES = ("/customnode/", "/manager/", "/snapshot/", "/externalmodel/", "/comfyui_manager/")


def _classic_js_calls(tarball: Path) -> set[tuple[str, str]]:
    """(method, path) of every call the classic JS makes to the manager's route families
    (``fetchApi``, ``fetch`` and its ``fetchData`` helper; ``${...}`` parts become ``{}``)."""
    found: set[tuple[str, str]] = set()
    call = re.compile(r"""(?:fetchApi|fetchData|fetch)\(\s*([`'"])(/[^`'"]*)\1\s*(?:,\s*\{([^}]*))?""")
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            if not (member.isfile() and "/js/" in member.name and member.name.endswith(".js")):
                continue
            text = tar.extractfile(member).read().decode("utf-8", "replace")  # type: ignore[union-attr]
            for m in call.finditer(text):
                path = re.sub(r"\$\{[^}]*\}", "{}", m.group(2)).split("?", 1)[0]
                method = re.search(r"""method\s*:\s*['"](\w+)""", m.group(3) or "")
                if path.startswith(MANAGER_FAMILIES):
                    found.add(((method.group(1) if method else "GET").upper(), path))
    return found


def _served(method: str, path: str, routes: set[tuple[str, str]]) -> bool:
    """A route of ``routes`` answers ``method path`` (``{}`` on either side is one path segment)."""

    def pattern(p: str) -> str:
        return "^" + re.escape(p).replace(r"\{\}", "[^/]+") + "$"

    return any(
        r_method == method and (re.match(pattern(r_path), path) or re.match(pattern(path), r_path))
        for r_method, r_path in routes
    )


@pytest.mark.realhost  # reads a real-host source: counted (or said not to run) on the run's last line
@pytest.mark.skipif(
    not CLASSIC_TARBALL.is_file(),
    reason="real-host tier did not run: no classic ComfyUI-Manager 3.41 source "
    "(../shared/hosts/, $OFFLINE_MANAGER_HOSTS)",
)
def test_no_call_of_the_classic_js_is_left_without_a_route():
    ours = {(r.method, re.sub(r"\{[^}]*\}", "{}", r.path)) for r in ROUTES}
    replayed = {(m, p.split("?", 1)[0]) for m, p, *_ in CLASSIC_JS_CALLS}
    calls = _classic_js_calls(CLASSIC_TARBALL)
    assert len(calls) >= 45, sorted(calls)
    assert sorted(c for c in calls if not _served(*c, ours)) == [], "classic JS calls with no route of ours"
    missing = sorted(c for c in calls if c[1] not in SKIPPED_IN_REPLAY and not _served(*c, replayed))
    assert missing == [], "classic JS calls not replayed by test_every_call_of_the_classic_panel_answers_its_shape"


# --- the settings, components and keys themselves -------------------------------------------------
async def test_share_option_and_preview_method_are_saved_and_validated(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    assert await (await client.get("/manager/share_option?value=none")).text() == ""
    assert await (await client.get("/api/manager/share_option")).text() == "none"
    assert "share_option = none" in api.manager.config.path.read_text(encoding="utf-8")
    bad = await client.get("/manager/share_option?value=everyone")
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "config_invalid"
    bad = await client.post("/manager/preview_method", json={"value": "fast"})
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "request_invalid"
    resp = await client.post("/manager/preview_method", json={"value": "latent2rgb"})
    assert (await resp.json())["data"] == {"preview_method": "latent2rgb", "applied": False}
    assert await (await client.get("/manager/preview_method")).text() == "latent2rgb"
    # the GET setter is a write: audited like a POST; the plain read is not
    from manager.audit import AuditLog

    log = AuditLog.for_layout(api.manager.layout).path.read_text(encoding="utf-8").splitlines()
    lines = [json.loads(line) for line in log if '"/manager/share_option"' in line]
    assert [(e["method"], e["target"], e["code"]) for e in lines] == [
        ("GET", "share_option=none", "ok"),
        ("GET", "share_option=everyone", "config_invalid"),
    ]


async def test_strong_level_refuses_the_settings_but_not_the_users_own_data(aiohttp_client, api_app):
    app, api, root = api_app(default="security_level = strong")
    client = await aiohttp_client(app)
    for resp in (
        await client.get("/manager/share_option?value=none"),
        await client.post("/manager/preview_method", json={"value": "auto"}),
    ):
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "security_denied"
    resp = await client.post("/manager/component/save", json={"name": "n", "workflow": {}})
    assert resp.status == 200
    assert api.manager.config["share_option"] == "all"


async def test_components_merge_in_the_classic_order_and_stay_in_their_folder(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    folder = root / "user" / "__manager" / "components"
    path = await (
        await client.post("/manager/component/save", json={"name": "../../evil name", "workflow": {"nodes": [1]}})
    ).text()
    assert Path(path) == folder / "______evil_name.json"
    path = await (
        await client.post(
            "/manager/component/save", json={"name": "shared", "workflow": {"packname": "My/Pack", "v": "pack"}}
        )
    ).text()
    assert Path(path) == folder / "My_Pack.pack"
    await client.post("/manager/component/save", json={"name": "shared", "workflow": {"v": "json"}})
    await client.post("/manager/component/save", json={"name": "other", "workflow": {"packname": "My/Pack"}})
    (folder / "broken.json").write_text("{not json")
    loads = await (await client.post("/manager/component/loads")).json()
    assert loads["shared"] == {"packname": "My/Pack", "v": "pack"}  # the .pack copy wins
    assert set(loads) == {"../../evil name", "shared", "other"}
    assert sorted(p.name for p in folder.iterdir()) == [
        "My_Pack.pack",
        "______evil_name.json",
        "broken.json",
        "shared.json",
    ]
    bad = await client.post("/manager/component/save", json={"name": "x", "workflow": "not an object"})
    assert bad.status == 400


async def test_share_keys_are_private_files_and_matrix_secrets_are_never_kept(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    manager_dir = root / "user" / "__manager"
    assert (await (await client.get("/manager/get_openart_auth")).json()) == {"openart_key": ""}
    await client.post("/manager/set_openart_auth", json={"openart_key": "secret-key"})
    assert (await (await client.get("/manager/get_openart_auth")).json()) == {"openart_key": "secret-key"}
    assert stat.S_IMODE((manager_dir / ".openart_key").stat().st_mode) == 0o600
    bad = await client.post("/manager/set_openart_auth", json={"openart_key": "a\nsecurity_level = weak"})
    assert bad.status == 400
    await client.post("/manager/youml/settings", json={"token": "t"})
    assert await (await client.get("/manager/youml/settings")).json() == {"token": "t"}
    share = await client.post("/manager/share", json={"matrix_auth": {"username": "u", "password": "p"}})
    assert share.status == 501 and "share_option = none" in (await share.json())["error"]["hint"]
    assert await (await client.get("/manager/get_matrix_auth")).json() == {
        "homeserver": "matrix.org",
        "username": "",
        "password": "",
    }
    assert not (manager_dir / "matrix_auth").exists()
    await client.post("/manager/set_esheep_workflow_and_images", json={"workflow": {"a": 1}, "images": []})
    assert await (await client.get("/manager/get_esheep_workflow_and_images")).json() == {
        "workflow": {"a": 1},
        "images": [],
    }


async def test_cm_api_requests_queue_through_the_policy(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    resp = await client.post("/customnode/install", json={"id": "demo-prompt-kit", "title": "x", "files": []})
    task = (await resp.json())["data"]["task"]
    assert resp.status == 200 and task["kind"] == "install" and task["target"] == "demo-prompt-kit"
    # a row no catalog lists is its repository URL: high risk, refused without the flag
    resp = await client.post("/customnode/install", json={"id": "evil", "files": ["https://example.invalid/e.git"]})
    assert resp.status == 403 and "allow_git_url_install" in (await resp.json())["error"]["hint"]
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
    resp = await client.post("/manager/queue/disable", json={"id": "demo-prompt-kit", "version": "nightly"})
    assert resp.status == 200
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
    resp = await client.post("/customnode/toggle_active", json={"id": "demo-prompt-kit", "title": "x"})
    assert resp.status == 200 and (await resp.json())["data"]["task"]["kind"] == "enable"
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
    assert (root / "custom_nodes" / "demo-prompt-kit").is_dir()
    api.manager.queue.stop(timeout=10)


# --- inside ComfyUI: the live preview method ------------------------------------------------------
def _comfy_modules(monkeypatch: pytest.MonkeyPatch, *, native: bool) -> Any:
    import enum

    class LatentPreviewMethod(enum.Enum):
        NoPreviews = "none"
        Auto = "auto"
        Latent2RGB = "latent2rgb"
        TAESD = "taesd"

    cli_args = types.ModuleType("comfy.cli_args")
    cli_args.args = types.SimpleNamespace(preview_method=LatentPreviewMethod.NoPreviews)  # type: ignore[attr-defined]
    cli_args.LatentPreviewMethod = LatentPreviewMethod  # type: ignore[attr-defined]
    latent = types.ModuleType("latent_preview")
    if native:
        latent.set_preview_method = lambda override=None: None  # type: ignore[attr-defined]
    comfy = types.ModuleType("comfy")
    comfy.cli_args = cli_args  # type: ignore[attr-defined]
    for name, mod in (("comfy", comfy), ("comfy.cli_args", cli_args), ("latent_preview", latent)):
        monkeypatch.setitem(sys.modules, name, mod)
    return cli_args.args


def _comfy_host(tmp_path: Path) -> Any:
    """glob/comfy_host.ComfyHost of our folder, imported the way ComfyUI imports the extension."""
    import importlib

    from support.standin_host import load_like_comfyui

    package = load_like_comfyui(Path(__file__).resolve().parents[1])
    mod = importlib.import_module(package.__name__ + ".glob.comfy_host")
    folder_paths = types.SimpleNamespace(
        base_path=str(tmp_path),
        models_dir=str(tmp_path / "models"),
        get_folder_paths=lambda name: [str(tmp_path / "custom_nodes")],
        get_user_directory=lambda: str(tmp_path / "user"),
    )
    return mod.ComfyHost(None, folder_paths)


def test_comfy_host_applies_the_preview_method_where_comfyui_has_no_setting_of_its_own(monkeypatch, tmp_path):
    args = _comfy_modules(monkeypatch, native=False)
    host = _comfy_host(tmp_path)
    assert not host.native_preview() and host.preview_method() == "none"
    host.adopt_config({"preview_method": "taesd"})  # config.ini applied when the Manager is built
    assert args.preview_method.value == "taesd" and host.preview_method() == "taesd"
    assert host.set_preview_method("auto") and args.preview_method.value == "auto"


def test_comfy_host_leaves_a_native_preview_setting_alone(monkeypatch, tmp_path):
    args = _comfy_modules(monkeypatch, native=True)
    host = _comfy_host(tmp_path)
    assert host.native_preview()
    host.adopt_config({"preview_method": "taesd"})
    assert args.preview_method.value == "none" and host.set_preview_method("auto") is False


def test_classic_version_words_for_installed_copies():
    """Classic clients pick their flows by the word: a clone is nightly (registry id) or unknown."""
    from manager.api.listing import classic_version
    from manager.inventory import InstalledPack

    def pack(**kw: Any) -> InstalledPack:
        return InstalledPack(name="p", path="/x/p", enabled=True, pack_id="p", **kw)

    assert classic_version(pack(kind="git", cnr_id="p", cnr_version="1.0.0")) == "nightly"
    assert classic_version(pack(kind="git")) == "unknown"
    assert classic_version(pack(kind="cnr", cnr_id="p", cnr_version="2.1.0")) == "2.1.0"
    assert classic_version(pack(kind="cnr", version="1.3.0")) == "1.3.0"
