"""The local model store: offline hits with zero connects, fast offline misses, private-mode http stores."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from manager.context import Manager
from manager.errors import ModelNotInStore, NetworkBlocked
from manager.models import ModelStore, install_model, load_model_folders, place
from manager.records import ModelEntry

PUBLIC_URL = "https://huggingface.co/org/repo/resolve/main/sd_xl_base_1.0.safetensors"


def _entry(url: str = PUBLIC_URL, **kw: str) -> ModelEntry:
    base = dict(
        name="SDXL base",
        type="checkpoint",
        filename="sd_xl_base_1.0.safetensors",
        url=url,
        save_path="checkpoints/SDXL",
    )
    base.update(kw)
    return ModelEntry(**base)  # type: ignore[arg-type]


def _manager(tmp_path: Path, **env: str) -> Manager:
    root = tmp_path / "ComfyUI"
    (root / "models").mkdir(parents=True, exist_ok=True)
    return Manager.standalone(root, env={f"CM_{k.upper()}": v for k, v in env.items()})


def _dest(manager: Manager) -> Path:
    return manager.layout.models_dir / "checkpoints" / "SDXL" / "sd_xl_base_1.0.safetensors"


@pytest.mark.parametrize("layout", ["mirror", "flat", "sha256"])
def test_offline_store_hit_copies_with_zero_connects(tmp_path: Path, socket_audit_log, layout: str) -> None:
    data = b"weights" * 50_000
    digest = hashlib.sha256(data).hexdigest()
    store = tmp_path / "store"
    rel = {
        "mirror": "checkpoints/SDXL/sd_xl_base_1.0.safetensors",
        "flat": "sd_xl_base_1.0.safetensors",
        "sha256": f"sha256/{digest}",
    }[layout]
    (store / rel).parent.mkdir(parents=True)
    (store / rel).write_bytes(data)
    manager = _manager(tmp_path, network_mode="offline", model_store=store.as_uri() if layout == "flat" else str(store))
    result = asyncio.run(install_model(manager, _entry(), sha256=digest if layout == "sha256" else None))
    assert result.source == "store" and _dest(manager).read_bytes() == data
    assert result.url.startswith("file://") and result.size == len(data)
    assert socket_audit_log.inet_connects() == []
    assert (store / rel).read_bytes() == data  # the store is only read


def test_offline_store_miss_fails_fast_naming_file_and_folder(tmp_path: Path, socket_audit_log) -> None:
    store = tmp_path / "store"
    store.mkdir()
    manager = _manager(tmp_path, network_mode="offline", model_store=str(store))
    started = time.monotonic()
    with pytest.raises(ModelNotInStore) as info:
        asyncio.run(install_model(manager, _entry()))
    assert time.monotonic() - started < 2
    err = info.value
    assert err.code == "model_not_in_store" and err.http_status == 503
    assert "sd_xl_base_1.0.safetensors" in err.message
    assert str(store / "checkpoints" / "SDXL" / "sd_xl_base_1.0.safetensors") in err.message
    assert str(_dest(manager)) in err.message and "model_store" in err.hint
    assert err.details["target"] == str(_dest(manager)) and err.details["folder"] == "checkpoints"
    assert socket_audit_log.inet_connects() == []
    assert not (manager.layout.models_dir / "checkpoints").exists()  # nothing created


def test_offline_without_store_names_the_target(tmp_path: Path, socket_audit_log) -> None:
    manager = _manager(tmp_path, network_mode="offline")
    with pytest.raises(ModelNotInStore) as info:
        asyncio.run(install_model(manager, _entry()))
    assert str(_dest(manager)) in info.value.message and "model_store" in info.value.hint
    assert socket_audit_log.inet_connects() == []


def test_offline_ignores_http_stores(tmp_path: Path, http_server, socket_audit_log) -> None:
    http_server.static("/store/sd_xl_base_1.0.safetensors", b"x", content_type="application/octet-stream")
    manager = _manager(tmp_path, network_mode="offline", model_store=http_server.url("/store"))
    with pytest.raises(ModelNotInStore):
        asyncio.run(install_model(manager, _entry()))
    assert socket_audit_log.inet_connects() == [] and http_server.requests == []


def test_private_mode_uses_http_store_first(tmp_path: Path, http_server) -> None:
    data = b"private-weights" * 10_000
    http_server.static(
        "/store/checkpoints/SDXL/sd_xl_base_1.0.safetensors", data, content_type="application/octet-stream"
    )
    store_url = http_server.url("/store")
    manager = _manager(tmp_path, network_mode="private", model_store=store_url, private_mirrors=store_url)
    result = asyncio.run(install_model(manager, _entry()))
    assert result.source == "store" and _dest(manager).read_bytes() == data
    # the sha256 name was not asked for (no digest known); the mirror name answered first
    assert [r.path for r in http_server.requests] == ["/store/checkpoints/SDXL/sd_xl_base_1.0.safetensors"]


def test_http_store_404_moves_on_to_the_next_name_then_the_url(tmp_path: Path, http_server) -> None:
    data = b"origin" * 20_000
    http_server.static("/origin/model.bin", data, content_type="application/octet-stream")
    manager = _manager(tmp_path, model_store=http_server.url("/store"))
    result = asyncio.run(install_model(manager, _entry(url=http_server.url("/origin/model.bin"))))
    assert result.source == "url" and _dest(manager).read_bytes() == data
    paths = [r.path for r in http_server.requests]
    assert paths == [
        "/store/checkpoints/SDXL/sd_xl_base_1.0.safetensors",
        "/store/sd_xl_base_1.0.safetensors",
        "/origin/model.bin",
    ]


def test_private_mode_reaches_the_store_but_not_the_public_url(tmp_path: Path, http_server, socket_audit_log) -> None:
    # an http(s) model_store is an admin-named mirror: reachable in private mode; the
    # model's own public URL is not, and is refused before any socket
    manager = _manager(tmp_path, network_mode="private", model_store=http_server.url("/store"))
    with pytest.raises(NetworkBlocked) as info:
        asyncio.run(install_model(manager, _entry()))
    attempts = info.value.details["attempts"]
    assert [a["source"] for a in attempts] == ["store", "store", "url"]
    assert attempts[-1]["code"] == "network_blocked"
    assert all(a["code"] != "network_blocked" for a in attempts[:-1])
    assert http_server.count("/store/checkpoints/SDXL/sd_xl_base_1.0.safetensors") == 1
    assert all(addr[0] == "127.0.0.1" for addr in socket_audit_log.inet_connects())


def test_wrong_file_in_store_falls_back_to_the_url(tmp_path: Path, http_server) -> None:
    good = b"good" * 30_000
    store = tmp_path / "store"
    (store / "checkpoints" / "SDXL").mkdir(parents=True)
    (store / "checkpoints" / "SDXL" / "sd_xl_base_1.0.safetensors").write_bytes(b"bad")
    http_server.static("/m.bin", good, content_type="application/octet-stream")
    manager = _manager(tmp_path, model_store=str(store))
    result = asyncio.run(
        install_model(manager, _entry(url=http_server.url("/m.bin")), sha256=hashlib.sha256(good).hexdigest())
    )
    assert result.source == "url" and _dest(manager).read_bytes() == good


def test_store_names_and_relative_roots(tmp_path: Path) -> None:
    manager = _manager(tmp_path, model_store="models_store, https://store.corp/models")
    store = ModelStore.from_manager(manager)
    assert store.roots[0].path == manager.layout.comfyui_root / "models_store"
    assert store.roots[1].url == "https://store.corp/models" and not store.roots[1].is_local
    folders = load_model_folders(manager.host)
    legacy = place(_entry(type="clip", save_path="clip/t5", filename="t5xxl.safetensors"), folders)
    assert ModelStore.names(legacy, "A" * 64) == [
        "sha256/" + "a" * 64,
        "text_encoders/t5/t5xxl.safetensors",
        "clip/t5/t5xxl.safetensors",
        "t5xxl.safetensors",
    ]
    remote = store.sources(legacy, remote=True)
    assert remote[0].url == "https://store.corp/models/text_encoders/t5/t5xxl.safetensors"
