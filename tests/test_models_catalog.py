"""The real channel DB's model-list.json mapped to folders; installed state; the on-disk inventory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from manager.catalog import Catalog, ChannelFiles
from manager.context import Manager
from manager.errors import NotFound
from manager.host import StandaloneHost
from manager.models import (
    InstalledModel,
    catalog_models,
    find_model,
    installed_models,
    list_models,
    load_model_folders,
    model_id,
)
from manager.models.folders import COMFY_FOLDERS
from manager.records import Channel, ModelEntry


def _real_models(channel_db: Path) -> tuple[list[dict], tuple[ModelEntry, ...]]:
    raw = (channel_db / "default" / "model-list.json").read_bytes()
    cat = Catalog.build([ChannelFiles(Channel("default", "file:///channel"), {"model-list.json": raw})])
    return json.loads(raw)["models"], cat.models


def test_every_real_entry_maps_to_a_folder_or_is_reported(tmp_path: Path, channel_db: Path) -> None:
    raw, models = _real_models(channel_db)
    root = tmp_path / "ComfyUI"
    (root / "models").mkdir(parents=True)
    listing = list_models(models, load_model_folders(StandaloneHost.from_root(root)))
    assert len(listing.items) == len(models) == len(raw)  # nothing dropped silently
    models_dir = root / "models"
    for item in listing.items:
        if item.placement is None:
            assert item.problem_code and item.problem, item.id  # reported with a reason
            continue
        path = item.placement.path
        assert models_dir in path.parents, item.id  # always inside the models tree
        assert path.name == item.entry.filename or item.entry.filename == "<huggingface>"
        if item.entry.save_path == "default":
            assert item.placement.folder in COMFY_FOLDERS, item.id
    assert len({i.id for i in listing.items}) == len(listing.items)  # ids are unique
    # Hugging Face repository snapshots map to a folder but are flagged as not downloadable
    hf = [i for i in listing.items if i.entry.filename == "<huggingface>"]
    assert hf and all(i.problem_code == "model_source_unsupported" and not i.installable for i in hf)
    assert sum(1 for i in listing.items if i.installable) >= len(listing.items) - len(hf) - len(listing.unmapped)
    by_type = {
        i.entry.type: i.placement.folder for i in listing.items if i.placement and i.entry.save_path == "default"
    }
    assert by_type.get("upscale") == "upscale_models" and by_type.get("VAE") == "vae"


def test_installed_state_follows_files_in_any_folder_dir(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    (root / "models").mkdir(parents=True)
    a1111 = tmp_path / "a1111"
    (root / "extra_model_paths.yaml").write_text(f"a:\n  base_path: {a1111}\n  loras: Lora\n", encoding="utf-8")
    entries = [
        ModelEntry(
            name="in models",
            type="checkpoint",
            filename="a.safetensors",
            url="https://x/a",
            save_path="checkpoints/SDXL",
        ),
        ModelEntry(
            name="in extra dir", type="lora", filename="b.safetensors", url="https://x/b", save_path="loras/SDXL"
        ),
        ModelEntry(name="absent", type="vae", filename="c.pt", url="https://x/c"),
        ModelEntry(name="odd", type="Mystery", filename="d.bin", url="https://x/d"),
    ]
    (root / "models" / "checkpoints" / "SDXL").mkdir(parents=True)
    (root / "models" / "checkpoints" / "SDXL" / "a.safetensors").write_bytes(b"1")
    (a1111 / "Lora" / "SDXL").mkdir(parents=True)
    (a1111 / "Lora" / "SDXL" / "b.safetensors").write_bytes(b"2")
    listing = list_models(entries, load_model_folders(StandaloneHost.from_root(root)))
    state = {i.entry.name: (i.installed, i.installed_path) for i in listing.items}
    assert state["in models"] == (True, str(root / "models" / "checkpoints" / "SDXL" / "a.safetensors"))
    assert state["in extra dir"] == (True, str(a1111 / "Lora" / "SDXL" / "b.safetensors"))
    assert state["absent"] == (False, "")
    assert [i.id for i in listing.unmapped] == ["default/d.bin"]
    d = listing.to_dict()
    assert d["unmapped"] == ["default/d.bin"] and d["models"][0]["folder"] == "checkpoints"
    assert d["models"][3]["problem"]["code"] == "model_folder_unknown"


def test_find_model_by_id_name_url_and_file(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    entries = [
        ModelEntry(name="One", type="lora", filename="x.safetensors", url="https://x/1", save_path="loras/a"),
        ModelEntry(name="Two", type="lora", filename="x.safetensors", url="https://x/2", save_path="loras/b"),
        ModelEntry(name="Three", type="vae", filename="v.pt", url="https://x/3"),
    ]
    items = list_models(entries, load_model_folders(StandaloneHost.from_root(root))).items
    assert find_model(items, "loras/b/x.safetensors").entry.name == "Two"
    assert find_model(items, "One").id == "loras/a/x.safetensors"
    assert find_model(items, "https://x/3").id == "default/v.pt" == model_id(entries[2])
    assert find_model(items, "v.pt").entry.name == "Three"
    with pytest.raises(NotFound) as info:
        find_model(items, "x.safetensors")
    assert len(info.value.details["matches"]) == 2
    with pytest.raises(NotFound):
        find_model(items, "nothing")


def test_catalog_models_through_the_manager(tmp_path: Path, local_channel: Path) -> None:
    root = tmp_path / "ComfyUI"
    (root / "models").mkdir(parents=True)
    manager = Manager.standalone(root, env={"CM_CHANNEL_URL": local_channel.as_uri(), "CM_NETWORK_MODE": "offline"})
    listing = catalog_models(manager)
    assert len(listing.items) > 500 and not any(i.installed for i in listing.items)


def test_installed_models_inventory(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    models = root / "models"
    extra = tmp_path / "shared"
    models.mkdir(parents=True)
    (root / "extra_model_paths.yaml").write_text(f"s:\n  checkpoints: {extra}\n", encoding="utf-8")
    files = {
        models / "checkpoints" / "SDXL" / "a.safetensors": b"a" * 10,
        models / "clip" / "t5" / "t5.safetensors": b"t" * 3,  # legacy dir -> text_encoders
        models / "unet" / "u.gguf": b"u",
        models / "ipadapter" / "ip.bin": b"i" * 7,  # a node pack's folder
        extra / "b.ckpt": b"b" * 5,
    }
    junk = [
        models / "checkpoints" / "put_checkpoints_here",
        models / "loras" / "x.safetensors.part",
        models / "loras" / "x.safetensors.part.json",
        models / "loras" / ".x.safetensors.lock",
        models / "vae" / ".hidden",
    ]
    for path, body in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    for path in junk:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (models / "loras" / "loop").symlink_to(models / "loras")  # a loop is walked once
    manager = Manager.standalone(root, env={})
    found = installed_models(manager)
    assert all(isinstance(m, InstalledModel) for m in found)
    got = {(m.folder, m.name): m.size for m in found}
    assert got == {
        ("checkpoints", "SDXL/a.safetensors"): 10,
        ("text_encoders", "t5/t5.safetensors"): 3,
        ("diffusion_models", "u.gguf"): 1,
        ("ipadapter", "ip.bin"): 7,
        ("checkpoints", "b.ckpt"): 5,
    }
    assert all(m.sha256 is None for m in found)
    hashed = {m.name: m.to_dict() for m in installed_models(manager, with_sha256=True)}
    assert hashed["b.ckpt"]["sha256"] and len(hashed["b.ckpt"]["sha256"]) == 64
    # once computed, the digest is reported from the cache without asking
    assert all(m.sha256 for m in installed_models(manager))
