"""Path safety of model save_path/filename: every hostile value is a coded error and writes nothing."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from manager.errors import ManagerError, ModelPathInvalid, PathEscape
from manager.host import StandaloneHost
from manager.models import install_entry, load_model_folders, place, safe_filename, safe_save_path
from manager.network import NetworkGate, NetworkMode, NetworkPolicy
from manager.records import ModelEntry

HOSTILE_SAVE_PATHS = [
    ("../../etc", PathEscape, "escape"),
    ("checkpoints/../../outside", PathEscape, "escape"),
    ("..\\..\\windows", PathEscape, "escape"),
    ("/etc/cron.d", PathEscape, "escape"),
    ("\\\\server\\share", PathEscape, "escape"),
    ("C:/Windows/System32", PathEscape, "escape"),
    ("c:evil", PathEscape, "escape"),
    ("checkpoints/\uff0e\uff0e/x", PathEscape, "escape"),  # fullwidth dots read as '..'
    ("loras/a\uff0fb", PathEscape, "escape"),  # fullwidth solidus
    ("loras/\x00x", ModelPathInvalid, "nul_char"),
    ("loras/a\nb", ModelPathInvalid, "control_char"),
    ("loras/\u202egnp.exe", ModelPathInvalid, "bidi_control"),
    ("loras/x\u2066y", ModelPathInvalid, "bidi_control"),
    ("loras/zero\u200bwidth", ModelPathInvalid, "invisible_char"),
    ("loras/CON", ModelPathInvalid, "reserved_name"),
    ("loras/nul.txt", ModelPathInvalid, "reserved_name"),
    ("loras/com1", ModelPathInvalid, "reserved_name"),
    ("LPT\u00b9/x", ModelPathInvalid, "reserved_name"),
    ("loras/trailing.", ModelPathInvalid, "trailing_dot_space"),
    ("loras/trailing ", ModelPathInvalid, "trailing_dot_space"),
    ("loras/a:b", ModelPathInvalid, "forbidden_char"),
    ("loras/what?", ModelPathInvalid, "forbidden_char"),
    ("loras/" + "x" * 300, ModelPathInvalid, "too_long"),
    ("loras/\ue000private", ModelPathInvalid, "invalid_char"),
]

HOSTILE_FILENAMES = [
    ("../evil.safetensors", PathEscape, "escape"),
    ("/etc/passwd", PathEscape, "escape"),
    ("..", PathEscape, "escape"),
    ("C:evil.ckpt", PathEscape, "escape"),
    ("sub/model.safetensors", ModelPathInvalid, "not_a_name"),
    ("sub\\model.safetensors", ModelPathInvalid, "not_a_name"),
    ("model\x00.safetensors", ModelPathInvalid, "nul_char"),
    ("model\r.safetensors", ModelPathInvalid, "control_char"),
    ("model\u202esrotnesfas.exe", ModelPathInvalid, "bidi_control"),
    ("\ufeffmodel.safetensors", ModelPathInvalid, "invisible_char"),
    ("AUX.safetensors", ModelPathInvalid, "reserved_name"),
    ("conout$", ModelPathInvalid, "reserved_name"),
    ("model.safetensors.", ModelPathInvalid, "trailing_dot_space"),
    ("model.safetensors ", ModelPathInvalid, "trailing_dot_space"),
    (" model.safetensors", ModelPathInvalid, "trailing_dot_space"),
    ("mo<del>.pt", ModelPathInvalid, "forbidden_char"),
    ("model|x.pt", ModelPathInvalid, "forbidden_char"),
    (".bashrc", ModelPathInvalid, "hidden_name"),
    ("model.safetensors.part", ModelPathInvalid, "temp_name"),
    ("x" * 256 + ".pt", ModelPathInvalid, "too_long"),
    ("", ModelPathInvalid, "empty"),
    ("\udcff.pt", ModelPathInvalid, "invalid_char"),
]


def _tree(tmp_path: Path) -> tuple[Path, StandaloneHost]:
    root = tmp_path / "ComfyUI"
    (root / "models").mkdir(parents=True)
    return root, StandaloneHost.from_root(root)


def _snapshot(tmp_path: Path) -> set[str]:
    return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}


@pytest.mark.parametrize("value,exc,reason", HOSTILE_SAVE_PATHS)
def test_hostile_save_path_is_a_coded_error(value: str, exc: type[ManagerError], reason: str) -> None:
    with pytest.raises(exc) as info:
        safe_save_path(value)
    assert info.value.code in ("path_escape", "model_path_invalid")
    assert info.value.details["reason"] == reason and info.value.details["field"] == "save_path"
    assert info.value.hint


@pytest.mark.parametrize("value,exc,reason", HOSTILE_FILENAMES)
def test_hostile_filename_is_a_coded_error(value: str, exc: type[ManagerError], reason: str) -> None:
    with pytest.raises(exc) as info:
        safe_filename(value)
    assert info.value.details["reason"] == reason and info.value.details["field"] == "filename"


def test_non_text_values_are_refused() -> None:
    with pytest.raises(ModelPathInvalid) as info:
        safe_filename(None)
    assert info.value.details["reason"] == "not_text"
    with pytest.raises(ModelPathInvalid):
        safe_save_path(["loras"])


def test_ordinary_values_pass_and_are_normalised() -> None:
    assert safe_save_path("default") == () and safe_save_path("") == ()
    assert safe_save_path("controlnet/SDXL/controlnet-union-sdxl-1.0") == (
        "controlnet",
        "SDXL",
        "controlnet-union-sdxl-1.0",
    )
    assert safe_save_path("loras\\ltxv//ltx2/") == ("loras", "ltxv", "ltx2")
    assert safe_save_path("./checkpoints") == ("checkpoints",)
    # decomposed e + combining acute becomes the single composed character (NFC)
    assert safe_filename("caf\u0065\u0301.safetensors") == "caf\u00e9.safetensors"
    assert safe_filename("diffusion_pytorch_model.fp16.safetensors") == "diffusion_pytorch_model.fp16.safetensors"
    assert safe_filename("模型.safetensors") == "模型.safetensors"
    assert safe_filename("console.pt") == "console.pt"  # 'con' only as the whole stem


@pytest.mark.parametrize(
    "save_path,filename",
    [
        ("../../outside", "evil.safetensors"),
        ("/tmp/abs", "evil.safetensors"),
        ("checkpoints", "../evil.pt"),
        ("loras/CON", "x.pt"),
        ("loras", "model\u202e.pt"),
        ("checkpoints", "x.pt."),
    ],
)
def test_install_with_hostile_entry_writes_nothing(
    tmp_path: Path, http_server, save_path: str, filename: str, socket_audit_log
) -> None:
    """The check happens before any directory, temp file or socket is made."""
    http_server.static("/m.bin", b"x" * 1000, content_type="application/octet-stream")
    root, host = _tree(tmp_path)
    before = _snapshot(tmp_path)
    entry = ModelEntry(
        name="evil", type="checkpoint", filename=filename, url=http_server.url("/m.bin"), save_path=save_path
    )
    gate = NetworkGate(NetworkPolicy(mode=NetworkMode.PUBLIC))
    with pytest.raises((PathEscape, ModelPathInvalid)):
        asyncio.run(install_entry(entry, gate=gate, folders=load_model_folders(host)))
    assert _snapshot(tmp_path) == before
    assert http_server.count("/m.bin") == 0 and socket_audit_log.inet_connects() == []


def test_placement_stays_inside_its_folder(tmp_path: Path) -> None:
    root, host = _tree(tmp_path)
    folders = load_model_folders(host)
    p = place(
        ModelEntry(name="m", type="lora", filename="m.safetensors", url="https://x/m", save_path="loras/HyperSD/SDXL"),
        folders,
    )
    assert p.path == root / "models" / "loras" / "HyperSD" / "SDXL" / "m.safetensors"
    assert os.path.commonpath([p.path, root / "models"]) == str(root / "models")
    assert p.relpath == "HyperSD/SDXL/m.safetensors" and p.folder == "loras"
