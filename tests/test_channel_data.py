"""The channel DB shipped in tests/data/: unpacked once, checked, and never silently replaced."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support import channel_data

FILES = {
    "default/custom-node-list.json",
    "default/extension-node-map.json",
    "default/model-list.json",
    "default/alter-list.json",
    "default/github-stats.json",
    "dev/custom-node-list.json",
}


def test_the_fixture_uses_the_shipped_copy_unless_cm_channel_db_says_otherwise(channel_db: Path):
    chosen = os.environ.get(channel_data.ENV, "").strip()
    assert channel_db == (Path(chosen) if chosen else channel_data.unpack())
    assert all((channel_db / rel).is_file() for rel in FILES)
    assert "custom_nodes" in json.loads((channel_db / "default" / "custom-node-list.json").read_bytes())


def test_unpacked_once_then_reused_and_repaired_when_damaged(tmp_path: Path):
    first = channel_data.unpack(root=tmp_path)
    assert {str(p.relative_to(first)) for p in first.rglob("*.json")} >= FILES
    stamp = (first / ".unpacked.json").stat().st_mtime_ns
    assert channel_data.unpack(root=tmp_path) == first  # intact: not unpacked again
    assert (first / ".unpacked.json").stat().st_mtime_ns == stamp
    size = (first / "default" / "model-list.json").stat().st_size
    (first / "default" / "model-list.json").write_text("{}")  # a test wrote where it must not
    again = channel_data.unpack(root=tmp_path)
    assert again == first and (again / "default" / "model-list.json").stat().st_size == size
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging folder left


def test_a_wrong_cm_channel_db_is_an_error_not_a_fallback(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(channel_data.ENV, str(tmp_path))
    with pytest.raises(channel_data.ChannelDataError, match="CM_CHANNEL_DB=.* has no default/custom-node-list.json"):
        channel_data.channel_db()
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "custom-node-list.json").write_text('{"custom_nodes": []}')
    assert channel_data.channel_db() == tmp_path
    monkeypatch.setenv(channel_data.ENV, "")  # empty: the shipped copy
    assert channel_data.channel_db().name.startswith("channel-db-2026-08-19-")


def test_a_missing_archive_says_how_to_restore_it(tmp_path: Path):
    with pytest.raises(channel_data.ChannelDataError, match="git checkout --"):
        channel_data.unpack(archive=tmp_path / "tests" / "data" / "gone.tar.xz", root=tmp_path)
