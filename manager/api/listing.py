"""Pre-encoded list bodies: encoded once per (catalog version, installed-state version).

The full pack list of the real channel is ~3.5 MB of JSON; encoding it takes ~20-40 ms, so a
route that re-encodes per request can never answer in a millisecond. Here each pack's JSON
fragment is encoded once per catalog version (off the event loop); when the installed state
changes only the installed packs' fragments are re-encoded and the body is re-joined. A warm
request is a dictionary lookup and a write of bytes already in memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import html
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..list_build import TRUST_ACCOUNT_DAYS as TRUST_ACCOUNT_DAYS
from ..list_build import Fragments as _Fragments
from ..list_build import classic_row as classic_row
from ..list_build import encode_catalog as _encode_catalog
from ..list_build import splice as _splice
from ..list_gzip import CHUNK, deflate_piece, gzip_pieces
from ..memory import release_free_memory
from .envelope import dumps, envelope_prefix

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..context import CatalogView, Manager
    from ..inventory import InstalledPack, Inventory
    from ..list_cache import ChannelState, ListStore, PackIndex
    from ..records import Channel, Notice
    from .door import HttpDoor

log = logging.getLogger("offline_manager.api")

GZIP_MIN_BYTES = 64 * 1024  # smaller bodies are not worth a second encoding
MAX_KEPT_BYTES = 160 * 1024 * 1024  # encoded bodies kept in memory, all routes together


@dataclass(frozen=True)
class Body:
    """Bytes ready to send, with an ETag naming exactly what they were built from, and the same
    bytes gzip-compressed once (large bodies only): a remote panel gets ~0.5 MB, not ~4 MB."""

    data: bytes
    etag: str
    count: int = 0
    gzipped: bytes | None = None

    @classmethod
    def encode(cls, data: bytes, etag: str, count: int = 0) -> Body:
        """Build the body; compresses at level 1 (fast: built once per catalog/tree version)."""
        packed = gzip.compress(data, compresslevel=1, mtime=0) if len(data) >= GZIP_MIN_BYTES else None
        return cls(data, etag, count, packed)


def _etag(*parts: Any) -> str:
    return '"' + hashlib.sha1(repr(parts).encode()).hexdigest()[:20] + '"'


# --- row builders (pure) -------------------------------------------------------------------------
def installed_version(pack: InstalledPack) -> str:
    """The classic version word: a registry version, ``nightly`` for a git clone, else ``unknown``."""
    if pack.cnr_version or (pack.kind == "cnr" and pack.version):
        return pack.cnr_version or pack.version
    if pack.version:
        return pack.version
    return "nightly" if pack.kind == "git" else "unknown"


def classic_version(pack: InstalledPack) -> str:
    """The classic manager's word for an installed copy: the registry version of a registry
    install, ``nightly`` for a git clone of a pack that declares a registry id, else ``unknown``
    (classic clients pick their flows by it: a clone is never a registry version there)."""
    if pack.kind == "git":
        return "nightly" if pack.cnr_id else "unknown"
    if pack.cnr_version or (pack.kind == "cnr" and pack.version):
        return pack.cnr_version or pack.version
    return pack.version or "unknown"


def import_failed(pack: InstalledPack, failed: frozenset[str]) -> bool:
    """True when ComfyUI failed to import this (enabled) entry at its start."""
    return pack.enabled and pack.name in failed


def classic_installed(
    row: Mapping[str, Any], pack: InstalledPack, failed: frozenset[str] = frozenset()
) -> dict[str, Any]:
    out = dict(row)
    out.update(
        {
            "state": "enabled" if pack.enabled else "disabled",
            "version": classic_version(pack),
            "active_version": classic_version(pack) if pack.enabled else None,
            "invalid-installation": bool(pack.problems),
            "import-fail": import_failed(pack, failed),
        }
    )
    return out


def classic_unknown(pack: InstalledPack, failed: frozenset[str] = frozenset()) -> dict[str, Any]:
    """An installed pack no catalog entry matches (classic lists these as unknown packs)."""
    url = pack.remote_url or pack.repository
    return classic_installed(
        {
            "author": "",
            "title": html.escape(pack.display_name or pack.pack_id),
            "id": pack.pack_id,
            "reference": url,
            "files": [url] if url else [],
            "install_type": "git-clone" if pack.kind == "git" else "unknown",
            "description": "",
            "pip": [],
            "update-state": "false",
            "cnr_latest": None,
            "repository": url,
            "health": "-",
            "import-fail": False,
            "stars": -1,
            "last_update": "",
            "trust": False,
            "is_favorite": False,
        },
        pack,
        failed,
    )


def installed_dict(pack: InstalledPack, failed: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The ``installed`` part of a v1 pack row."""
    return {
        "name": pack.name,
        "enabled": pack.enabled,
        "kind": pack.kind,
        "version": installed_version(pack),
        "commit": pack.commit,
        "branch": pack.branch,
        "remote_url": pack.remote_url,
        "disabled_style": pack.disabled_style,
        "problems": list(pack.problems),
        "import_failed": import_failed(pack, failed),
    }


def by_catalog_id(inv: Inventory) -> tuple[dict[str, InstalledPack], list[InstalledPack]]:
    """Installed packs keyed by catalog id (an enabled copy wins), and the unmatched ones."""
    matched: dict[str, InstalledPack] = {}
    unmatched: list[InstalledPack] = []
    for pack in inv.packs:  # enabled first (Inventory sort order)
        if pack.catalog_id:
            matched.setdefault(pack.catalog_id, pack)
        else:
            unmatched.append(pack)
    seen: set[str] = set()
    unique = []
    for pack in unmatched:
        if pack.pack_id.lower() not in seen:
            seen.add(pack.pack_id.lower())
            unique.append(pack)
    return matched, unique


def _join(
    frags: _Fragments, prefix: bytes, suffix: bytes, replaced: Mapping[int, bytes], extra: Sequence[bytes]
) -> tuple[bytes, bytes | None]:
    """``prefix`` + the elements (``replaced`` by position, ``extra`` after them) + ``suffix``,
    and its gzip built from the stored deflate pieces (only changed chunks re-compressed)."""
    middle = _splice(frags, 0, len(frags.text), replaced)
    tail = (b"," if frags.order and extra else b"") + b",".join(extra)
    data = b"".join((prefix, middle, tail, suffix))
    if len(data) < GZIP_MIN_BYTES:
        return data, None
    pieces = list(frags.pieces)
    for c in {i // CHUNK for i in replaced}:
        pieces[c] = deflate_piece(frags.chunk(c, replaced))
    return data, gzip_pieces(data, [deflate_piece(prefix), *pieces, deflate_piece(tail + suffix)])


def _join_classic(
    frags: _Fragments, channel_name: str, inv: Inventory, failed: frozenset[str] = frozenset()
) -> tuple[bytes, bytes | None, int]:
    matched, unmatched = by_catalog_id(inv)
    replaced = {
        frags.position[pid]: dumps(pid) + b":" + dumps(classic_installed(frags.row(pid), pack, failed))
        for pid, pack in matched.items()
        if pid in frags.position
    }
    extra = [
        dumps(p.pack_id) + b":" + dumps(classic_unknown(p, failed))
        for p in unmatched
        if p.pack_id not in frags.position
    ]
    prefix = b'{"channel":' + dumps(channel_name) + b',"node_packs":{'
    data, packed = _join(frags, prefix, b"}}", replaced, extra)
    return data, packed, len(frags.order) + len(extra)


def _join_v1(
    frags: _Fragments, meta: Mapping[str, Any], inv: Inventory, failed: frozenset[str] = frozenset()
) -> tuple[bytes, bytes | None, int]:
    matched, unmatched = by_catalog_id(inv)
    replaced = {}
    for pid, pack in matched.items():
        if pid in frags.position:
            row = frags.row(pid)
            row["installed"] = installed_dict(pack, failed)
            replaced[frags.position[pid]] = dumps(row)
    head = {
        **meta,
        "installed_count": len(inv.packs),
        "import_failed_count": sum(1 for p in inv.packs if import_failed(p, failed)),
        "unmatched": [
            dict(p.to_dict(), version=installed_version(p), import_failed=import_failed(p, failed)) for p in unmatched
        ],
    }
    prefix = envelope_prefix() + dumps(head)[:-1] + b',"packs":['
    data, packed = _join(frags, prefix, b"]}}", replaced, ())
    return data, packed, len(frags.order)


def _meta(
    channel: Channel, version: str, sources: Mapping[str, str], age: float, notices: Sequence[Notice]
) -> dict[str, Any]:
    """The v1 list's head before the installed counts (from a view or a persisted list's state)."""
    return {
        "channel": channel.to_dict(),
        "catalog_version": version,
        "sources": dict(sources),
        "age_seconds": age,
        "notices": [n.to_dict() for n in notices],
    }


Joined = tuple[bytes, "bytes | None", int]
LIGHT_KEEP_BYTES = 24 * 1024 * 1024  # persisted fragments kept in memory up to this size (5.9k packs: ~5 MB)


@dataclass(frozen=True)
class _Light:
    """A list kind as loaded from its persisted file (no catalog built)."""

    version: str
    state: ChannelState
    index: PackIndex
    frags: _Fragments | None  # None: dropped after the body was built (re-read on change)
    size: int


class _Gone(Exception):
    """The persisted list changed or went away between two reads."""


class ListingCache:
    """Bodies of the list routes, rebuilt only when the catalog or the installed state changes.

    The pack lists' fragments are persisted beside the cache (``manager/list_cache.py``) when
    they are built for a new catalog version; after a restart ``first_packs`` answers from that
    file (no channel file read, no catalog built) until the catalog view is loaded."""

    def __init__(self, api: HttpDoor, *, keep: int = 4, keep_fragment_bytes: int = LIGHT_KEEP_BYTES) -> None:
        self._api = api
        self._keep = keep
        self.keep_fragment_bytes = keep_fragment_bytes
        self._frags: dict[str, _Fragments] = {}
        self._bodies: OrderedDict[tuple[Any, ...], Body] = OrderedDict()
        self._lock: asyncio.Lock | None = None
        self._light: dict[str, _Light] = {}
        self._light_locks: dict[str, asyncio.Lock] = {}
        self._unsaved: dict[str, tuple[_Fragments, Catalog]] = {}
        self._dropped: dict[str, str] = {}  # kind -> catalog version whose large fragments left memory
        self._saving: set[asyncio.Task[Any]] = set()
        self._store: ListStore | None = None
        self.builds = 0  # how many bodies were built (tests and the bench read it)
        self.saves = 0  # persisted lists written by this door

    @property
    def store(self) -> ListStore:
        if self._store is None:
            from ..list_cache import ListStore

            self._store = ListStore.for_manager(self._api.manager)
        return self._store

    def _remember(self, key: tuple[Any, ...], body: Body) -> Body:
        """Keep ``body``; the oldest go beyond ``keep * 4`` bodies or ``MAX_KEPT_BYTES`` (a body
        of a 59k-pack catalog is ~50 MB: superseded ones must not pile up), the newest stays."""
        self._bodies[key] = body
        self._bodies.move_to_end(key)
        size = sum(len(b.data) + len(b.gzipped or b"") for b in self._bodies.values())
        while len(self._bodies) > 1 and (len(self._bodies) > self._keep * 4 or size > MAX_KEPT_BYTES):
            _key, old = self._bodies.popitem(last=False)
            size -= len(old.data) + len(old.gzipped or b"")
        return body

    async def _cached(self, key: tuple[Any, ...], build: Callable[[], tuple[bytes, int]]) -> Body:
        return await self._cached_joined(key, lambda: (*_packed(build()),))

    async def _cached_joined(self, key: tuple[Any, ...], build: Callable[[], Joined]) -> Body:
        found = self._bodies.get(key)
        if found is not None:
            return found
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # fifty parallel cold requests build once
            found = self._bodies.get(key)
            if found is not None:
                return found

            def encode() -> Body:
                data, packed, count = build()
                if len(data) > self.keep_fragment_bytes:  # its transient copies' pages go back
                    release_free_memory()
                return Body(data, _etag(*key), count, packed)

            body = await asyncio.to_thread(encode)
            self.builds += 1
            return self._remember(key, body)

    def _fragments(self, kind: str, catalog: Catalog) -> _Fragments:
        key = f"{kind}:{catalog.version}"
        frags = self._frags.get(key)
        if frags is None:
            light = self._light.get(kind)
            if light is not None and light.frags is not None and light.version == catalog.version:
                frags = light.frags  # the persisted list of this very catalog: nothing to encode
            elif kind in self._dropped and self._dropped[kind] == catalog.version:
                try:  # written by this door and dropped from memory: read back, not encoded again
                    frags = self._reread(kind, catalog.version)
                except _Gone:
                    frags = _encode_catalog(kind, catalog)
                    self._unsaved[kind] = (frags, catalog)
            else:
                frags = _encode_catalog(kind, catalog)
                self._unsaved[kind] = (frags, catalog)
            self._frags = {k: v for k, v in self._frags.items() if not k.startswith(kind + ":")}
            self._frags[key] = frags
        return frags

    async def packs(self, kind: str, view: CatalogView) -> Body:
        """The classic getlist body (``kind="classic"``) or the v1 envelope (``"v1"``)."""
        inv_key, inv = await self._api.inventory()
        failed = await self._api.failed_import_names()
        key = (kind, view.catalog.version, view.channel.name, id(view), inv_key, failed)

        def build() -> Joined:
            frags = self._fragments(kind, view.catalog)
            if kind == "classic":
                return _join_classic(frags, view.channel.name, inv, failed)
            meta = _meta(view.channel, view.catalog.version, view.sources, view.oldest_age_seconds, view.notices)
            return _join_v1(frags, meta, inv, failed)

        body = await self._cached_joined(key, build)
        self._save_later()
        return body

    # --- the persisted lists --------------------------------------------------------------------
    async def first_packs(self, kind: str) -> Body | None:
        """The list from its persisted file while no catalog view is loaded (the first request
        after a start); None when there is no valid file (the caller loads the catalog, and the
        file is written for the next start). Fragments larger than ``LIGHT_KEEP_BYTES`` are not
        kept once the body is built: a change of the installed state reads them again."""
        light = self._light.get(kind)
        if light is None:
            lock = self._light_locks.setdefault(kind, asyncio.Lock())
            async with lock:
                light = self._light.get(kind)
                if light is None:
                    manager = self._api.manager
                    found = await asyncio.to_thread(self._load_light, kind, manager)
                    if found is None:
                        return None
                    light = self._light[kind] = found
        inv_key, inv = await self._api.inventory_for(light.index, light.version)
        failed = await self._api.failed_import_names()
        state = light.state
        key = (kind, light.version, state.channel.name, "persisted", inv_key, failed)

        def build() -> Joined:
            frags = light.frags or self._reread(kind, light.version)
            if kind == "classic":
                return _join_classic(frags, state.channel.name, inv, failed)
            meta = _meta(state.channel, frags.version, state.sources, state.oldest_age_seconds, state.notices)
            return _join_v1(frags, meta, inv, failed)

        try:
            body = await self._cached_joined(key, build)
        except _Gone:  # the file changed under us: the catalog answers instead
            self._light.pop(kind, None)
            return None
        if light.frags is not None and light.size > self.keep_fragment_bytes and self._light.get(kind) is light:
            self._light[kind] = dataclasses.replace(light, frags=None)
            del light
            self._trim_later()
        return body

    def _load_light(self, kind: str, manager: Manager) -> _Light | None:
        loaded = self.store.load(kind, manager)
        if loaded is None:
            return None
        item, state = loaded
        # one index per catalog version, whichever kind loaded it first (59k packs: ~20 MB each)
        shared = next((x.index for x in list(self._light.values()) if x.version == item.catalog_version), None)
        frags = _Fragments.from_persisted(item)
        size = len(frags.text) + sum(len(p) for p in frags.pieces)
        return _Light(item.catalog_version, state, shared or item.index(), frags, size)

    def _reread(self, kind: str, version: str) -> _Fragments:
        """The fragments of ``kind`` again from their file (worker thread); ``_Gone`` when it no
        longer holds ``version`` for the channel files of now."""
        loaded = self.store.load(kind, self._api.manager)
        if loaded is None or loaded[0].catalog_version != version:
            raise _Gone(kind)
        frags: _Fragments = _Fragments.from_persisted(loaded[0])
        return frags

    def forget(self) -> None:
        """Drop what came from persisted files (the channel changed or was refreshed)."""
        self._light.clear()

    def _save_later(self) -> None:
        """Persist fragments built for a new catalog version, off the loop, after the answer."""
        while self._unsaved:
            kind, (frags, catalog) = self._unsaved.popitem()
            task = asyncio.ensure_future(asyncio.to_thread(self._save, kind, frags, catalog))
            self._saving.add(task)
            task.add_done_callback(self._saved)

    def _saved(self, task: asyncio.Task[Any]) -> None:
        self._saving.discard(task)
        if self._dropped:  # large fragments left memory: their pages go back to the system
            self._trim_later()

    def _trim_later(self) -> None:
        task = asyncio.ensure_future(asyncio.to_thread(release_free_memory))
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    def _save(self, kind: str, frags: _Fragments, catalog: Catalog) -> None:
        from ..list_cache import channel_state

        try:
            manager = self._api.manager
            state = channel_state(manager)
            if state is None or state.version != frags.version:
                log.debug("persisted %s list not written: the channel files changed or need the network", kind)
                return
            self.store.save(frags.persisted(state, catalog.url_index()))
            self.saves += 1
            if len(frags.text) > self.keep_fragment_bytes:  # as for a list loaded from its file
                self._dropped[kind] = frags.version
                self._frags = {k: v for k, v in self._frags.items() if v is not frags}
        except Exception:  # a list not persisted is rebuilt at the next start, never a failure
            log.warning("could not persist the %s list", kind, exc_info=True)

    async def settled(self) -> None:
        """Wait for pending writes of persisted lists (tests, shutdown)."""
        while self._saving:
            await asyncio.gather(*list(self._saving), return_exceptions=True)

    async def per_catalog(self, kind: str, view: CatalogView, build: Callable[[CatalogView], bytes]) -> Body:
        """A body that depends on the catalog only (mappings, alternatives)."""
        key = (kind, view.catalog.version, id(view))
        return await self._cached(key, lambda: (build(view), 0))

    async def models(self, kind: str, view: CatalogView, build: Callable[[CatalogView], bytes]) -> Body:
        """A model list with installed state; rebuilt when a model folder changes."""
        key = (kind, view.catalog.version, id(view), self._models_fingerprint())
        return await self._cached(key, lambda: (build(view), 0))

    def _models_fingerprint(self) -> tuple[int, ...]:
        root = self._api.manager.layout.models_dir
        out = [self._api.tree_fingerprint()[-1]]
        try:
            out.append(os.stat(root).st_mtime_ns)
            with os.scandir(root) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        out.append(entry.stat().st_mtime_ns)
        except OSError:
            out.append(0)
        return tuple(out)


def _packed(built: tuple[bytes, int]) -> Joined:
    data, count = built
    body = Body.encode(data, "", count)
    return data, body.gzipped, count
