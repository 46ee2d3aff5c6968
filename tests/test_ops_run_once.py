"""Per-run fixed costs stay per run (issue 20): one ``Ops`` (a task run; a restore's many packs)
reads the known-compromise list once and runs ``prepare_tree`` once, and the list still refuses a
later pack of the same run by hash, and a list that does not parse still refuses every pack."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from manager.errors import CompromiseListInvalid, PackCompromised
from manager.operations import Ops, Reporter
from manager.operations.install import install
from manager.records import PolicyDecision
from support.ops_fixtures import build_zip, make_env

ALLOW_LOCAL = PolicyDecision.allow("install", "local_path", "test")
BAD = b"VALUE = 'listed'\n"


class _Opens:
    """Paths opened while ``active`` (a real audit hook: our code runs unpatched)."""

    def __init__(self) -> None:
        self.active = False
        self.paths: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.active and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            self.paths.append(os.fsdecode(args[0]))


def _zips(tmp_path: Path) -> list[Path]:
    return [
        build_zip(tmp_path / f"{name}.zip", {"__init__.py": body}, top=name)
        for name, body in (("first", b"X = 1\n"), ("second", b"X = 2\n"), ("third", BAD))
    ]


def test_one_run_reads_the_list_once_and_still_refuses_a_listed_file(tmp_path: Path):
    env = make_env(tmp_path, security_level="weak", deps=False)
    listed = env.root / "user" / "__manager" / "compromised.list"
    listed.write_text(f"sha256:{hashlib.sha256(BAD).hexdigest()} # test entry\n")
    opens = _Opens()
    try:
        ops = Ops(env.manager)
        first, second, third = _zips(tmp_path)
        opens.active = True
        install(ops, str(first), Reporter(), policy=ALLOW_LOCAL)
        install(ops, str(second), Reporter(), policy=ALLOW_LOCAL)
        with pytest.raises(PackCompromised) as refused:
            install(ops, str(third), Reporter(), policy=ALLOW_LOCAL)
        opens.active = False
        assert "the file __init__.py" in refused.value.message
        assert [p for p in opens.paths if p == str(listed)] == [str(listed)]  # read once for three packs
        assert (env.custom_nodes / "first").is_dir() and (env.custom_nodes / "second").is_dir()
        assert not (env.custom_nodes / "third").exists()
        staging = env.manager.layout.staging_dir
        assert not staging.exists() or not any(staging.iterdir())  # the refused pack's staging is gone
    finally:
        opens.active = False
        env.close()


def test_a_list_that_does_not_parse_refuses_every_pack_of_the_run(tmp_path: Path):
    env = make_env(tmp_path, security_level="weak", deps=False)
    (env.root / "user" / "__manager" / "compromised.list").write_text("not an entry\n")
    try:
        ops = Ops(env.manager)
        for archive in _zips(tmp_path)[:2]:
            with pytest.raises(CompromiseListInvalid):
                install(ops, str(archive), Reporter(), policy=ALLOW_LOCAL)
        assert sorted(p.name for p in env.custom_nodes.iterdir() if not p.name.startswith(".")) == []
    finally:
        env.close()


def test_later_steps_of_a_run_keep_its_kept_folders(tmp_path: Path):
    """``prepare_tree`` runs once per run and spares ``keep`` (a restore's prefetched clones) in every
    verb, not only installs: a later step of the run leaves the kept folder in place."""
    env = make_env(tmp_path, security_level="weak", deps=False)
    try:
        staging = env.manager.layout.staging_dir
        staging.mkdir(parents=True, exist_ok=True)
        kept = staging / "prefetch-test"
        kept.mkdir()
        leftover = staging / "leftover-of-a-kill"
        leftover.mkdir()
        ops = Ops(env.manager, keep=(kept,))
        first, second, _ = _zips(tmp_path)
        install(ops, str(first), Reporter(), policy=ALLOW_LOCAL)
        assert kept.is_dir() and not leftover.exists()  # the first step cleaned up, sparing keep
        from manager.operations.toggle import disable

        disable(ops, "first", Reporter())
        install(ops, str(second), Reporter(), policy=ALLOW_LOCAL)
        assert kept.is_dir()
    finally:
        env.close()
