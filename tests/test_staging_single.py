"""A single-rename transaction (an install placing a new pack): journalled, not fsynced, one move only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from manager.layout import Layout
from manager.operations.staging import RenameTxn, prepare_tree


def _tree(tmp_path: Path) -> Layout:
    root = tmp_path / "ComfyUI"
    (root / "custom_nodes").mkdir(parents=True)
    (root / "user").mkdir()
    return Layout.from_root(root)


def test_one_move_is_journalled_and_a_second_is_refused(tmp_path: Path):
    layout = _tree(tmp_path)
    staged = layout.staging_dir / "pack-1234"
    (staged / "pack").mkdir(parents=True)
    other = layout.staging_dir / "other-5678"
    other.mkdir()
    seen: list[dict] = []
    with pytest.raises(RuntimeError, match="second move"):
        with RenameTxn(layout, label="install pack", single=True) as txn:
            txn.move(staged / "pack", layout.custom_nodes / "pack")
            seen.append(json.loads(txn.journal.read_text()))  # written before the rename
            txn.move(other, layout.custom_nodes / "other")
    assert seen[0]["moves"] == [[str(staged / "pack"), str(layout.custom_nodes / "pack")]]
    # the error rolled the first move back; nothing of the transaction is left
    assert (staged / "pack").is_dir() and not (layout.custom_nodes / "pack").exists()
    assert not any(p.name.startswith(".txn-") for p in layout.staging_dir.iterdir())


def test_a_kill_before_the_commit_is_rolled_back_by_the_next_operation(tmp_path: Path):
    layout = _tree(tmp_path)
    staged = layout.staging_dir / "pack-1234" / "pack"
    staged.mkdir(parents=True)
    txn = RenameTxn(layout, label="install pack", single=True)
    txn.move(staged, layout.custom_nodes / "pack")  # ... and the process dies here: no commit
    assert (layout.custom_nodes / "pack").is_dir() and txn.journal.is_file()
    assert not [p for p in os.listdir(layout.staging_dir) if p.endswith(".tmp")]
    notes = prepare_tree(layout)
    assert any("rolled back" in n for n in notes)
    assert not (layout.custom_nodes / "pack").exists() and not layout.staging_dir.exists()
