"""Snapshot documents and the store: format, validation, safe names, save/list/show/remove,
--output, retention, and reading the classic format (JSON and YAML)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from manager.errors import InvalidName, NotFound, SnapshotExists, SnapshotInvalid
from manager.snapshots.classic import from_classic, is_classic, to_classic
from manager.snapshots.model import FORMAT, ModelState, PackState, PythonPackage, Snapshot
from manager.snapshots.store import SnapshotStore, check_name, read_snapshot_file

COMMIT = "a" * 40


def sample(created: str = "2026-01-02T03:04:05.000000Z", reason: str = "manual") -> Snapshot:
    return Snapshot(
        created_at=created,
        reason=reason,
        comfyui="v0.3.60",
        python_version="3.11",
        packs=(
            PackState(
                "example-pack",
                "git",
                True,
                id="example-pack",
                url="https://github.com/a/example-pack",
                commit=COMMIT,
                branch="main",
            ),
            PackState("reg-pack", "cnr", False, id="reg-pack", version="1.2.0", cnr_id="reg-pack"),
            PackState("single.py", "file", True, sha256="b" * 64),
        ),
        python=(
            PythonPackage("numpy", "1.26.4"),
            PythonPackage("mylib", "0.1", "url", "git+https://example.invalid/mylib@" + COMMIT),
            PythonPackage("localwheel", "2.0", "local", "file:///wheels/localwheel-2.0-py3-none-any.whl"),
        ),
        models=(ModelState("checkpoints", "sd/x.safetensors", 1234, "c" * 64),),
        config={"network_mode": "offline"},
        dependencies={"example-pack": ("numpy",)},
    )


def test_round_trip_through_json_is_lossless():
    snap = sample()
    doc = json.loads(json.dumps(snap.to_json()))
    assert doc["format"] == FORMAT and doc["format_version"] == 1
    assert Snapshot.from_dict(doc) == snap
    assert snap.packs[0].key == "git:github.com/a/example-pack"
    assert snap.python[1].requirement.startswith("mylib @ git+https://")
    assert snap.python[0].requirement == "numpy==1.26.4"


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["packs"][0].update(name="../escape"), "packs[0].name"),
        (lambda d: d["packs"][0].update(name="/abs"), "packs[0].name"),
        (lambda d: d["packs"][0].update(name=""), "packs[0].name"),
        (lambda d: d["packs"][0].update(commit="HEAD; rm -rf /"), "packs[0].commit"),
        (lambda d: d["packs"][0].update(kind="weird"), "packs[0].kind"),
        (lambda d: d["packs"][0].update(url="--upload-pack=evil"), "packs[0].url"),
        (lambda d: d["packs"][1].update(version="1.0 && x"), "packs[1].version"),
        (lambda d: d["packs"].append(dict(d["packs"][0])), "packs[3]"),
        (lambda d: d["python"]["packages"][0].update(name="bad name"), "python.packages[0].name"),
        (lambda d: d["python"]["packages"][1].pop("source"), "python.packages[1].source"),
        (lambda d: d["models"][0].update(name="../../etc/passwd"), "models[0]"),
        (lambda d: d.update(format_version=99), "format_version"),
        (lambda d: d.update(format="something-else"), "format"),
        (lambda d: d.update(packs={"not": "a list"}), "packs"),
    ],
)
def test_validation_names_the_bad_field(mutate, field):
    doc = sample().to_json()
    mutate(doc)
    with pytest.raises(SnapshotInvalid) as err:
        Snapshot.from_dict(doc, where="t.json")
    assert err.value.details["field"] == field
    assert err.value.code == "snapshot_invalid" and "t.json" in err.value.message and err.value.hint


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "/abs/path",
        "",
        "   ",
        "a/b",
        "a\\b",
        ".hidden",
        "x..y",
        "..",
        "name with space",
        "x" * 200,
        "nul\x00byte",
    ],
)
def test_hostile_names_are_refused(tmp_path, name):
    store = SnapshotStore(tmp_path / "snaps")
    with pytest.raises(InvalidName) as err:
        store.save(sample(), name)
    assert err.value.code == "invalid_name"
    assert not (tmp_path / "snaps").exists() or not any((tmp_path / "snaps").iterdir())
    with pytest.raises(InvalidName):
        store.load(name)
    with pytest.raises(InvalidName):
        store.remove(name)


def test_check_name_accepts_plain_names_and_drops_json():
    assert check_name("studio-A_1.0@v2+x") == "studio-A_1.0@v2+x"
    assert check_name("before-update.json") == "before-update"


def test_save_list_show_remove(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    assert store.entries() == []
    first = store.save(sample("2026-01-01T00:00:00.000000Z"))
    store.save(sample("2026-03-01T00:00:00.000000Z"), "studio")
    auto = store.save(sample("2026-02-01T00:00:00.000000Z", reason="auto:update_all"))
    assert first.name.endswith("_snapshot") and auto.name.endswith("_auto-update-all")
    assert [e.name for e in store.entries()] == ["studio", auto.name, first.name]  # newest first
    listed = store.entries()[0]
    assert listed.summary["packs"] == 3 and listed.summary["disabled"] == 1 and listed.size > 0
    assert store.load("studio") == sample("2026-03-01T00:00:00.000000Z")
    with pytest.raises(SnapshotExists):
        store.save(sample(), "studio")
    store.save(sample("2026-04-01T00:00:00.000000Z"), "studio", overwrite=True)
    assert store.load("studio").created_at.startswith("2026-04")
    removed = store.remove("studio")
    assert removed.name == "studio" and not Path(removed.path).exists()
    with pytest.raises(NotFound):
        store.load("studio")
    # no temp files left behind by the atomic writes
    assert all(not p.name.startswith(".") for p in (tmp_path / "snaps").iterdir())


def test_same_second_names_never_collide(tmp_path):
    store = SnapshotStore(tmp_path)
    names = {store.save(sample()).name for _ in range(3)}
    assert len(names) == 3


def test_unreadable_file_is_listed_with_its_error_not_hidden(tmp_path):
    store = SnapshotStore(tmp_path)
    store.save(sample(), "good")
    (tmp_path / "broken.json").write_text("{not json")
    entries = {e.name: e for e in store.entries()}
    assert entries["good"].error is None
    assert entries["broken"].error["code"] == "snapshot_invalid"
    with pytest.raises(SnapshotInvalid):
        store.load("broken")


def test_export_output_json_yaml_and_classic(tmp_path):
    snap = sample()
    out = SnapshotStore.export(snap, tmp_path / "out" / "a.json")
    assert read_snapshot_file(out) == snap
    out_yaml = SnapshotStore.export(snap, tmp_path / "b.yaml")
    assert "format_version: 1" in out_yaml.read_text()
    assert read_snapshot_file(out_yaml) == snap
    classic = SnapshotStore.export(snap, tmp_path / "c.json", fmt="classic")
    doc = json.loads(classic.read_text())
    assert doc["git_custom_nodes"] == {"https://github.com/a/example-pack": {"hash": COMMIT, "disabled": False}}
    assert doc["cnr_custom_nodes"] == {}  # the registry pack is disabled
    assert doc["file_custom_nodes"] == [{"filename": "single.py", "disabled": False}]
    assert doc["pips"]["numpy==1.26.4"] == "" and doc["pips"]["mylib"].startswith("git+https://")
    with pytest.raises(InvalidName):
        SnapshotStore.export(snap, tmp_path)


def test_prune_auto_keeps_the_newest_and_never_manual(tmp_path):
    store = SnapshotStore(tmp_path)
    for month in range(1, 6):
        store.save(sample(f"2026-0{month}-01T00:00:00.000000Z", reason="auto:restore"))
    store.save(sample("2025-01-01T00:00:00.000000Z"), "manual-old")
    removed = store.prune_auto(2)
    assert len(removed) == 3
    left = [e.name for e in store.entries()]
    assert len(left) == 3 and "manual-old" in left
    assert all("2026-05" in n or "2026-04" in n or n == "manual-old" for n in left)
    assert store.prune_auto(0) == []


CLASSIC = {
    "comfyui": "0123456789abcdef0123456789abcdef01234567",
    "git_custom_nodes": {
        "https://github.com/ltdrdata/ComfyUI-Impact-Pack": {"hash": "1" * 40, "disabled": False},
        "https://github.com/x/Old-Pack.git": {"hash": "2" * 40, "disabled": True},
    },
    "cnr_custom_nodes": {"comfyui-kjnodes": "1.0.8"},
    "file_custom_nodes": [{"filename": "my_node.py", "disabled": False}],
    "pips": {
        "numpy==1.26.4": "",
        "torch==2.4.0+cu121": "",
        "mylib": "git+https://github.com/x/mylib@abc",
        "localpkg": "file:///opt/wheels/localpkg-1.0-py3-none-any.whl",
        "-e git+https://x/y#egg=y": "",
    },
}


def test_classic_document_is_read():
    assert is_classic(CLASSIC) and not is_classic(sample().to_json())
    snap = from_classic(CLASSIC, where="classic.json", created_at="2024-05-01T10:00:00.000000Z")
    assert snap.origin == "classic" and snap.comfyui == CLASSIC["comfyui"]
    packs = {p.name: p for p in snap.packs}
    assert packs["ComfyUI-Impact-Pack"].commit == "1" * 40 and packs["ComfyUI-Impact-Pack"].enabled
    assert packs["Old-Pack"].kind == "git" and not packs["Old-Pack"].enabled
    assert packs["comfyui-kjnodes"].kind == "cnr" and packs["comfyui-kjnodes"].version == "1.0.8"
    assert packs["my_node.py"].kind == "file"
    pips = {p.name: p for p in snap.python}
    assert pips["numpy"].version == "1.26.4" and pips["numpy"].kind == "index"
    assert pips["torch"].version == "2.4.0+cu121"
    assert pips["mylib"].kind == "url" and pips["localpkg"].kind == "local"
    assert any("-e git+" in n for n in snap.notes)  # skipped, and said so
    back = to_classic(snap)
    assert back["git_custom_nodes"] == CLASSIC["git_custom_nodes"]
    assert back["cnr_custom_nodes"] == CLASSIC["cnr_custom_nodes"]


def test_classic_files_json_and_yaml_from_the_store(tmp_path):
    (tmp_path / "2024-05-01_10-00-00_snapshot.json").write_text(json.dumps(CLASSIC))
    import yaml

    (tmp_path / "exported.yaml").write_text(yaml.safe_dump(CLASSIC))
    store = SnapshotStore(tmp_path)
    entries = {e.name: e for e in store.entries()}
    assert entries["2024-05-01_10-00-00_snapshot"].origin == "classic"
    assert entries["2024-05-01_10-00-00_snapshot"].created_at.startswith("2024-05-01")
    assert store.load("exported").origin == "classic"


def test_hostile_classic_entries_are_refused(tmp_path):
    bad = dict(CLASSIC, file_custom_nodes=[{"filename": "../../evil.py", "disabled": False}])
    with pytest.raises(SnapshotInvalid):
        from_classic(bad)
    bad2 = dict(CLASSIC, git_custom_nodes={"https://x/y": {"hash": "not-a-commit", "disabled": False}})
    with pytest.raises(SnapshotInvalid) as err:
        from_classic(bad2)
    assert "commit" in err.value.details["field"]


def test_damaged_files_are_refused_with_a_code(tmp_path):
    for name, body in (("a.json", b"\xff\xfe garbage"), ("b.json", b"[1, 2]"), ("c.yaml", b"key: [unclosed")):
        (tmp_path / name).write_bytes(body)
        with pytest.raises(SnapshotInvalid):
            read_snapshot_file(tmp_path / name)
    with pytest.raises(NotFound):
        read_snapshot_file(tmp_path / "missing.json")
    assert os.listdir(tmp_path)  # nothing was deleted


def test_import_file_validates_and_stores_under_a_safe_name(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    import yaml

    (tmp_path / "studio.yaml").write_text(yaml.safe_dump(CLASSIC))
    saved = store.import_file(tmp_path / "studio.yaml")
    assert saved.name == "studio" and saved.origin == "classic"
    assert store.load("studio").packs == from_classic(CLASSIC).packs
    ours = SnapshotStore.export(sample(), tmp_path / "box-a.json")
    assert store.import_file(ours, "box-a").summary["packs"] == 3
    with pytest.raises(SnapshotExists):
        store.import_file(ours, "box-a")
    with pytest.raises(InvalidName):
        store.import_file(ours, "../escape")
    (tmp_path / "bad.json").write_text(
        '{"format": "comfyui-offline-manager/snapshot", "format_version": 1, '
        '"created_at": "x", "packs": [{"name": "../../x", "kind": "git"}]}'
    )
    with pytest.raises(SnapshotInvalid):
        store.import_file(tmp_path / "bad.json")
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == ["box-a.json", "studio.json"]
