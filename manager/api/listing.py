"""Pre-encoded list bodies: encoded once per (catalog version, installed-state version).

The full pack list of the real channel is ~3.5 MB of JSON; encoding it takes ~20-40 ms, so a
route that re-encodes per request can never answer in a millisecond. Here each pack's JSON
fragment is encoded once per catalog version (off the event loop); when the installed state
changes only the installed packs' fragments are re-encoded and the body is re-joined. A warm
request is a dictionary lookup and a write of bytes already in memory.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import html
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .envelope import dumps, envelope_prefix

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..context import CatalogView
    from ..inventory import InstalledPack, Inventory
    from ..records import NodePack
    from .door import HttpDoor

TRUST_ACCOUNT_DAYS = 600  # classic: an author account older than this is "trusted"


GZIP_MIN_BYTES = 64 * 1024  # smaller bodies are not worth a second encoding


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
def classic_row(pack: NodePack, catalog: Catalog) -> dict[str, Any]:
    """A pack in the classic ``/customnode/getlist`` shape, not installed."""
    st = catalog.stats_for(pack.id)
    row: dict[str, Any] = {
        "author": pack.author,
        "title": html.escape(pack.title),
        "id": pack.id,
        "reference": pack.reference,
        "files": list(pack.files),
        "install_type": pack.install_type,
        "description": html.escape(pack.description),
        "pip": list(pack.pip),
        "state": "not-installed",
        "version": pack.latest_version or "unknown",
        "update-state": "false",
        "cnr_latest": pack.latest_version or None,
        "repository": pack.reference,
        "health": "-",
        "invalid-installation": False,
        "import-fail": False,
        "stars": pack.stars if pack.stars is not None else -1,
        "last_update": pack.last_update or "",
        "trust": bool(st and st.author_account_age_days and st.author_account_age_days > TRUST_ACCOUNT_DAYS),
        "is_favorite": False,
    }
    if pack.nodename_pattern:
        row["nodename_pattern"] = pack.nodename_pattern
    if pack.tags:
        row["tags"] = list(pack.tags)
    return row


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


# --- encoded fragments per catalog version -----------------------------------------------------
@dataclass(frozen=True)
class _Fragments:
    version: str
    rows: Mapping[str, dict[str, Any]]  # pack id -> base row (not installed)
    encoded: Mapping[str, bytes]  # pack id -> encoded element (with its key for objects)
    order: tuple[str, ...]


def _classic_fragments(catalog: Catalog) -> _Fragments:
    rows = {p.id: classic_row(p, catalog) for p in catalog.packs}
    enc = {pid: dumps(pid) + b":" + dumps(row) for pid, row in rows.items()}
    return _Fragments(catalog.version, rows, enc, tuple(rows))


def _v1_fragments(catalog: Catalog) -> _Fragments:
    rows = {}
    for p in catalog.packs:
        row = p.to_dict()
        row["installed"] = None
        rows[p.id] = row
    enc = {pid: dumps(row) for pid, row in rows.items()}
    return _Fragments(catalog.version, rows, enc, tuple(rows))


def _join_classic(
    frags: _Fragments, view: CatalogView, inv: Inventory, failed: frozenset[str] = frozenset()
) -> tuple[bytes, int]:
    matched, unmatched = by_catalog_id(inv)
    parts = []
    for pid in frags.order:
        pack = matched.get(pid)
        parts.append(
            frags.encoded[pid]
            if pack is None
            else dumps(pid) + b":" + dumps(classic_installed(frags.rows[pid], pack, failed))
        )
    for pack in unmatched:
        if pack.pack_id not in frags.rows:
            parts.append(dumps(pack.pack_id) + b":" + dumps(classic_unknown(pack, failed)))
    body = b'{"channel":' + dumps(view.channel.name) + b',"node_packs":{' + b",".join(parts) + b"}}"
    return body, len(parts)


def _join_v1(
    frags: _Fragments, view: CatalogView, inv: Inventory, failed: frozenset[str] = frozenset()
) -> tuple[bytes, int]:
    matched, unmatched = by_catalog_id(inv)
    parts = []
    for pid in frags.order:
        pack = matched.get(pid)
        if pack is None:
            parts.append(frags.encoded[pid])
        else:
            row = dict(frags.rows[pid])
            row["installed"] = installed_dict(pack, failed)
            parts.append(dumps(row))
    head = {
        "channel": view.channel.to_dict(),
        "catalog_version": view.catalog.version,
        "sources": dict(view.sources),
        "age_seconds": view.oldest_age_seconds,
        "notices": [n.to_dict() for n in view.notices],
        "installed_count": len(inv.packs),
        "import_failed_count": sum(1 for p in inv.packs if import_failed(p, failed)),
        "unmatched": [
            dict(p.to_dict(), version=installed_version(p), import_failed=import_failed(p, failed)) for p in unmatched
        ],
    }
    opening = dumps(head)[:-1] + b',"packs":['
    return envelope_prefix() + opening + b",".join(parts) + b"]}}", len(parts)


class ListingCache:
    """Bodies of the list routes, rebuilt only when the catalog or the installed state changes."""

    def __init__(self, api: HttpDoor, *, keep: int = 4) -> None:
        self._api = api
        self._keep = keep
        self._frags: dict[str, _Fragments] = {}
        self._bodies: OrderedDict[tuple[Any, ...], Body] = OrderedDict()
        self._lock: asyncio.Lock | None = None
        self.builds = 0  # how many bodies were built (tests and the bench read it)

    def _remember(self, key: tuple[Any, ...], body: Body) -> Body:
        self._bodies[key] = body
        self._bodies.move_to_end(key)
        while len(self._bodies) > self._keep * 4:
            self._bodies.popitem(last=False)
        return body

    async def _cached(self, key: tuple[Any, ...], build: Callable[[], tuple[bytes, int]]) -> Body:
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
                data, count = build()
                return Body.encode(data, _etag(*key), count)

            body = await asyncio.to_thread(encode)
            self.builds += 1
            return self._remember(key, body)

    def _fragments(self, kind: str, catalog: Catalog) -> _Fragments:
        key = f"{kind}:{catalog.version}"
        frags = self._frags.get(key)
        if frags is None:
            frags = (_classic_fragments if kind == "classic" else _v1_fragments)(catalog)
            self._frags = {k: v for k, v in self._frags.items() if not k.startswith(kind + ":")}
            self._frags[key] = frags
        return frags

    async def packs(self, kind: str, view: CatalogView) -> Body:
        """The classic getlist body (``kind="classic"``) or the v1 envelope (``"v1"``)."""
        inv_key, inv = await self._api.inventory()
        failed = await self._api.failed_import_names()
        key = (kind, view.catalog.version, view.channel.name, id(view), inv_key, failed)
        join = _join_classic if kind == "classic" else _join_v1
        return await self._cached(key, lambda: join(self._fragments(kind, view.catalog), view, inv, failed))

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
