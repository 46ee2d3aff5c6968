"""The pack lists' encoded fragments, built from a catalog (issue 21): what the HTTP door joins
into list bodies and what ``list_cache.ListStore`` persists. In the core so that every place that
changes the channel data rebuilds the persisted lists right away (the server when it loads a new
catalog, ``cm-cli.py update-cache`` after a refresh), and the first open after a cron refresh
answers from the file like a warm one.
"""

from __future__ import annotations

import dataclasses
import html
import io
import itertools
import json
import logging
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .list_gzip import CHUNK, deflate_piece

if TYPE_CHECKING:
    from .catalog import Catalog
    from .context import Manager
    from .list_cache import ChannelState, PersistedList
    from .records import NodePack

log = logging.getLogger("offline_manager.list_build")

TRUST_ACCOUNT_DAYS = 600  # classic: an author account older than this is "trusted"
LIST_KINDS = ("classic", "v1")


def dumps(value: Any) -> bytes:
    """Compact ASCII JSON, byte for byte what the HTTP door's ``dumps`` writes for plain data."""
    return json.dumps(value, separators=(",", ":")).encode("ascii")


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


@dataclass(frozen=True)
class Fragments:
    """One list kind's encoded pack elements for one catalog version, in catalog order: one
    buffer (the elements joined by commas, as the body holds them) with each element's span,
    and the deflate pieces of its chunks (``list_gzip.chunk_texts``): a body's gzip re-compresses
    only the chunks an installed pack changes. One buffer, not an object per pack: 59k packs
    load as one allocation, and an unchanged tree's body is that buffer between its brackets."""

    kind: str
    version: str
    order: tuple[str, ...]
    text: bytes  # the elements joined by b"," (classic: each with its object key)
    starts: Sequence[int]
    ends: Sequence[int]
    position: Mapping[str, int]
    pieces: tuple[bytes, ...]

    @classmethod
    def make(
        cls, kind: str, version: str, order: Sequence[str], text: bytes, ends: Sequence[int], pieces: Any = None
    ) -> Any:
        ends = array("q", ends)
        starts = array("q", [0])
        starts.extend(e + 1 for e in ends[:-1])
        position = {pid: i for i, pid in enumerate(order)}
        frags = cls(kind, version, tuple(order), text, starts, ends, position, ())
        if pieces is None:
            pieces = [deflate_piece(frags.chunk(c)) for c in range((len(order) + CHUNK - 1) // CHUNK)]
        return dataclasses.replace(frags, pieces=tuple(pieces))

    @classmethod
    def from_encoded(cls, kind: str, version: str, order: Sequence[str], encoded: Sequence[bytes]) -> Any:
        ends = list(itertools.accumulate((len(e) + 1 for e in encoded), initial=-1))[1:]
        return cls.make(kind, version, order, b",".join(encoded), ends)

    def chunk(self, c: int, replaced: Mapping[int, bytes] | None = None) -> bytes:
        """The text of chunk ``c`` (``list_gzip.chunk_texts``: a comma first after the first),
        with ``replaced`` elements spliced in."""
        first, last = c * CHUNK, min(len(self.order), (c + 1) * CHUNK) - 1
        lo = self.starts[first] - (1 if c else 0)
        return splice(self, lo, self.ends[last], replaced or {})

    def element(self, i: int) -> bytes:
        return self.text[self.starts[i] : self.ends[i]]

    def row(self, pack_id: str) -> dict[str, Any]:
        """The not-installed row of ``pack_id`` (decoded from its fragment; installed packs only)."""
        enc = self.element(self.position[pack_id])
        if self.kind == "classic":
            return dict(json.loads(b"{" + enc + b"}")[pack_id])
        return dict(json.loads(enc))

    def persisted(self, state: ChannelState, url_index: Mapping[str, str]) -> PersistedList:
        from .list_cache import PersistedList

        ends = list(itertools.accumulate(len(p) for p in self.pieces))
        blobs = {"deflate": b"".join(self.pieces), "deflate_ends": dumps(ends)}
        return PersistedList(
            self.kind,
            self.version,
            state.channel,
            state.files,
            self.order,
            self.text,
            tuple(self.ends),
            url_index,
            blobs,
        )

    @classmethod
    def from_persisted(cls, item: PersistedList) -> Any:
        packed, ends = item.blobs.get("deflate", b""), json.loads(item.blobs.get("deflate_ends", b"[]"))
        starts = [0, *ends[:-1]]
        pieces: list[bytes] | None = [packed[a:b] for a, b in zip(starts, ends, strict=True)]
        if len(pieces or ()) != (len(item.ids) + CHUNK - 1) // CHUNK:
            pieces = None  # re-compressed (the checksum passed, so this is a format slip)
        return cls.make(item.kind, item.catalog_version, item.ids, item.text, item.ends, pieces)


def splice(frags: Fragments, lo: int, hi: int, replaced: Mapping[int, bytes]) -> bytes:
    """``frags.text[lo:hi]`` with the elements at the positions of ``replaced`` swapped in."""
    inside = sorted(i for i in replaced if lo <= frags.starts[i] and frags.ends[i] <= hi)
    if not inside:
        return frags.text[lo:hi]
    parts: list[bytes] = []
    pos = lo
    for i in inside:
        parts += (frags.text[pos : frags.starts[i]], replaced[i])
        pos = frags.ends[i]
    parts.append(frags.text[pos:hi])
    return b"".join(parts)


def encode_catalog(kind: str, catalog: Catalog) -> Fragments:
    """Every pack of ``catalog`` encoded as list ``kind`` ("classic" or "v1") shows it, not installed.

    Written into one growing buffer: each row's bytes are garbage as soon as they are copied, so
    59k rows leave no 59k freed blocks behind in the heap (~40 MB of RSS that stayed mapped)."""
    out = io.BytesIO()
    ends = array("q")
    order: list[str] = []
    for p in catalog.packs:
        if order:
            out.write(b",")
        if kind == "classic":
            out.write(dumps(p.id))
            out.write(b":")
            out.write(dumps(classic_row(p, catalog)))
        else:
            row = p.to_dict()
            row["installed"] = None
            out.write(dumps(row))
        ends.append(out.tell())
        order.append(p.id)
    text = out.getvalue()
    out.close()
    result: Fragments = Fragments.make(kind, catalog.version, order, text, ends)
    return result


def rebuild_persisted(manager: Manager) -> tuple[Path, ...]:
    """Write the persisted lists of the active channel from what the cache now serves (after
    ``update-cache`` or an import wrote new channel files); the next server start answers its first
    list request from them. Returns the files written: none when the channel cannot be read
    without the network, or its files changed while the catalog was built (the server then
    builds the lists itself, as before). Blocking."""
    from .list_cache import ListStore, channel_state

    state = channel_state(manager)
    if state is None:
        return ()
    catalog = manager.load_catalog(refresh="never").catalog
    if catalog.version != state.version:
        log.info("persisted lists not rebuilt: the channel files changed while they were read")
        return ()
    store = ListStore.for_manager(manager)
    return tuple(store.save(encode_catalog(kind, catalog).persisted(state, catalog.url_index())) for kind in LIST_KINDS)
