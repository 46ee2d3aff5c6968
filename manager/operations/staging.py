"""The stage-and-rename transaction that keeps ``custom_nodes/`` whole.

- New content is built in ``custom_nodes/.cm-staging.disabled/<name>-<random>/`` (same
  filesystem, ignored by ComfyUI and by the inventory).
- Moves into, out of and inside ``custom_nodes/`` (and, for a bundle import, inside the manager
  data folder) go through a ``RenameTxn``: each planned
  rename is written to a journal (``.txn-<random>.json`` in the staging folder) *before* it
  happens, so an error rolls back in this process and a SIGKILL is rolled back by the next
  operation (``prepare_tree``), which then deletes every staging leftover. A transaction that
  knows all its moves up front (``RenameTxn.plan``: a bundle import) journals them in one write
  and one fsync; undoing a planned move that never happened is a no-op (its destination is
  missing), so recovery reads such a journal like any other.
- Nothing is ever renamed onto an existing path.
- Our working folders (``.disabled/``, staging, trash) and every entry in them must be real,
  not symbolic links: ``prepare_tree`` checks them (``Layout.check_working_folders``) before
  anything is written, and every rename checks the folders it touches again.

Operations run inside the queue's operations lock, so ``prepare_tree`` never races a live
transaction of another process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import PackConflict, WorkingFolderLink
from ..fsops import atomic_write_json, refuse_links
from ..layout import Layout, ensure_inside

__all__ = [
    "RenameTxn",
    "new_staging_dir",
    "tidy_staging",
    "prepare_tree",
    "remove_tree",
    "carry_over_user_files",
    "TRASH_MANIFEST",
    "JOURNAL_PREFIX",
]

JOURNAL_PREFIX = ".txn-"
TRASH_MANIFEST = "manifest.json"
log = logging.getLogger("offline_manager.operations")


def remove_tree(path: Path) -> None:
    """Delete a file, link or folder; a missing path is fine, other errors are logged."""

    def onerror(_func: Any, failed: str, exc: Any) -> None:
        log.warning("could not remove %s: %s", failed, exc[1] if isinstance(exc, tuple) else exc)

    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    elif path.exists():
        # A child of a killed Manager may still be dying inside the folder: retry briefly.
        for _ in range(20):
            shutil.rmtree(path, onerror=onerror if _ == 19 else _ignore)
            if not path.exists():
                return
            time.sleep(0.05)


def _ignore(*_args: Any) -> None:
    return None


def tidy_staging(layout: Layout) -> None:
    """Remove the staging folder itself when nothing is left in it (the tree looks untouched)."""
    try:
        layout.staging_dir.rmdir()
    except FileNotFoundError:
        return
    except OSError:
        return  # not empty: another entry or journal is live


def new_staging_dir(layout: Layout, name: str) -> Path:
    """A fresh, empty ``<staging>/<name>-<random>/`` folder (the staging folder is checked to be a
    real folder first: a link there would make the fetch write through it)."""
    refuse_links(layout.staging_dir, layout.custom_nodes, what="staging folder")
    layout.staging_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        path = layout.staging_dir / f"{name}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a staging folder in {layout.staging_dir}")


class RenameTxn:
    """A journalled sequence of renames inside ``custom_nodes/``: all happen, or none.

    ``move`` refuses to overwrite (``PackConflict``). ``rollback`` undoes completed moves in
    reverse order; ``commit`` forgets the journal. Use as a context manager: an exception
    inside the block rolls back, a clean exit commits.
    """

    def __init__(self, layout: Layout, *, label: str = "", root: Path | None = None, single: bool = False) -> None:
        self.layout = layout
        self.label = label
        # one rename only (an install placing a new pack): the rename is atomic by itself, so the
        # journal (kept for a kill before the commit) is not fsynced: a power loss leaves the
        # rename done or not done, never half a transaction
        self.single = single
        # custom_nodes/ (packs) or the manager data folder (the stores a bundle import fills)
        self.root = root if root is not None else layout.custom_nodes
        if self.root not in (layout.custom_nodes, layout.manager_dir):
            raise ValueError(f"RenameTxn root must be custom_nodes or the manager folder, not {self.root}")
        self.moves: list[tuple[str, str]] = []  # done, in order (an in-process rollback undoes these)
        self.journalled: list[tuple[str, str]] = []  # in the journal: done, being done, or planned
        self._planned: set[tuple[str, str]] = set()
        self.journal = layout.staging_dir / f"{JOURNAL_PREFIX}{secrets.token_hex(6)}.json"
        self.done = False
        self._staging_existed = layout.staging_dir.exists()  # leave the tree as we found it

    def _write(self) -> None:
        doc = {"format": 1, "label": self.label, "pid": os.getpid(), "started": time.time(), "moves": self.journalled}
        if not self.single:
            atomic_write_json(self.journal, doc)
            return
        tmp = self.journal.with_name(self.journal.name + ".tmp")  # a leftover is a staging entry: removed
        tmp.write_text(json.dumps(doc) + "\n", encoding="utf-8")
        os.replace(tmp, self.journal)

    def plan(self, moves: Sequence[tuple[Path, Path]]) -> None:
        """Journal every move this transaction will make, in one write and one fsync, before the
        first of them: ``move`` then writes nothing for a planned pair (an unplanned one is still
        journalled before it happens). A kill part-way leaves planned moves that never happened;
        recovery skips those (their destination does not exist)."""
        if self.moves or self.journalled:
            raise RuntimeError(f"{self.label}: plan() must come before the first move")
        pairs = [(str(src), str(dst)) for src, dst in moves]
        for src, dst in pairs:
            ensure_inside(Path(src).parent, self.root)
            ensure_inside(Path(dst).parent, self.root)
        self.layout.staging_dir.mkdir(parents=True, exist_ok=True)
        self.journalled = pairs
        self._planned = set(pairs)
        self._write()

    def move(self, src: Path, dst: Path) -> None:
        """Rename ``src`` to ``dst`` (both inside the root, ``dst`` must not exist)."""
        if self.single and self.moves:
            raise RuntimeError(f"{self.label}: a single-rename transaction was asked for a second move")
        root = self.root
        ensure_inside(src.parent, root)
        ensure_inside(dst.parent, root)
        if root == self.layout.custom_nodes:
            _check_move(self.layout, src, dst)
        else:
            refuse_links(src.parent, self.layout.data_anchor, what="folder of the entry moved")
            refuse_links(dst.parent, self.layout.data_anchor, what="destination folder")
        if os.path.lexists(dst):
            raise PackConflict(
                f"{dst} already exists; refusing to overwrite it with {src.name}",
                hint="Remove or rename the existing copy first (uninstall, or disable/enable "
                "it), then retry. Nothing was changed.",
                details={"source": str(src), "destination": str(dst)},
            )
        dst.parent.mkdir(parents=True, exist_ok=True)
        pair = (str(src), str(dst))
        planned = pair in self._planned
        if not planned:
            self.layout.staging_dir.mkdir(parents=True, exist_ok=True)
            self.journalled.append(pair)
            self._write()  # journal first: a kill after the rename is undone
        self.moves.append(pair)
        try:
            os.rename(src, dst)
        except BaseException:
            self.moves.pop()
            if not planned:  # a planned pair stays: undoing a move that never happened is a no-op
                self.journalled.pop()
                self._write()
            raise

    def commit(self) -> None:
        self.done = True
        with contextlib.suppress(FileNotFoundError):
            self.journal.unlink()
        if not self._staging_existed:
            tidy_staging(self.layout)

    def rollback(self) -> list[str]:
        """Undo completed moves (newest first); returns what could not be undone."""
        problems = _undo(self.moves)
        self.moves = []
        self.done = True
        with contextlib.suppress(FileNotFoundError):
            self.journal.unlink()
        if not self._staging_existed:
            tidy_staging(self.layout)
        return problems

    def __enter__(self) -> RenameTxn:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.done:
            return
        if exc_type is None:
            self.commit()
        else:
            for problem in self.rollback():
                log.error("rollback: %s", problem)


def _check_move(layout: Layout, src: Path, dst: Path) -> None:
    """The folders of a rename are real folders (no link between ``custom_nodes/`` and them), and
    a link never moves into or out of ``.disabled/`` or out of staging (a pack the user linked
    into ``custom_nodes/`` may still go to the trash and come back)."""
    root = layout.custom_nodes
    refuse_links(src.parent, root, what="folder of the entry moved")
    refuse_links(dst.parent, root, what="destination folder")
    refuse_links(layout.staging_dir, root, what="staging folder")
    if not os.path.islink(src):
        return
    staging = layout.staging_dir
    if layout.disabled_dir in (src.parent, dst.parent) or src.parent == staging or staging in src.parents:
        try:
            target = os.readlink(src)
        except OSError:
            target = ""
        raise WorkingFolderLink(
            f"{src} is a symbolic link (to {target or '?'}); links never move into or out of "
            f"{layout.disabled_dir.name}/ or staging, so nothing was moved",
            hint=f"Remove the link (rm {src}) and, for a pack you linked in, link it again where you want it.",
            details={"path": str(src), "target": target, "destination": str(dst)},
        )


def _undo(moves: Iterable[Any]) -> list[str]:
    problems: list[str] = []
    for src, dst in reversed(list(moves)):
        if os.path.lexists(dst) and not os.path.lexists(src):
            try:
                Path(src).parent.mkdir(parents=True, exist_ok=True)
                os.rename(dst, src)
            except OSError as exc:
                problems.append(f"could not move {dst} back to {src}: {exc}")
        # dst missing: that move never happened; both present: leave both, never overwrite
    return problems


def _recover_journals(layout: Layout) -> list[str]:
    notes: list[str] = []
    try:
        journals = sorted(
            p for p in layout.staging_dir.iterdir() if p.name.startswith(JOURNAL_PREFIX) and p.name.endswith(".json")
        )
    except FileNotFoundError:
        return notes
    for journal in journals:
        try:
            data = json.loads(journal.read_text(encoding="utf-8"))
            moves = [(str(s), str(d)) for s, d in data.get("moves", [])]
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            notes.append(f"unreadable journal {journal.name} ignored: {exc}")
            moves = []
        safe = []
        for src, dst in moves:
            try:  # only our own tree is ever touched (packs, or the stores of a bundle import)
                roots = (layout.custom_nodes, layout.manager_dir)
                ensure_inside(Path(src).parent, *roots)
                ensure_inside(Path(dst).parent, *roots)
                safe.append((src, dst))
            except Exception as exc:  # PathEscape: a tampered journal
                notes.append(f"journal {journal.name}: skipped move outside the tree: {exc}")
        problems = _undo(safe)
        notes.extend(problems)
        if safe:
            notes.append(f"rolled back an interrupted operation ({data.get('label', '') or journal.name})")
        with contextlib.suppress(FileNotFoundError):
            journal.unlink()
    return notes


def _clean_trash(layout: Layout) -> list[str]:
    """Drop trash entries an interrupted uninstall/restore left without a payload."""
    notes: list[str] = []
    try:
        entries = list(layout.trash_dir.iterdir())
    except FileNotFoundError:
        return notes
    for entry in entries:
        if not entry.is_dir() or entry.is_symlink():
            continue
        payload = [c for c in entry.iterdir() if c.name != TRASH_MANIFEST]
        if not payload:
            remove_tree(entry)
            notes.append(f"removed an empty trash entry {entry.name}")
    return notes


def prepare_tree(layout: Layout, *, keep: Iterable[Path] = ()) -> list[str]:
    """Make the tree consistent after any crash: roll back journals, then empty the staging
    folder (except ``keep``) and drop half-made trash entries. Returns notes for the log.

    First of all it checks our working folders (``Layout.check_working_folders``): a link as one
    of them, on the way to one, or as an entry inside ``.disabled/``, staging or trash is
    ``WorkingFolderLink``, raised before anything is read through it, written or deleted."""
    layout.check_working_folders()
    notes = _recover_journals(layout)
    kept = {Path(k) for k in keep}
    try:
        leftovers = [p for p in layout.staging_dir.iterdir() if p not in kept]
    except FileNotFoundError:
        leftovers = []
    if os.path.lexists(layout.bundle_staging_dir):  # an interrupted bundle import (its journal rolled back above)
        leftovers.append(layout.bundle_staging_dir)
    for path in leftovers:
        remove_tree(path)
    if leftovers:
        notes.append(f"removed {len(leftovers)} leftover staging entr{'y' if len(leftovers) == 1 else 'ies'}")
    notes += _clean_trash(layout)
    if notes:
        tidy_staging(layout)
    for note in notes:
        log.info("prepare: %s", note)
    return notes


def _files(root: Path) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in filenames:
            yield name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                yield name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")


def carry_over_user_files(old: Path, new: Path, old_tracking: Iterable[str]) -> list[str]:
    """Copy files of ``old`` that its ``.tracking`` does not list (user files: settings,
    downloaded models) into ``new`` where ``new`` has no such file. Hard links when possible.
    Files listed in the old ``.tracking`` are left behind: that is how files a new version
    dropped disappear."""
    tracked = {t.strip().replace("\\", "/") for t in old_tracking} | {".tracking"}
    carried: list[str] = []
    for rel in _files(old):
        if rel in tracked or rel.startswith("__pycache__/") or "/__pycache__/" in rel:
            continue
        src, dst = old / rel, new / rel
        if os.path.lexists(dst):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        carried.append(rel)
    return carried
