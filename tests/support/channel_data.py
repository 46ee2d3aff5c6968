"""The channel database the suite and the benches read: a dated copy shipped in ``tests/data/``.

``tests/data/channel-db-<date>.tar.xz`` holds the public ComfyUI-Manager channel files
(``default/custom-node-list.json`` and friends, see ``tests/data/README.md``). ``channel_db()``
unpacks it once into a cache folder keyed by the archive's hash and returns that folder, shaped
like the upstream checkout: ``<folder>/default/custom-node-list.json`` etc. ``CM_CHANNEL_DB`` may
point at another folder of the same shape; a value that does not is an error, never a silent
fallback. No pytest import: ``bench/run.py`` loads this module by path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
ARCHIVE = DATA_DIR / "channel-db-2026-08-19.tar.xz"
ENV = "CM_CHANNEL_DB"
PROBE = Path("default") / "custom-node-list.json"
_MARKER = ".unpacked.json"


class ChannelDataError(RuntimeError):
    """The channel DB cannot be found or unpacked (the message says what to do)."""


def cache_root() -> Path:
    """Where unpacked copies live: ``$XDG_CACHE_HOME`` (else ``~/.cache``), or the temp folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    try:
        root = Path(base) / "comfyui-offline-manager-tests"
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    root = Path(tempfile.gettempdir()) / f"comfyui-offline-manager-tests-{os.getuid() if hasattr(os, 'getuid') else 0}"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _intact(folder: Path, digest: str) -> bool:
    """The folder was fully unpacked from this archive and no file changed size since."""
    try:
        marker = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if marker.get("sha256") != digest:
        return False
    sizes = marker.get("sizes", {})
    return bool(sizes) and all(
        (folder / rel).is_file() and (folder / rel).stat().st_size == size for rel, size in sizes.items()
    )


def unpack(archive: Path = ARCHIVE, root: Path | None = None) -> Path:
    """The unpacked copy of ``archive`` (unpacked now unless an intact one is cached)."""
    if not archive.is_file():
        raise ChannelDataError(
            f"the shipped channel DB {archive} is missing: restore it with "
            f"`git checkout -- {archive.relative_to(archive.parents[2])}`"
        )
    digest = _digest(archive)
    root = root or cache_root()
    final = root / f"{archive.name.removesuffix('.tar.xz')}-{digest[:12]}"
    if _intact(final, digest):
        return final
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=root))
    try:
        sizes: dict[str, int] = {}
        with tarfile.open(archive, "r:xz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
            for m in members:
                if m.name.startswith(("/", "..")) or ".." in Path(m.name).parts:
                    raise ChannelDataError(f"{archive}: unsafe member {m.name!r}")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, members=members, filter="data")
            else:  # Python without extraction filters: names checked above
                tar.extractall(staging, members=members)
            sizes = {m.name: m.size for m in members if m.isfile()}
        staging.chmod(0o755)  # mkdtemp made it private
        (staging / _MARKER).write_text(
            json.dumps({"archive": archive.name, "sha256": digest, "sizes": sizes}, indent=1), encoding="utf-8"
        )
        if final.exists():  # a stale or damaged copy: replace it
            shutil.rmtree(final, ignore_errors=True)
        try:
            staging.rename(final)
        except OSError:  # another process got there first
            if not _intact(final, digest):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def channel_db() -> Path:
    """``$CM_CHANNEL_DB`` when set (it must hold ``default/custom-node-list.json``), else the shipped copy."""
    chosen = os.environ.get(ENV, "").strip()
    if chosen:
        if not (Path(chosen) / PROBE).is_file():
            raise ChannelDataError(
                f"{ENV}={chosen} has no {PROBE}: point it at a channel DB folder "
                f"or unset it to use the copy shipped in {ARCHIVE.parent}"
            )
        return Path(chosen)
    return unpack()


if __name__ == "__main__":
    print(channel_db())
