"""Gated GET and streaming download: the HTTP half of ``NetworkGate`` (see network.py).

Every request starts with ``gate.decide`` and every redirect hop is decided again, so a
mirror cannot bounce us to a host the mode forbids (nor to a local ``file://``). aiohttp
failures become coded errors whose hint names ``network_mode``, ``http_timeout``, the proxy
variables or ``bypass_ssl`` (both in fetch_redirects.py). Downloads go to ``<dest>.part`` and
are renamed into place only after their size and sha256 check out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from .errors import (
    ChecksumMismatch,
    DownloadIncomplete,
    ManagerError,
    NotFound,
    ResponseTooLarge,
)
from .fetch_redirects import MAX_REDIRECTS as MAX_REDIRECTS  # re-exported: part of this module's API
from .fetch_redirects import (
    _declared_length,
    _lower_headers,
    _open,
    _status_error,
)
from .fsops import atomic_write_json, file_lock

if TYPE_CHECKING:  # network.py imports this module; only the type is needed here
    from .network import NetworkGate

CHUNK = 1 << 16
# Download pipeline (see _Sink): the event loop only receives; a writer thread and a hasher
# thread take the bytes in batches, so receiving, writing and sha256 run side by side.
READ_BUFSIZE = 1 << 21  # aiohttp buffer per download: fewer pause/resume cycles per MB
BATCH = 1 << 20  # bytes handed to the workers at a time
MAX_IN_FLIGHT = 16  # batches queued before the receiver waits for the disk (memory cap)
SYNC_STEP = 8 << 20  # bytes between background fdatasyncs (see _Sink)
_EARLY_SYNC = hasattr(os, "fdatasync")  # not on Windows or macOS: there the final fsync does it all
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RE = re.compile(r"bytes\s+\*/(\d+)")

Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class GateResponse:
    """A finished GET: final URL (after mirror map and redirects), status, lower-case headers, body."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding, "replace")

    def json(self) -> Any:
        return json.loads(self.body)


# -- GET --------------------------------------------------------------------------------
def _read_local(gate: NetworkGate, url: str, max_bytes: int | None) -> GateResponse:
    path = gate.local_path(url)
    if not path.is_file():
        raise NotFound(
            f"local file {path} does not exist",
            hint="Check the file:// URL or path (channels.list, the catalog entry, [mirrors] in config.ini).",
            details={"path": str(path)},
        )
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise ResponseTooLarge(
            f"{path} is {size} bytes, over the {max_bytes}-byte cap",
            hint="This is not the file expected here; check the path.",
        )
    data = path.read_bytes()
    return GateResponse(url=url, status=200, headers={"content-length": str(len(data))}, body=data)


async def gated_get(
    gate: NetworkGate,
    url: str,
    *,
    purpose: str = "other",
    headers: Mapping[str, str] | None = None,
    max_bytes: int | None = None,
    session: aiohttp.ClientSession | None = None,
) -> GateResponse:
    """See ``NetworkGate.get``."""
    final = gate.decide(url, purpose)
    if gate.is_local(final):
        return await asyncio.to_thread(_read_local, gate, final, max_bytes)
    sess = session or gate.session()
    try:
        async with _open(gate, sess, final, purpose, headers) as (current, resp):
            if resp.status >= 400:
                raise _status_error(current, purpose, resp.status, resp.reason or "")
            declared = _declared_length(resp)
            if max_bytes is not None and declared is not None and declared > max_bytes:
                raise ResponseTooLarge(
                    f"{current} announces {declared} bytes, over the {max_bytes}-byte cap",
                    hint="This is not the file expected here; check the URL.",
                )
            chunks: list[bytes] = []
            total = 0
            async for chunk in resp.content.iter_chunked(CHUNK):
                total += len(chunk)
                if max_bytes is not None and total > max_bytes:
                    raise ResponseTooLarge(
                        f"{current} sent more than {max_bytes} bytes",
                        hint="This is not the file expected here; check the URL.",
                    )
                chunks.append(chunk)
            if declared is not None and total != declared and resp.status != 304:
                raise DownloadIncomplete(
                    f"{current}: got {total} of {declared} bytes",
                    hint="The connection dropped; retry.",
                    details={"url": current, "received": total, "expected": declared},
                )
            return GateResponse(url=current, status=resp.status, headers=_lower_headers(resp), body=b"".join(chunks))
    finally:
        if session is None:
            await sess.close()


# -- download ---------------------------------------------------------------------------
def _hash_file(path: Path) -> hashlib._Hash:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h


def _copy_local(gate: NetworkGate, url: str, part: Path, progress: Progress | None, hashing: bool = True) -> str:
    src = gate.local_path(url)
    if not src.is_file():
        raise NotFound(
            f"local file {src} does not exist", hint="Check the file:// URL or path.", details={"path": str(src)}
        )
    total = src.stat().st_size
    h = hashlib.sha256()
    done = 0
    with open(src, "rb") as fin, open(part, "wb") as fout:
        for block in iter(lambda: fin.read(1 << 20), b""):
            fout.write(block)
            if hashing:
                h.update(block)
            done += len(block)
            if progress:
                progress(done, total)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest() if hashing else ""


def _part_size(part: Path) -> int:
    """Bytes already in ``part`` (0 when there is none yet)."""
    return part.stat().st_size if part.exists() else 0


def _discard(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _read_validator(meta: Path, url: str) -> str:
    """The ETag/Last-Modified of the partial file, so If-Range restarts when the file changed."""
    try:
        data = json.loads(meta.read_text("utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(data, dict) or data.get("url") != url:
        return ""
    return str(data.get("etag") or data.get("last_modified") or "")


async def _adopt_orphan_part(
    gate: NetworkGate,
    sess: aiohttp.ClientSession,
    url: str,
    purpose: str,
    part: Path,
    meta: Path,
    offset: int,
    expected_size: int | None,
) -> int:
    """A ``.part`` without its metadata sidecar (lost, or written by an older version): ask the server
    (HEAD) for the file's size and validators. Kept, with a new sidecar holding those validators for
    ``If-Range``, when the server takes byte ranges, names a validator (a strong ETag or Last-Modified),
    and its size (and ``expected_size``) holds at least the bytes kept; else dropped. Returns the offset
    to resume from (0 = start over). The final size / sha256 check still guards the result."""
    size: int | None = None
    etag = modified = ""
    ranges = False
    try:
        async with _open(gate, sess, url, purpose, {"Accept-Encoding": "identity"}, method="HEAD") as (_cur, resp):
            if resp.status < 400:
                size = _declared_length(resp)
                ranges = resp.headers.get("Accept-Ranges", "").strip().lower() == "bytes"
                etag = resp.headers.get("ETag", "")
                modified = resp.headers.get("Last-Modified", "")
    except ManagerError:
        size = None  # the GET that follows reports what is wrong
    if etag.startswith("W/"):
        etag = ""  # a weak ETag never matches If-Range
    usable = (
        ranges
        and size is not None
        and offset <= size
        and (expected_size is None or expected_size == size)
        and bool(etag or modified)
    )
    if not usable:
        _discard(part, meta)
        return 0
    atomic_write_json(meta, {"url": url, "etag": etag, "last_modified": modified, "adopted": True, "size": size})
    return offset


class _Sink:
    """Writes, hashes and syncs received bytes on worker threads; the event loop only receives.

    Batches go to single-thread executors, so they run in order and the file is always a prefix
    of the stream, also when a transfer stops halfway (the next attempt resumes after it). At
    most ``MAX_IN_FLIGHT`` batches wait, which bounds memory when the disk is slower than the
    network. While bytes arrive, a third thread keeps an ``fdatasync`` running (one at a time,
    at most every ``SYNC_STEP`` bytes): the device flushes as we go, so the closing fsync only
    waits for the tail. On this kind of disk the flush, not the writing, is most of the cost.
    """

    def __init__(self, fh: Any, hasher: hashlib._Hash | None) -> None:
        self._fh, self._hasher = fh, hasher
        self._fd = fh.fileno()
        self._written = self._synced_at = fh.tell()
        self._failed = False  # after a failed write nothing more is appended
        self._batch: list[bytes] = []
        self._pending = 0
        self._inflight: collections.deque[tuple[Future[None], ...]] = collections.deque()  # per batch
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="download-write")
        self._hashing = ThreadPoolExecutor(1, thread_name_prefix="download-hash") if hasher else None
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="download-sync") if _EARLY_SYNC else None
        self._early: Future[None] | None = None  # the running background fdatasync

    async def add(self, chunk: bytes) -> None:
        """Queue ``chunk``; waits only while the workers are ``MAX_IN_FLIGHT`` batches behind."""
        self._batch.append(chunk)
        self._pending += len(chunk)
        if self._pending >= BATCH:
            self._submit()
        queue = self._inflight
        while queue and all(f.done() for f in queue[0]):
            for f in queue.popleft():
                f.result()  # a worker's error (disk full) surfaces here
        while len(queue) > MAX_IN_FLIGHT:
            for f in queue.popleft():
                await _wait(f)

    async def finish(self) -> None:
        """Write the rest, then fsync: the bytes are on disk before anyone renames the file."""
        self._submit()
        while self._inflight:
            for f in self._inflight.popleft():
                await _wait(f)
        await _wait(self._writer.submit(self._sync))

    def close(self) -> None:
        """Let queued writes land (a later resume continues after them), then stop the workers
        (the writer first: it starts the syncs). Blocks for at most ``MAX_IN_FLIGHT`` batches."""
        self._submit()
        for pool in (self._writer, self._syncer, self._hashing):
            if pool is not None:
                pool.shutdown(wait=True)

    def _submit(self) -> None:
        if not self._batch:
            return
        batch, self._batch, self._pending = self._batch, [], 0
        futures = [self._writer.submit(self._write, batch)]
        if self._hashing is not None:
            futures.append(self._hashing.submit(self._hash, batch))
        self._inflight.append(tuple(futures))

    def _write(self, batch: list[bytes]) -> None:
        if self._failed:  # the file must stay a prefix of the stream
            return
        try:
            for chunk in batch:
                self._fh.write(chunk)
                self._written += len(chunk)
            self._sync_early()
        except BaseException:
            self._failed = True
            raise

    def _sync_early(self) -> None:
        if self._syncer is None or self._written - self._synced_at < SYNC_STEP:
            return
        if self._early is not None:
            if not self._early.done():
                return  # one at a time: the device is busy anyway
            self._early.result()  # an I/O error must not wait for the end
        self._synced_at = self._written
        self._early = self._syncer.submit(os.fdatasync, self._fd)  # what the kernel has now

    def _hash(self, batch: list[bytes]) -> None:
        assert self._hasher is not None
        for chunk in batch:
            self._hasher.update(chunk)

    def _sync(self) -> None:
        if self._early is not None:
            self._early.result()  # its error is reported once: raise it here
        self._fh.flush()
        os.fsync(self._fd)


async def _wait(fut: Future[None]) -> None:
    """Await a worker's batch. Shielded: a cancelled download must not cancel a queued write,
    or the batches after it would land early and the partial file would no longer be a prefix."""
    await asyncio.shield(asyncio.wrap_future(fut))


async def _stream_http(
    gate: NetworkGate,
    url: str,
    part: Path,
    meta: Path,
    *,
    purpose: str,
    resume: bool,
    expected_size: int | None,
    progress: Progress | None,
    hashing: bool = True,
) -> str:
    """Fill ``part`` from ``url``; returns its sha256 ("" unless ``hashing``). Leaves ``part``
    for a later resume on a dropped connection."""
    if not resume:
        _discard(part, meta)
    async with gate.session(streaming=True) as sess:
        for _attempt in range(2):  # second pass = restart from zero
            offset = await asyncio.to_thread(_part_size, part)
            if expected_size is not None and offset > expected_size:
                _discard(part, meta)
                offset = 0
            if offset and not await asyncio.to_thread(meta.exists):
                offset = await _adopt_orphan_part(gate, sess, url, purpose, part, meta, offset, expected_size)
            headers = {"Accept-Encoding": "identity"}  # byte ranges of a compressed stream are useless
            if offset:
                headers["Range"] = f"bytes={offset}-"
                validator = _read_validator(meta, url)
                if validator:
                    headers["If-Range"] = validator
            async with _open(gate, sess, url, purpose, headers, READ_BUFSIZE) as (current, resp):
                if resp.status == 416 and offset:
                    m = _UNSATISFIED_RE.match(resp.headers.get("Content-Range", ""))
                    if m and int(m.group(1)) == offset:  # the part is already complete
                        return (await asyncio.to_thread(_hash_file, part)).hexdigest() if hashing else ""
                    _discard(part, meta)
                    continue
                if resp.status >= 400:
                    raise _status_error(current, purpose, resp.status, resp.reason or "")
                if resp.status == 206:
                    m = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", ""))
                    if not offset or not m or int(m.group(1)) != offset:
                        _discard(part, meta)  # a range we did not ask for: start over
                        continue
                    total = int(m.group(3)) if m.group(3) != "*" else expected_size
                    hasher = await asyncio.to_thread(_hash_file, part) if hashing else None
                    mode = "ab"
                else:  # 200: no Range support, or changed file
                    offset, mode, hasher = 0, "wb", hashlib.sha256() if hashing else None
                    declared = _declared_length(resp)
                    total = declared if declared is not None else expected_size
                atomic_write_json(
                    meta,
                    {
                        "url": url,
                        "etag": resp.headers.get("ETag", ""),
                        "last_modified": resp.headers.get("Last-Modified", ""),
                    },
                )
                declared = _declared_length(resp)
                received = 0
                # Opened on the loop on purpose (ASYNC230): an await here would let the loop take in a
                # dropped connection before the first read, and aiohttp then discards the bytes it has
                # already buffered, so the .part kept for the resume would be shorter (or empty).
                with open(part, mode) as fh:  # noqa: ASYNC230
                    sink = _Sink(fh, hasher)
                    try:
                        # iter_chunks hands over aiohttp's own buffers: no slicing, no joining
                        async for chunk, _end in resp.content.iter_chunks():
                            if not chunk:
                                continue
                            await sink.add(chunk)
                            received += len(chunk)
                            if progress:
                                progress(offset + received, total)
                        await sink.finish()
                    finally:
                        sink.close()
                if declared is not None and received != declared:
                    raise DownloadIncomplete(
                        f"{current}: got {received} of {declared} bytes",
                        hint="The connection dropped; run the command again to resume.",
                        details={"url": current, "received": received, "expected": declared},
                    )
                return hasher.hexdigest() if hasher is not None else ""
    raise DownloadIncomplete(
        f"{url}: the server's byte ranges do not match the partial file",
        hint=f"Delete {part} and retry.",
        details={"url": url},
    )


def _finish(
    part: Path, meta: Path, dest: Path, digest: str, expected_size: int | None, sha256: str | None, url: str
) -> None:
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        if size > expected_size:
            _discard(part, meta)
        raise DownloadIncomplete(
            f"{dest.name}: got {size} bytes, expected {expected_size}",
            hint="The source changed or the transfer broke; retry, or check the expected size in the catalog entry.",
            details={"url": url, "size": size, "expected": expected_size},
        )
    if sha256 and digest.lower() != sha256.strip().lower():
        _discard(part, meta)
        raise ChecksumMismatch(
            f"{dest.name}: sha256 {digest} does not match the expected {sha256}",
            hint="The file is not the one the catalog describes (a wrong mirror "
            "or a tampered file); nothing was installed.",
            details={"url": url, "sha256": digest, "expected": sha256},
        )
    os.replace(part, dest)
    with contextlib.suppress(OSError):
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _discard(meta)


async def adopt_orphan_part(
    gate: NetworkGate, final_url: str, dest: Path, *, purpose: str = "model", expected_size: int | None = None
) -> int:
    """Before a download of ``final_url`` (already decided by the gate) into ``dest``: a ``.part``
    without its metadata sidecar is kept (with a new sidecar) or dropped after a HEAD, as
    ``_adopt_orphan_part`` says. Returns the bytes the download will resume after (0: from zero)."""
    part = dest.with_name(dest.name + ".part")
    meta = dest.with_name(dest.name + ".part.json")
    offset = await asyncio.to_thread(_part_size, part)
    if not offset or gate.is_local(final_url) or await asyncio.to_thread(meta.exists):
        return offset
    async with gate.session(streaming=True) as sess:
        return await _adopt_orphan_part(gate, sess, final_url, purpose, part, meta, offset, expected_size)


async def download(
    gate: NetworkGate,
    url: str,
    dest: Path,
    *,
    purpose: str = "model",
    expected_size: int | None = None,
    sha256: str | None = None,
    resume: bool = True,
    progress: Progress | None = None,
) -> Path:
    """See ``NetworkGate.download``. Raises ``LockBusy`` when the same dest is being downloaded."""
    final = gate.decide(url, purpose)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    meta = dest.with_name(dest.name + ".part.json")
    lock = dest.with_name("." + dest.name + ".lock")
    with file_lock(lock, timeout=0):
        try:
            if gate.is_local(final):
                digest = await asyncio.to_thread(_copy_local, gate, final, part, progress, bool(sha256))
            else:  # sha256 only when there is one to check against
                digest = await _stream_http(
                    gate,
                    final,
                    part,
                    meta,
                    purpose=purpose,
                    resume=resume,
                    expected_size=expected_size,
                    progress=progress,
                    hashing=bool(sha256),
                )
            await asyncio.to_thread(_finish, part, meta, dest, digest, expected_size, sha256, final)
        finally:
            _discard(lock)
    return dest
