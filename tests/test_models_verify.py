"""Verify: the sha256 cache is reused (counted through an injected hasher), invalidated by changes,
written atomically, tolerant of damage; findings against expectations and the catalog."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from manager.context import Manager
from manager.host import StandaloneHost
from manager.models import (
    Expectation,
    HashCache,
    load_model_folders,
    verify_catalog,
    verify_expectations,
    verify_models,
)
from manager.models.verify import approx_size, sha256_file
from manager.records import ModelEntry


class CountingHasher:
    """The injected hash function: real sha256, and a count of files it actually read."""

    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, path: Path) -> str:
        self.calls.append(path)
        return sha256_file(path)


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "ComfyUI"
    ckpt = root / "models" / "checkpoints"
    ckpt.mkdir(parents=True)
    return root, ckpt


def test_cache_is_reused_across_instances_and_invalidated_by_changes(tmp_path: Path) -> None:
    _, ckpt = _tree(tmp_path)
    model = ckpt / "m.safetensors"
    model.write_bytes(b"a" * 100_000)
    cache_file = tmp_path / "mgr" / "cache" / "model-hashes.json"
    counter = CountingHasher()
    first = HashCache(cache_file, hash_file=counter)
    digest = first.sha256(model)
    assert digest == hashlib.sha256(b"a" * 100_000).hexdigest() and len(counter.calls) == 1
    assert first.sha256(model) == digest and len(counter.calls) == 1  # same instance: cached
    first.save()
    data = json.loads(cache_file.read_text())
    assert data["format"] == 1 and data["entries"][str(model)]["sha256"] == digest
    assert not [p for p in cache_file.parent.iterdir() if p.name.endswith(".tmp")]  # atomic write, no debris

    second = HashCache(cache_file, hash_file=counter)  # a new process, same file
    assert second.sha256(model) == digest and len(counter.calls) == 1 and second.computed == 0

    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched: recomputed
    assert second.sha256(model) == digest and len(counter.calls) == 2
    model.write_bytes(b"b" * 100_000)  # changed: new digest
    assert second.sha256(model) == hashlib.sha256(b"b" * 100_000).hexdigest() and len(counter.calls) == 3


def test_damaged_cache_is_ignored_and_rewritten(tmp_path: Path) -> None:
    _, ckpt = _tree(tmp_path)
    model = ckpt / "m.pt"
    model.write_bytes(b"x")
    cache_file = tmp_path / "model-hashes.json"
    cache_file.write_text("{not json")
    counter = CountingHasher()
    cache = HashCache(cache_file, hash_file=counter)
    cache.sha256(model)
    cache.save()
    assert json.loads(cache_file.read_text())["entries"][str(model)]["sha256"]
    cache_file.write_text(
        json.dumps({"format": 1, "entries": {str(model): {"size": 1, "mtime_ns": 0, "sha256": "../../etc"}}})
    )
    assert HashCache(cache_file, hash_file=counter).lookup(model) is None  # bad entries are dropped


def test_save_merges_with_another_writer(tmp_path: Path) -> None:
    _, ckpt = _tree(tmp_path)
    a, b = ckpt / "a.pt", ckpt / "b.pt"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    cache_file = tmp_path / "model-hashes.json"
    one, two = HashCache(cache_file), HashCache(cache_file)
    one.sha256(a)
    two.sha256(b)
    one.save()
    two.save()
    entries = json.loads(cache_file.read_text())["entries"]
    assert set(entries) == {str(a), str(b)}


def test_verify_expectations_reports_each_kind_of_mismatch(tmp_path: Path) -> None:
    root, ckpt = _tree(tmp_path)
    (ckpt / "SDXL").mkdir()
    good, bad, short = ckpt / "SDXL" / "good.safetensors", ckpt / "bad.safetensors", ckpt / "short.safetensors"
    good.write_bytes(b"good")
    bad.write_bytes(b"tampered")
    short.write_bytes(b"12")
    folders = load_model_folders(StandaloneHost.from_root(root))
    counter = CountingHasher()
    cache = HashCache(tmp_path / "h.json", hash_file=counter)
    expectations = [
        {
            "folder": "checkpoints",
            "name": "SDXL/good.safetensors",
            "sha256": hashlib.sha256(b"good").hexdigest(),
            "size": 4,
        },
        {"folder": "checkpoints", "name": "bad.safetensors", "sha256": hashlib.sha256(b"original").hexdigest()},
        Expectation("checkpoints", "short.safetensors", size=10),
        Expectation("loras", "gone.safetensors", sha256="ab" * 32),
        Expectation("checkpoints", "../../../etc/passwd"),
    ]
    report = verify_expectations(folders, expectations, cache)
    status = {f.name: f.status for f in report.findings}
    assert status == {
        "SDXL/good.safetensors": "ok",
        "bad.safetensors": "sha_mismatch",
        "short.safetensors": "size_mismatch",
        "gone.safetensors": "missing",
        "../../../etc/passwd": "missing",
    }
    assert report.hashed == 2 and len(counter.calls) == 2  # size mismatch is never hashed
    assert {f.name for f in report.mismatches} == {
        "bad.safetensors",
        "short.safetensors",
        "gone.safetensors",
        "../../../etc/passwd",
    }
    again = verify_expectations(folders, expectations, HashCache(tmp_path / "h.json", hash_file=counter))
    assert again.hashed == 0 and len(counter.calls) == 2  # the cache file answered
    assert again.to_dict()["ok"] is False and len(again.to_dict()["mismatches"]) == 4


def test_verify_catalog_flags_truncated_files(tmp_path: Path) -> None:
    root, ckpt = _tree(tmp_path)
    (ckpt / "full.safetensors").write_bytes(b"x" * 2_000_000)
    (ckpt / "cut.safetensors").write_bytes(b"x" * 500_000)
    entries = [
        ModelEntry(name=n, type="checkpoint", filename=f"{n}.safetensors", url=f"https://x/{n}", size="2MB")
        for n in ("full", "cut", "absent")
    ]
    entries.append(
        ModelEntry(
            name="nosize",
            type="checkpoint",
            filename="full.safetensors",
            url="https://x/n",
            save_path="checkpoints",
            size="big",
        )
    )
    counter = CountingHasher()
    report = verify_catalog(
        load_model_folders(StandaloneHost.from_root(root)), entries, HashCache(tmp_path / "h.json", hash_file=counter)
    )
    status = {(f.name, f.status) for f in report.findings}
    assert status == {
        ("full.safetensors", "ok"),
        ("cut.safetensors", "size_suspect"),
        ("full.safetensors", "unchecked"),
    }
    assert counter.calls == [] and report.mismatches[0].name == "cut.safetensors"


def test_approx_size_allows_decimal_and_binary_units() -> None:
    low, high = approx_size("6.46GB")  # type: ignore[misc]
    assert low <= 6_460_000_000 <= high and low <= int(6.46 * 1024**3) <= high
    assert approx_size("") is None and approx_size("n/a") is None
    low, high = approx_size("335MB")  # type: ignore[misc]
    assert low < 335 * 1000**2 < high


def test_verify_models_through_the_manager(tmp_path: Path) -> None:
    root, ckpt = _tree(tmp_path)
    (ckpt / "a.pt").write_bytes(b"abc")
    manager = Manager.standalone(root, env={})
    counter = CountingHasher()
    cache = HashCache.for_manager(manager, hash_file=counter)
    exp = [{"folder": "checkpoints", "name": "a.pt", "sha256": hashlib.sha256(b"abc").hexdigest()}]
    assert verify_models(manager, exp, cache=cache).mismatches == ()
    assert (manager.layout.manager_dir / "cache" / "model-hashes.json").is_file()
    assert verify_models(manager, exp, cache=HashCache.for_manager(manager, hash_file=counter)).hashed == 0
    assert len(counter.calls) == 1
