"""The merged, indexed catalog of node packs and models built from channel files (raw bytes).

``Catalog.build`` takes the files of each channel in precedence order (first channel wins),
parses them through a ``ParseCache`` (same bytes parsed once), merges, and indexes by id,
normalised reference URL, title, node class name, and a lower-cased search haystack. Bad data
never stops the build: it becomes ``CatalogIssue`` records (see docs/catalog.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .catalog_parse import (
    CHANNEL_FILES,
    FILE_ALTER,
    FILE_MODELS,
    FILE_NODE_MAP,
    FILE_NODES,
    FILE_STATS,
    PARSERS,
    AlterItem,
    NodeMapEntry,
    PackDraft,
    PackStats,
    ParsedFile,
    name_core,
    normalize_url,
)
from .errors import ChannelDataInvalid
from .memory import release_free_memory
from .records import CatalogIssue, Channel, ModelEntry, NodePack

__all__ = ["Catalog", "catalog_version", "ChannelFiles", "PackStats", "ParseCache", "normalize_url", "CHANNEL_FILES"]

# Bump when the mapping from bytes to records changes: it is part of ``Catalog.version``.
CATALOG_FORMAT = "catalog-1"
KEEP_PARSED_MAX_BYTES = 8 * 1024 * 1024  # the real channel's largest file is ~2.3 MB
TRIM_AFTER_PACKS = 20_000  # a build this large leaves tens of MB free but mapped in the heap
MAX_CLASS_NAME = 512  # longer "class names" only get the exact lookup, never the regex scan


@dataclass(frozen=True)
class ChannelFiles:
    """The raw files of one channel: file name -> bytes; any file may be missing."""

    channel: Channel
    files: Mapping[str, bytes]


class ParseCache:
    """Parsed files keyed by (file kind, sha256 of the bytes): the same content is parsed once.

    Owned by the Manager object (no module-level state). Bounded: the least recently used
    result is evicted beyond ``max_entries``, and the result of a file over ``max_file_bytes``
    is not kept (a 59k-pack list's drafts would stay beside the catalog built from them, ~30 MB,
    to spare a parse of a few seconds when the same bytes are built again).
    ``parses`` counts real parses, ``hits`` reuses.
    """

    def __init__(self, max_entries: int = 32, max_file_bytes: int = KEEP_PARSED_MAX_BYTES):
        self.max_file_bytes = max_file_bytes
        self.max_entries = max(1, max_entries)
        self.parses = 0
        self.hits = 0
        self._items: OrderedDict[tuple[str, str], ParsedFile] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, kind: str, data: bytes, digest: str | None = None) -> ParsedFile:
        """The parsed form of ``data`` as file ``kind`` (one of CHANNEL_FILES)."""
        parser = PARSERS[kind]
        key = (kind, digest or hashlib.sha256(data).hexdigest())
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found
        parsed = parser(data)  # outside the lock: a parse takes tens of milliseconds
        with self._lock:
            self.parses += 1
            if len(data) > self.max_file_bytes:
                return parsed
            self._items[key] = parsed
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return parsed

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def catalog_version(sources: Sequence[tuple[Channel, Mapping[str, str]]]) -> str:
    """The version ``Catalog.build`` gives the files whose sha256 digests are ``sources``
    (channel -> file kind -> hex digest, channels in precedence order). A persisted list built
    from a catalog is checked against it without parsing a file (``manager/list_cache.py``)."""
    version = hashlib.sha256(CATALOG_FORMAT.encode())
    for channel, sums in sources:
        version.update(f"\0{channel.name}\0{channel.url}".encode())
        for kind in CHANNEL_FILES:
            if kind in sums:
                version.update(f"\0{kind}\0{sums[kind]}".encode())
    return version.hexdigest()[:20]


def _merge_models(parsed: list[tuple[str, dict[str, ParsedFile]]], issues: list[CatalogIssue]) -> list[ModelEntry]:
    """All channels' models in order; one offered again by a later channel is skipped."""
    models: list[ModelEntry] = []
    first_channel: dict[tuple[str, str, str], str] = {}
    for name, files in parsed:
        pf = files.get(FILE_MODELS)
        if pf is None:
            continue
        issues.extend(_stamp(i, name) for i in pf.issues)
        for model in pf.items:
            key = (model.url, model.save_path, model.filename)
            if first_channel.setdefault(key, name) != name:
                continue
            models.append(dataclasses.replace(model, channel=name))
    return models


def _stamp(issue: CatalogIssue, channel: str) -> CatalogIssue:
    return dataclasses.replace(issue, channel=channel)


@dataclass(frozen=True)
class _Lookup:
    """Case-insensitive id and title lookups (only a miss of the exact id needs them)."""

    by_id_lower: Mapping[str, NodePack]
    by_title: Mapping[str, Sequence[NodePack]]

    @classmethod
    def of(cls, packs: Sequence[NodePack]) -> _Lookup:
        lower: dict[str, NodePack] = {}
        titles: dict[str, list[NodePack]] = {}
        for pack in packs:
            lower.setdefault(pack.id.lower(), pack)
            titles.setdefault(pack.title.strip().lower(), []).append(pack)
        return cls(lower, titles)


@dataclass(frozen=True)
class _SearchIndex:
    """What ``Catalog.search`` scans, per pack in catalog order, built at the first search."""

    hay: Sequence[str]  # "lower title\nlower id\nlower author\nlower description"
    name_l: Sequence[str]  # "lower title\nlower id"
    cores: Sequence[tuple[str, str]]  # name_core(title), name_core(id): exact-name ranking
    star_order: Sequence[int]  # pack indices, most stars first (stable: catalog order in a tie)

    @classmethod
    def of(cls, packs: Sequence[NodePack]) -> _SearchIndex:
        hay: list[str] = []
        name_l: list[str] = []
        cores: list[tuple[str, str]] = []
        for pack in packs:
            names = f"{pack.title.lower()}\n{pack.id.lower()}"
            name_l.append(names)
            hay.append(f"{names}\n{pack.author.lower()}\n{pack.description.lower()}")
            cores.append((name_core(pack.title), name_core(pack.id)))
        neg_stars = [-(p.stars or 0) for p in packs]
        return cls(hay, name_l, cores, sorted(range(len(packs)), key=neg_stars.__getitem__))


class Catalog:
    """Read-only merged view; build it with ``Catalog.build`` (or ``Catalog.empty()``)."""

    packs: tuple[NodePack, ...]
    models: tuple[ModelEntry, ...]
    issues: tuple[CatalogIssue, ...]
    version: str
    channels: tuple[str, ...]

    def __init__(self) -> None:
        self.packs, self.models, self.issues, self.channels = (), (), (), ()
        self.version = hashlib.sha256(CATALOG_FORMAT.encode()).hexdigest()[:20]
        self._by_id: dict[str, NodePack] = {}
        self._by_url: dict[str, str] = {}  # normalised URL -> pack id
        # built on first use (a server answering lists never needs them; 59k packs: ~40 MB)
        self._lookup: _Lookup | None = None
        self._search: _SearchIndex | None = None
        self._classes: Mapping[str, Sequence[str]] | None = None
        self._node_maps: list[ParsedFile] = []  # extension-node-map.json per channel, in order
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        self._pack_keys: dict[str, tuple[str, ...]] = {}
        self._stats: dict[str, PackStats] = {}
        self._pack_issues: dict[str, tuple[CatalogIssue, ...]] = {}
        self._alternatives: tuple[dict[str, Any], ...] = ()

    # --- building -------------------------------------------------------------------
    @classmethod
    def empty(cls) -> Catalog:
        """A catalog with nothing in it (no channel data available yet)."""
        return cls()

    @classmethod
    def build(
        cls, sources: Sequence[ChannelFiles], *, parse_cache: ParseCache | None = None, strict: bool = False
    ) -> Catalog:
        """Parse, merge and index ``sources`` (earlier channels win on conflicts).

        Bad entries and unusable files become ``issues``; with ``strict=True`` a file that is
        not JSON or has the wrong top-level shape raises ``ChannelDataInvalid`` instead.
        """
        cache = parse_cache if parse_cache is not None else ParseCache()
        cat = cls()
        parsed: list[tuple[str, dict[str, ParsedFile]]] = []
        issues: list[CatalogIssue] = []
        digests: list[tuple[Channel, dict[str, str]]] = []
        for src in sources:
            name = src.channel.name
            per_file: dict[str, ParsedFile] = {}
            sums: dict[str, str] = {}
            digests.append((src.channel, sums))
            for kind in CHANNEL_FILES:
                data = src.files.get(kind)
                if data is None:
                    continue
                digest = sums[kind] = hashlib.sha256(data).hexdigest()
                result = cache.get(kind, data, digest)
                if result.file_problem is not None and strict:
                    raise ChannelDataInvalid(
                        f"{kind} of channel '{name}' is unusable: {result.file_problem.problem}",
                        hint=f"Refresh the channel cache or fix the channel at {src.channel.url} "
                        "(channels.list); without strict mode the rest of the channel still loads.",
                        details={"channel": name, "file": kind},
                    )
                per_file[kind] = result
            parsed.append((name, per_file))
        cat.version = catalog_version(digests)
        cat.channels = tuple(name for name, _ in parsed)

        # github-stats first: packs get their stars while being placed.
        for name, files in parsed:
            if FILE_STATS in files:
                issues.extend(_stamp(i, name) for i in files[FILE_STATS].issues)
                for key, st in files[FILE_STATS].stats.items():
                    cat._stats.setdefault(key, st)
        placed, merge_issues = cat._place_packs(parsed)
        issues.extend(merge_issues)
        fill, map_issues = cat._index_node_map(parsed, placed)
        issues.extend(map_issues)
        cat._make_packs(placed, fill)
        cat.models = tuple(_merge_models(parsed, issues))
        issues.extend(cat._resolve_alternatives(parsed))
        cat.issues = tuple(issues)
        if len(cat.packs) >= TRIM_AFTER_PACKS:  # the decoded files' pages go back to the system
            del parsed
            release_free_memory()
        return cat

    def _place_packs(
        self, parsed: list[tuple[str, dict[str, ParsedFile]]]
    ) -> tuple[list[tuple[PackDraft, str, str]], list[CatalogIssue]]:
        """Decide every pack's final id (first channel wins) and index URLs to ids."""
        issues: list[CatalogIssue] = []
        placed: list[tuple[PackDraft, str, str]] = []  # (draft, final id, channel)
        identity_owner: dict[str, tuple[str, str]] = {}  # identity -> (id, channel)
        id_identity: dict[str, str] = {}
        for name, files in parsed:
            pf = files.get(FILE_NODES)
            if pf is None:
                continue
            stamped = {id(i): _stamp(i, name) for i in pf.issues}
            issues.extend(stamped.values())
            for draft in pf.items:
                pack_id = draft.pack_id
                first = identity_owner.get(draft.identity)
                if first is not None:
                    if first[1] == name:  # the same repository listed twice in one file
                        issues.append(
                            CatalogIssue(
                                name,
                                FILE_NODES,
                                draft.entry_index,
                                f"duplicate_entry: repository already listed as '{first[0]}'; dropped",
                                draft.title,
                            )
                        )
                    continue  # a later channel listing the same repository: first wins
                if pack_id in id_identity:
                    new_id = self._free_id(pack_id, draft.owner, id_identity)
                    what = "duplicate_id" if draft.explicit_id else "id_collision"  # issue, not error code
                    issues.append(
                        CatalogIssue(
                            name,
                            FILE_NODES,
                            draft.entry_index,
                            f"{what}: id '{pack_id}' is taken by another repository; kept as '{new_id}'",
                            draft.title,
                        )
                    )
                    pack_id = new_id
                id_identity[pack_id] = draft.identity
                identity_owner[draft.identity] = (pack_id, name)
                placed.append((draft, pack_id, name))
                self._pack_keys[pack_id] = draft.url_keys
                for key in draft.url_keys:
                    self._by_url.setdefault(key, pack_id)
                own = tuple(stamped[id(i)] for i in draft.issues)
                if own:
                    self._pack_issues[pack_id] = own
        return placed, issues

    def _make_packs(self, placed: list[tuple[PackDraft, str, str]], fill: Mapping[str, NodeMapEntry]) -> None:
        """Create each final NodePack once (id, channel, stats, node-map extras) and index it."""
        packs: list[NodePack] = []
        for draft, pack_id, name in placed:
            st = self._stats_for_keys(draft.url_keys)
            kw: Mapping[str, Any] = draft.fields
            entry = fill.get(pack_id)
            if entry is not None:  # pattern/preemptions only the node map knows
                kw = dict(kw)
                if not kw["nodename_pattern"] and entry.pattern is not None:
                    kw["nodename_pattern"] = entry.pattern.pattern
                if not kw["preemptions"] and entry.preemptions:
                    kw["preemptions"] = entry.preemptions
            pack = NodePack(
                id=pack_id, channel=name, stars=st.stars if st else None, last_update=st.last_update if st else "", **kw
            )
            packs.append(pack)
            self._by_id[pack_id] = pack
        self.packs = tuple(packs)

    @staticmethod
    def _free_id(pack_id: str, owner: str, taken: Mapping[str, str]) -> str:
        base = f"{pack_id}-{owner}" if owner else pack_id
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def _stats_for_keys(self, keys: Sequence[str]) -> PackStats | None:
        for key in keys:
            st = self._stats.get(key)
            if st is not None:
                return st
        return None

    def _index_node_map(
        self, parsed: list[tuple[str, dict[str, ParsedFile]]], placed: list[tuple[PackDraft, str, str]]
    ) -> tuple[dict[str, NodeMapEntry], list[CatalogIssue]]:
        """Keep each channel's node-map index; collect nodename_pattern and unresolved URLs.

        The class-name -> URL index is built at the first node-type lookup (``_class_index``), so a
        build only walks the ~5,600 URLs, not the ~42,000 class names.
        """
        issues: list[CatalogIssue] = []
        # patterns written in custom-node-list entries win over the node map's
        fill: dict[str, NodeMapEntry] = {
            pack_id: NodeMapEntry(str(draft.fields["reference"]), "", "", "", draft.pattern)
            for draft, pack_id, _ in placed
            if draft.pattern is not None
        }
        for name, files in parsed:
            pf = files.get(FILE_NODE_MAP)
            if pf is None:
                continue
            self._node_maps.append(pf)
            issues.extend(_stamp(i, name) for i in pf.issues)
            entry: NodeMapEntry
            for entry in pf.items:
                pack_id = self._by_url.get(entry.url_key)
                if pack_id is None:
                    issues.append(
                        CatalogIssue(
                            name,
                            FILE_NODE_MAP,
                            entry.url,
                            "unresolved_reference: no pack has this URL; its node names are ignored",
                            entry.title,
                        )
                    )
                elif (entry.pattern is not None or entry.preemptions) and pack_id not in fill:
                    fill[pack_id] = entry
        self._patterns = [(e.pattern, pid) for pid, e in fill.items() if e.pattern is not None]
        return fill, issues

    def _resolve_alternatives(self, parsed: list[tuple[str, dict[str, ParsedFile]]]) -> list[CatalogIssue]:
        issues: list[CatalogIssue] = []
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for name, files in parsed:
            pf = files.get(FILE_ALTER)
            if pf is None:
                continue
            issues.extend(_stamp(i, name) for i in pf.issues)
            item: AlterItem
            for item in pf.items:
                if item.url_key in seen:
                    continue
                seen.add(item.url_key)
                pack = self._by_id.get(self._by_url.get(item.url_key, ""))
                out.append(
                    {
                        "id": item.url,
                        "tags": list(item.tags),
                        "description": item.description,
                        "pack_id": pack.id if pack else None,
                        "title": pack.title if pack else "",
                        "channel": name,
                    }
                )
        self._alternatives = tuple(out)
        return issues

    # --- lookups ----------------------------------------------------------------------
    def get(self, pack_id: str) -> NodePack | None:
        """The pack with this id (exact first, then case-insensitive)."""
        pack = self._by_id.get(pack_id)
        if pack is None:
            pack = self._lookups().by_id_lower.get(pack_id.strip().lower())
        return pack

    def by_reference(self, url: str) -> NodePack | None:
        """The pack whose reference or file URL matches ``url`` once both are normalised."""
        return self._by_id.get(self._by_url.get(normalize_url(url), ""))

    def url_index(self) -> Mapping[str, str]:
        """Normalised reference/file URL -> pack id (what ``by_reference`` looks up)."""
        return MappingProxyType(self._by_url)

    def by_title(self, title: str) -> list[NodePack]:
        """Packs whose title equals ``title`` ignoring case and surrounding spaces."""
        return list(self._lookups().by_title.get(title.strip().lower(), ()))

    def search(self, text: str, *, limit: int | None = None) -> list[NodePack]:
        """Packs whose title, id, author or description contain every word of ``text``.

        Ranked: the title or id equal to the query (ignoring case, separators and a leading
        "ComfyUI"), then all words in the title/id, then some, then only author/description
        hits; within a tier by stars (most first), then catalog order.
        An empty query lists every pack in catalog order.
        """
        words = text.lower().split()
        if not words:
            return list(self.packs[:limit] if limit is not None else self.packs)
        index = self._search_index()
        hay, name_l, cores = index.hay, index.name_l, index.cores
        first, rest = words[0], words[1:]
        order = index.star_order
        if rest:
            hits = [i for i in order if first in hay[i] and all(w in hay[i] for w in rest)]
        else:
            hits = [i for i in order if first in hay[i]]
        qcore = name_core(text)  # equal cores also covers an exact title/id match
        # One pass into four tiers keeps the in-tier star order without a per-item sort key.
        tiers: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])
        n_words = len(words)
        for i in hits:
            names = name_l[i]
            in_name = sum(1 for w in words if w in names) if rest else (first in names)
            if in_name == n_words:
                tiers[0 if qcore in cores[i] else 1].append(i)
            else:
                tiers[2 if in_name else 3].append(i)
        ranked = tiers[0] + tiers[1] + tiers[2] + tiers[3]
        if limit is not None:
            ranked = ranked[: max(0, limit)]
        packs = self.packs
        return [packs[i] for i in ranked]

    def _lookups(self) -> _Lookup:
        found = self._lookup
        if found is None:  # two threads may both build it: the same content, one kept
            found = self._lookup = _Lookup.of(self.packs)
        return found

    def _search_index(self) -> _SearchIndex:
        found = self._search
        if found is None:
            found = self._search = _SearchIndex.of(self.packs)
        return found

    def _class_index(self) -> Mapping[str, Sequence[str]]:
        """Class name -> the URL keys of the node-map entries listing it (channels in order),
        built at the first node-type lookup: 59k packs list ~420k names (~40 MB as a dict)."""
        found = self._classes
        if found is None:
            index: dict[str, list[str]] = {}
            for pf in self._node_maps:
                entry: NodeMapEntry
                for entry in pf.items:
                    key = entry.url_key
                    for name in entry.names:
                        have = index.setdefault(name, [key])
                        if have[-1] is not key and key not in have:
                            have.append(key)
            found = self._classes = index
        return found

    def packs_for_node_type(self, class_name: str) -> list[NodePack]:
        """Packs that provide node class ``class_name``: exact map entries, then pattern matches."""
        ids: list[str] = []
        by_url = self._by_url
        for key in self._class_index().get(class_name, ()):
            pack_id = by_url.get(key)
            if pack_id is not None and pack_id not in ids:
                ids.append(pack_id)
        if len(class_name) <= MAX_CLASS_NAME:
            for pattern, pack_id in self._patterns:
                if pack_id not in ids and pattern.search(class_name):
                    ids.append(pack_id)
        return [self._by_id[i] for i in ids if i in self._by_id]

    def node_types(self, pack_id: str) -> tuple[str, ...]:
        """Node class names the extension-node-map lists for this pack."""
        pack = self.get(pack_id)
        if pack is None:
            return ()
        names: dict[str, None] = {}
        for pf in self._node_maps:
            for key in self._pack_keys.get(pack.id, ()):
                entry = pf.by_url.get(key)
                if entry is not None and self._by_url.get(key) == pack.id:
                    names.update(dict.fromkeys(entry.names))
        return tuple(names)

    def alternatives(self) -> list[dict[str, Any]]:
        """alter-list.json items; ``pack_id``/``title`` name the catalog pack when resolvable."""
        return [dict(item, tags=list(item["tags"])) for item in self._alternatives]

    def stats_for(self, pack_id: str) -> PackStats | None:
        """github-stats.json data (stars, last_update, author_account_age_days) of a pack."""
        pack = self.get(pack_id)
        if pack is None:
            return None
        return self._stats_for_keys([normalize_url(u) for u in (pack.reference, *pack.files) if u])

    def issues_for(self, pack_id: str) -> tuple[CatalogIssue, ...]:
        """Issues found in the entry that became this pack (repaired URLs, typos, ...)."""
        pack = self.get(pack_id)
        return self._pack_issues.get(pack.id, ()) if pack else ()

    def summary(self) -> Mapping[str, Any]:
        """Counts for status displays and logs."""
        return MappingProxyType(
            {
                "version": self.version,
                "channels": list(self.channels),
                "packs": len(self.packs),
                "models": len(self.models),
                "issues": len(self.issues),
            }
        )
