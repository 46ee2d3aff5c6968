"""Model folders: the default layout, extra_model_paths.yaml with ComfyUI's rules, placement."""

from __future__ import annotations

from pathlib import Path

import pytest

from manager.errors import ModelFolderUnknown
from manager.host import StandaloneHost
from manager.layout import Layout
from manager.models import apply_extra_paths, load_model_folders, place
from manager.records import ModelEntry


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    (root / "models").mkdir(parents=True)
    return root


def _entry(**kw: str) -> ModelEntry:
    base = dict(
        name="m", type="checkpoint", filename="m.safetensors", url="https://example.invalid/m", save_path="default"
    )
    base.update(kw)
    return ModelEntry(**base)  # type: ignore[arg-type]


def test_default_layout_matches_comfyui(tmp_path: Path) -> None:
    root = _root(tmp_path)
    folders = load_model_folders(StandaloneHost.from_root(root))
    models = root / "models"
    assert folders.dirs("checkpoints")[0] == models / "checkpoints"
    assert folders.dirs("text_encoders")[:2] == (models / "text_encoders", models / "clip")
    assert folders.dirs("clip") == folders.dirs("text_encoders")  # legacy alias
    assert folders.dirs("unet") == folders.dirs("diffusion_models")
    # main.py adds output/<name> as extra search paths, after the models ones
    assert folders.dirs("loras")[-1] == root / "output" / "loras"
    assert folders.notices == () and folders.yaml_files == ()


def test_extra_model_paths_yaml_semantics(tmp_path: Path) -> None:
    root = _root(tmp_path)
    home = tmp_path / "home"
    (root / "extra_model_paths.yaml").write_text(
        "a111:\n"
        "    base_path: ../a1111\n"  # relative to the yaml's folder
        "    checkpoints: models/Stable-diffusion\n"
        "    loras: |\n"  # several paths, one per line
        "         models/Lora\n"
        "         models/LyCORIS\n"
        "    clip: models/text\n"  # legacy name -> text_encoders
        "    ipadapter: models/ipadapter\n"  # a name ComfyUI does not know
        "shared:\n"
        "    base_path: $SHARED_MODELS\n"
        "    is_default: true\n"
        "    vae: vae\n"
        "    checkpoints: ckpt\n"
        "homey:\n"
        "    base_path: ~/m\n"
        "    upscale_models: up\n"
        "nobase:\n"
        "    embeddings: rel/emb\n"  # no base_path: relative to the yaml folder
        "empty_section:\n",
        encoding="utf-8",
    )
    env_home = {"HOME": str(home), "SHARED_MODELS": str(tmp_path / "nas")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env_home.items():
            mp.setenv(k, v)
        folders = load_model_folders(StandaloneHost.from_root(root))
    a1111 = tmp_path / "a1111"
    models = root / "models"
    assert folders.yaml_files == (root / "extra_model_paths.yaml",)
    assert folders.dirs("checkpoints") == (
        tmp_path / "nas" / "ckpt",
        models / "checkpoints",
        a1111 / "models" / "Stable-diffusion",
        root / "output" / "checkpoints",
    )
    assert folders.dirs("loras")[1:3] == (a1111 / "models" / "Lora", a1111 / "models" / "LyCORIS")
    assert a1111 / "models" / "text" in folders.dirs("text_encoders")
    assert folders.dirs("ipadapter") == (a1111 / "models" / "ipadapter",)
    assert folders.dirs("vae")[0] == tmp_path / "nas" / "vae"
    assert folders.dirs("upscale_models")[-1] == home / "m" / "up"
    assert folders.dirs("embeddings")[-1] == root / "rel" / "emb"
    assert folders.notices == ()

    # is_default moved checkpoints off the models tree: downloads follow it, by type and by save_path
    p = place(_entry(), folders)
    assert p.path == tmp_path / "nas" / "ckpt" / "m.safetensors"
    p = place(_entry(save_path="checkpoints/SDXL"), folders)
    assert p.path == tmp_path / "nas" / "ckpt" / "SDXL" / "m.safetensors"
    assert models / "checkpoints" in p.search  # an existing copy there counts
    # a non-default extra path does not move downloads
    p = place(_entry(type="lora", save_path="loras/SDXL"), folders)
    assert p.path == models / "loras" / "SDXL" / "m.safetensors"
    assert a1111 / "models" / "Lora" in p.search


def test_is_default_moves_an_existing_path_to_the_front(tmp_path: Path) -> None:
    table = {"vae": [Path("/a"), Path("/b")]}
    yaml_file = tmp_path / "x.yaml"
    yaml_file.write_text("s:\n  is_default: true\n  vae: /b\n", encoding="utf-8")
    assert apply_extra_paths(table, yaml_file) == []
    assert table["vae"] == [Path("/b"), Path("/a")]
    yaml_file.write_text("s:\n  vae: /a\n", encoding="utf-8")  # already present: not duplicated
    apply_extra_paths(table, yaml_file)
    assert table["vae"] == [Path("/b"), Path("/a")]


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("a: [unclosed\n", "could not be read"),
        ("- just\n- a list\n", "not a mapping"),
        ("s:\n  checkpoints: 42\n  vae: ok\n", "is not a path"),
        ("s: text\n", "not a mapping"),
        ("s:\n  base_path: 3\n  vae: x\n", "base_path is not text"),
    ],
)
def test_broken_yaml_is_reported_not_fatal(tmp_path: Path, text: str, fragment: str) -> None:
    root = _root(tmp_path)
    (root / "extra_model_paths.yaml").write_text(text, encoding="utf-8")
    folders = load_model_folders(StandaloneHost.from_root(root))
    assert len(folders.notices) == 1 and fragment in folders.notices[0].message
    assert folders.notices[0].code == "extra_model_paths_invalid"
    assert folders.dirs("checkpoints")[0] == root / "models" / "checkpoints"  # the rest still works


def test_extra_yaml_files_apply_after_the_default_one(tmp_path: Path) -> None:
    root = _root(tmp_path)
    extra = tmp_path / "cli.yaml"
    extra.write_text("x:\n  is_default: true\n  loras: /mnt/loras\n", encoding="utf-8")
    folders = load_model_folders(StandaloneHost.from_root(root), extra_yaml=[extra])
    assert folders.dirs("loras")[0] == Path("/mnt/loras") and folders.yaml_files == (extra,)


class _FolderPathsHost:
    """A host that already reports ComfyUI's folder_paths (like glob/comfy_host.ComfyHost)."""

    def __init__(self, root: Path, table: dict[str, list[Path]]) -> None:
        self.layout = Layout.from_root(root)
        self._table = table

    def model_folders(self) -> dict[str, list[Path]]:
        return {k: list(v) for k, v in self._table.items()}


def test_comfy_host_folders_are_used_as_given(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / "extra_model_paths.yaml").write_text("s:\n  is_default: true\n  vae: /nowhere\n", encoding="utf-8")
    table = {
        "vae": [root / "models" / "vae"],
        "ipadapter": [tmp_path / "ipa"],
        "download_model_base": [tmp_path / "dl"],
    }
    folders = load_model_folders(_FolderPathsHost(root, table))  # type: ignore[arg-type]
    assert folders.dirs("vae") == (root / "models" / "vae",)  # yaml already applied by ComfyUI
    assert folders.models_base == tmp_path / "dl" and not folders.known("download_model_base")
    # a node pack registered "ipadapter" outside the models tree: downloads follow the registration
    p = place(_entry(type="IP-Adapter", save_path="ipadapter"), folders)
    assert p.path == tmp_path / "ipa" / "m.safetensors" and p.kind == "custom"
    assert p.search == (tmp_path / "dl" / "ipadapter",)
    # an unregistered folder name lands under download_model_base
    p = place(_entry(type="sam", save_path="sams"), folders)
    assert p.path == tmp_path / "dl" / "sams" / "m.safetensors"
    p = place(_entry(type="VAE"), folders)
    assert p.path == root / "models" / "vae" / "m.safetensors" and p.kind == "comfy"


@pytest.mark.parametrize(
    "type_,folder",
    [
        ("checkpoint", "checkpoints"),
        ("VAE", "vae"),
        ("upscale", "upscale_models"),
        ("clip", "text_encoders"),
        ("diffusion_model", "diffusion_models"),
        ("T2I-Adapter", "controlnet"),
        ("TAESD", "vae_approx"),
        ("embedding", "embeddings"),
        ("unclip", "checkpoints"),
        ("lora", "loras"),
    ],
)
def test_default_save_path_maps_by_type(tmp_path: Path, type_: str, folder: str) -> None:
    folders = load_model_folders(StandaloneHost.from_root(_root(tmp_path)))
    p = place(_entry(type=type_), folders)
    assert p.folder == folder and p.path == folders.dirs(folder)[0] / "m.safetensors"


def test_unknown_type_with_default_save_path_is_reported(tmp_path: Path) -> None:
    folders = load_model_folders(StandaloneHost.from_root(_root(tmp_path)))
    with pytest.raises(ModelFolderUnknown) as info:
        place(_entry(type="Ultralytics"), folders)
    assert info.value.code == "model_folder_unknown" and "Ultralytics" in info.value.message


def test_save_path_spellings(tmp_path: Path) -> None:
    root = _root(tmp_path)
    folders = load_model_folders(StandaloneHost.from_root(root))
    models = root / "models"
    # diffusion_models' first directory is models/unet (ComfyUI order) but save_path names the folder
    p = place(_entry(type="diffusion_model", save_path="diffusion_models/FLUX1"), folders)
    assert p.path == models / "diffusion_models" / "FLUX1" / "m.safetensors" and models / "unet" in p.search
    # a legacy spelling keeps the channel's folder (ComfyUI lists models/clip under text_encoders)
    p = place(_entry(type="clip", save_path="clip/t5"), folders)
    assert p.path == models / "clip" / "t5" / "m.safetensors" and p.folder == "text_encoders"
    assert p.relpath == "t5/m.safetensors"
    # node-pack folders land under models/
    p = place(_entry(type="Ultralytics", save_path="ultralytics/bbox"), folders)
    assert p.path == models / "ultralytics" / "bbox" / "m.safetensors" and p.kind == "custom"
