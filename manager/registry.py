"""Comfy Registry client: node listing, versions and install info, all through the NetworkGate.

Calls (``base_url`` is the ``registry_url`` setting, default ``https://api.comfy.org``):

- ``GET {base}/nodes?page=N&limit=M`` pages through every node; the assembled list is stored as
  one cache entry so offline mode serves it and the TTL / stale rules of ``ChannelCache`` apply.
- ``GET {base}/nodes/{id}/versions?statuses=...`` lists the versions of one node (cached).
- ``GET {base}/nodes/{id}/install[?version=v]`` answers the download URL of one version. The
  "latest" answer is never cached (it changes); a pinned version is immutable and is cached.

Malformed answers raise ``RegistryError`` naming ``registry_url``; a single bad node in a page is
skipped and reported as a ``CatalogIssue``, never fatal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .channel_cache import CachedFile, ChannelCache, format_age
from .errors import (
    CacheCorrupt,
    CacheMissing,
    ChannelDataInvalid,
    ConfigError,
    DownloadIncomplete,
    HttpStatusError,
    InvalidName,
    ManagerError,
    NetworkBlocked,
    NetworkUnreachable,
    NotFound,
    RegistryError,
    ResponseTooLarge,
)
from .network import NetworkGate, redact_url
from .records import CatalogIssue, NodePack, Notice, _Record

DEFAULT_REGISTRY_URL = "https://api.comfy.org"
REGISTRY_PAGE_URL = "https://registry.comfy.org/nodes/"
# The statuses the classic manager asks for when listing versions.
VERSION_STATUSES = ("NodeVersionStatusActive", "NodeVersionStatusPending")
NIGHTLY = "nightly"
LISTING_FORMAT = "registry-listing/1"
MAX_ISSUES_KEPT = 50

# Registry ids are lower-case slugs; we accept a little more (case, dots) but nothing that can
# change the meaning of a URL path: no '/', '?', '#', '%', whitespace, and no leading dot.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SAFE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$")

PAGE_MAX_BYTES = 64 * 1024 * 1024
# Failures after which a cached listing is served instead (flagged stale).
_FALLBACK_ERRORS = (
    NetworkBlocked,
    NetworkUnreachable,
    HttpStatusError,
    DownloadIncomplete,
    ResponseTooLarge,
    RegistryError,
    ChannelDataInvalid,
)
_REGISTRY_HINT = (
    "Check the registry_url setting (default https://api.comfy.org): it must point at the "
    "Comfy Registry API or a mirror that answers the same JSON."
)


# --- records -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegistryNodeVersion(_Record):
    """One published version of a registry node (``NodeVersion`` in the registry API)."""

    node_id: str
    version: str
    download_url: str = ""
    changelog: str = ""
    dependencies: tuple[str, ...] = ()
    deprecated: bool = False
    status: str = ""
    status_reason: str = ""
    created_at: str = ""
    supported_comfyui_version: str = ""
    supported_comfyui_frontend_version: str = ""
    supported_os: tuple[str, ...] = ()
    supported_accelerators: tuple[str, ...] = ()
    id: str = ""  # the registry's uuid of this version


@dataclass(frozen=True)
class RegistryNode(_Record):
    """One node pack as the registry lists it (``Node`` in the registry API)."""

    id: str
    name: str = ""
    description: str = ""
    author: str = ""
    publisher_id: str = ""
    publisher_name: str = ""
    repository: str = ""
    latest_version: str = NIGHTLY  # "nightly" when the pack never published a release
    latest_download_url: str = ""
    latest_created_at: str = ""
    latest_deprecated: bool = False
    downloads: int = 0
    github_stars: int | None = None
    rating: float = 0.0
    icon: str = ""
    license: str = ""
    category: str = ""
    tags: tuple[str, ...] = ()
    status: str = ""
    status_detail: str = ""
    created_at: str = ""
    supported_comfyui_version: str = ""
    supported_os: tuple[str, ...] = ()
    supported_accelerators: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegistryListing(_Record):
    """Every registry node, with where the data came from and how old it is."""

    nodes: tuple[RegistryNode, ...]
    source: str  # fresh | revalidated | fetched | stale | local (from the cache)
    age_seconds: float
    notice: Notice | None = None  # e.g. the stale-data notice of the cache
    base_url: str = ""
    total_reported: int = 0  # what the registry said its total was
    skipped: int = 0  # bad nodes left out
    issues: tuple[CatalogIssue, ...] = ()


# --- validation and parsing ----------------------------------------------------------------
def validate_node_id(node_id: object) -> str:
    """Return ``node_id`` if it is safe inside a URL path, else raise ``InvalidName``."""
    if not isinstance(node_id, str) or not _SAFE_ID.fullmatch(node_id) or ".." in node_id:
        raise InvalidName(
            f"{node_id!r} is not a valid Comfy Registry node id",
            hint="Registry ids use letters, digits, '-', '_' and '.' only (for example comfyui-impact-pack).",
            details={"node_id": str(node_id)[:200]},
        )
    return node_id


def validate_version(version: object) -> str:
    """Return ``version`` if it is a plausible registry version string, else raise ``InvalidName``."""
    if not isinstance(version, str) or not _SAFE_VERSION.fullmatch(version):
        raise InvalidName(
            f"{version!r} is not a valid registry version",
            hint="Give a released version such as 1.2.3, or leave it out for the latest.",
            details={"version": str(version)[:200]},
        )
    return version


def _registry_error(message: str, url: str, **details: Any) -> RegistryError:
    return RegistryError(message, hint=_REGISTRY_HINT, details={"url": redact_url(url), **details})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _decode_json(body: bytes, url: str) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # deep nesting is hostile input
        raise _registry_error(
            f"the registry answer from {url} is not JSON ({exc.__class__.__name__})",
            url,
            body_start=body[:80].decode("utf-8", "replace"),
        ) from None


def parse_version(raw: Any, *, node_id: str = "", url: str = "") -> RegistryNodeVersion:
    """A ``NodeVersion`` object -> ``RegistryNodeVersion``; ``RegistryError`` if it is not one."""
    if not isinstance(raw, dict) or not isinstance(raw.get("version"), str) or not raw["version"]:
        raise _registry_error(f"the registry answered something that is not a node version for {node_id!r}", url)
    return RegistryNodeVersion(
        node_id=_text(raw.get("node_id")) or node_id,
        version=raw["version"],
        download_url=_text(raw.get("downloadUrl")),
        changelog=_text(raw.get("changelog")),
        dependencies=_strings(raw.get("dependencies")),
        deprecated=raw.get("deprecated") is True,
        status=_text(raw.get("status")),
        status_reason=_text(raw.get("status_reason")),
        created_at=_text(raw.get("createdAt")),
        supported_comfyui_version=_text(raw.get("supported_comfyui_version")),
        supported_comfyui_frontend_version=_text(raw.get("supported_comfyui_frontend_version")),
        supported_os=_strings(raw.get("supported_os")),
        supported_accelerators=_strings(raw.get("supported_accelerators")),
        id=_text(raw.get("id")),
    )


def parse_node(raw: Any) -> RegistryNode:
    """A ``Node`` object -> ``RegistryNode``; ``ValueError`` (with the reason) if unusable."""
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not node_id:
        raise ValueError("node without an id")
    try:
        validate_node_id(node_id)
    except InvalidName:
        raise ValueError(f"unsafe node id {node_id!r}") from None
    found_publisher, found_latest = raw.get("publisher"), raw.get("latest_version")
    publisher: dict[str, Any] = found_publisher if isinstance(found_publisher, dict) else {}
    latest: dict[str, Any] = found_latest if isinstance(found_latest, dict) else {}
    latest_version = _text(latest.get("version")) or NIGHTLY
    rating = raw.get("rating")
    stars = raw.get("github_stars")
    return RegistryNode(
        id=node_id,
        name=_text(raw.get("name")) or node_id,
        description=_text(raw.get("description")),
        author=_text(raw.get("author")),
        publisher_id=_text(publisher.get("id")),
        publisher_name=_text(publisher.get("name")),
        repository=_text(raw.get("repository")),
        latest_version=latest_version,
        latest_download_url=_text(latest.get("downloadUrl")),
        latest_created_at=_text(latest.get("createdAt")),
        latest_deprecated=latest.get("deprecated") is True,
        downloads=_int(raw.get("downloads")),
        github_stars=stars if isinstance(stars, int) and not isinstance(stars, bool) else None,
        rating=float(rating) if isinstance(rating, (int, float)) and not isinstance(rating, bool) else 0.0,
        icon=_text(raw.get("icon")),
        license=_text(raw.get("license")),
        category=_text(raw.get("category")),
        tags=_strings(raw.get("tags")),
        status=_text(raw.get("status")),
        status_detail=_text(raw.get("status_detail")),
        created_at=_text(raw.get("created_at")),
        supported_comfyui_version=_text(latest.get("supported_comfyui_version")),
        supported_os=_strings(latest.get("supported_os")),
        supported_accelerators=_strings(latest.get("supported_accelerators")),
    )


@dataclass(frozen=True)
class _Page:
    raw_nodes: list[Any]
    total: int
    total_pages: int


def parse_page(doc: Any, url: str) -> _Page:
    """One ``/nodes`` page; ``RegistryError`` when the envelope itself is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        raise _registry_error(f"the registry page {url} has no 'nodes' list", url)
    # The API names it totalPages; accept totalNumberOfPages (used by other registry lists) too.
    pages = doc.get("totalPages", doc.get("totalNumberOfPages"))
    total, limit = doc.get("total"), doc.get("limit")
    if pages is None:  # derive it rather than silently stopping after page 1
        pages = -(-_int(total) // _int(limit)) if _int(total) > 0 and _int(limit) > 0 else 1
    if not isinstance(pages, int) or isinstance(pages, bool) or pages < 0:
        raise _registry_error(f"the registry page {url} reports an invalid page count {pages!r}", url)
    return _Page(doc["nodes"], _int(total, len(doc["nodes"])), pages)


def collect_nodes(raw_nodes: list[Any], url: str) -> tuple[list[RegistryNode], list[CatalogIssue]]:
    """Parse nodes, dropping duplicates (pages can shift while paging) and skipping bad ones."""
    nodes: dict[str, RegistryNode] = {}
    issues: list[CatalogIssue] = []
    for index, raw in enumerate(raw_nodes):
        try:
            node = parse_node(raw)
        except ValueError as exc:
            title = raw.get("name", "") if isinstance(raw, dict) else ""
            issues.append(
                CatalogIssue(
                    channel="registry",
                    file=url,
                    index=index,
                    problem=str(exc),
                    entry_title=title if isinstance(title, str) else "",
                )
            )
            continue
        nodes.setdefault(node.id, node)
    return list(nodes.values()), issues


def to_node_packs(listing: RegistryListing) -> list[NodePack]:
    """Registry nodes as catalog records (``install_type`` ``cnr``)."""
    return [
        NodePack(
            id=n.id,
            title=n.name or n.id,
            author=n.publisher_name or n.author,
            reference=n.repository or REGISTRY_PAGE_URL + n.id,
            files=(n.repository,) if n.repository else (),
            install_type="cnr",
            description=n.description,
            tags=n.tags,
            channel="registry",
            stars=n.github_stars,
            last_update=n.latest_created_at,
            cnr_id=n.id,
            latest_version=n.latest_version,
        )
        for n in listing.nodes
    ]


# --- the cached listing document -------------------------------------------------------------
def _from_dict(cls: type, raw: Any) -> Any:
    """Rebuild a record written by ``to_dict`` (lists back to tuples); ``ValueError`` if unusable."""
    if not isinstance(raw, dict):
        raise ValueError(f"{cls.__name__} entry is not an object")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            value = raw[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def encode_listing(base_url: str, nodes: list[RegistryNode], issues: list[CatalogIssue], total: int) -> bytes:
    """The one cache entry that holds the whole assembled listing."""
    doc = {
        "format": LISTING_FORMAT,
        "base_url": base_url,
        "total": total,
        "nodes": [n.to_dict() for n in nodes],
        "issues": [i.to_dict() for i in issues[:MAX_ISSUES_KEPT]],
        "skipped": len(issues),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_listing(data: bytes) -> dict[str, Any]:
    """Parse a cached listing; ``ValueError`` when it is not one we wrote."""
    doc = json.loads(data.decode("utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != LISTING_FORMAT or not isinstance(doc.get("nodes"), list):
        raise ValueError(f"not a {LISTING_FORMAT} document")
    return {
        "base_url": str(doc.get("base_url", "")),
        "total": _int(doc.get("total")),
        "skipped": _int(doc.get("skipped")),
        "nodes": tuple(_from_dict(RegistryNode, n) for n in doc["nodes"]),
        "issues": tuple(_from_dict(CatalogIssue, i) for i in doc.get("issues") or []),
    }


# --- the client ----------------------------------------------------------------------------------
class RegistryClient:
    """Talks to the Comfy Registry (or a mirror with the same API) through the ``NetworkGate``.

    ``cache`` (a ``ChannelCache`` of its own folder) keeps the node listing, version lists and
    pinned install answers, so offline mode and outages are served from disk with their age.
    """

    def __init__(
        self,
        base_url: str,
        gate: NetworkGate,
        cache: ChannelCache | None = None,
        *,
        page_size: int = 100,
        max_pages: int = 1000,
        concurrency: int = 4,
        query: dict[str, str] | None = None,
        logger: logging.Logger | None = None,
    ):
        base = str(base_url or DEFAULT_REGISTRY_URL).strip().rstrip("/")
        parts = urllib.parse.urlsplit(base)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(
                f"registry_url {redact_url(base)!r} is not an http(s) base URL",
                hint="Set registry_url in config.ini to https://api.comfy.org or your "
                "registry mirror (no query string).",
                details={"key": "registry_url"},
            )
        if page_size < 1 or max_pages < 1 or concurrency < 1:
            raise ValueError("page_size, max_pages and concurrency must be at least 1")
        self.base_url = base
        self.gate = gate
        self.cache = cache
        self.page_size = page_size
        self.max_pages = max_pages
        self.concurrency = concurrency
        # Extra listing filters the classic manager sends (comfyui_version, form_factor).
        self.query = dict(query or {})
        self.log = logger or logging.getLogger("offline_manager.registry")

    to_node_packs = staticmethod(to_node_packs)

    # -- URLs -----------------------------------------------------------------------------------
    def listing_key(self) -> str:
        """The cache key of the assembled listing: the listing URL without a page number."""
        return f"{self.base_url}/nodes?" + urllib.parse.urlencode({"limit": self.page_size, **self.query})

    def page_url(self, page: int) -> str:
        return f"{self.base_url}/nodes?" + urllib.parse.urlencode({"page": page, "limit": self.page_size, **self.query})

    def versions_url(self, node_id: str) -> str:
        query = urllib.parse.urlencode([("statuses", s) for s in VERSION_STATUSES])
        return f"{self.base_url}/nodes/{validate_node_id(node_id)}/versions?{query}"

    def install_url(self, node_id: str, version: str | None = None) -> str:
        url = f"{self.base_url}/nodes/{validate_node_id(node_id)}/install"
        if version is not None:
            url += "?" + urllib.parse.urlencode({"version": validate_version(version)})
        return url

    # -- listing --------------------------------------------------------------------------------
    async def list_nodes(self, *, refresh: str = "auto") -> RegistryListing:
        """Every registry node. ``refresh``: ``auto`` (cache while fresh), ``force``, ``never``.

        Offline, or when the registry cannot be reached, the cached listing is served at any
        age with a notice; with nothing cached the error says how to fill the cache.
        """
        if refresh not in ("auto", "force", "never"):
            raise ValueError(f"refresh must be auto, force or never, not {refresh!r}")
        if self.cache is None:
            nodes, issues, total = await self._fetch_all()
            return self._listing(
                tuple(nodes), tuple(issues[:MAX_ISSUES_KEPT]), total, len(issues), "fetched", 0.0, None
            )
        key = self.listing_key()
        decoded: dict[str, Any] = {}

        def check(data: bytes) -> None:
            doc = decode_listing(data)
            if doc["base_url"] != self.base_url:
                raise ValueError(f"listing of {doc['base_url']!r}, not {self.base_url!r}")
            decoded["doc"] = doc

        hit: CachedFile | None = None
        miss: ManagerError | None = None
        try:
            # refresh="never" only reads the disk; the network part is ours (many pages, one entry).
            hit = await self.cache.aget(key, refresh="never", validate=check)
        except (CacheMissing, CacheCorrupt) as exc:
            miss = exc
        if hit is not None and (
            refresh == "never" or self.gate.offline or (refresh == "auto" and hit.source == "fresh")
        ):
            return self._cached_listing(decoded["doc"], hit, hit.notice)
        if hit is None and (refresh == "never" or self.gate.offline):
            raise miss  # type: ignore[misc]  # set whenever aget found nothing usable
        try:
            nodes, issues, total = await self._fetch_all()
        except _FALLBACK_ERRORS as exc:
            if hit is None:
                raise
            self.log.warning("registry listing refresh failed (%s); serving the cached copy", exc)
            return self._cached_listing(decoded["doc"], hit, self._stale_notice(hit, exc))
        data = encode_listing(self.base_url, nodes, issues, total)
        await asyncio.to_thread(self.cache.put, key, data)
        return self._listing(tuple(nodes), tuple(issues[:MAX_ISSUES_KEPT]), total, len(issues), "fetched", 0.0, None)

    def _listing(
        self,
        nodes: tuple[RegistryNode, ...],
        issues: tuple[CatalogIssue, ...],
        total: int,
        skipped: int,
        source: str,
        age: float,
        notice: Notice | None,
    ) -> RegistryListing:
        return RegistryListing(
            nodes=nodes,
            source=source,
            age_seconds=age,
            notice=notice,
            base_url=self.base_url,
            total_reported=total,
            skipped=skipped,
            issues=issues,
        )

    def _cached_listing(self, doc: dict[str, Any], hit: CachedFile, notice: Notice | None) -> RegistryListing:
        return self._listing(
            doc["nodes"], doc["issues"], doc["total"], doc["skipped"], hit.source, hit.age_seconds, notice
        )

    def _stale_notice(self, hit: CachedFile, error: Exception) -> Notice:
        message = error.message if isinstance(error, ManagerError) else str(error)
        hint = error.hint if isinstance(error, ManagerError) and error.hint else _REGISTRY_HINT
        return Notice(
            "warning",
            "cache_stale",
            f"using the cached registry listing from {format_age(hit.age_seconds)} ago: {message}",
            hint=hint,
            details={
                "url": redact_url(self.listing_key()),
                "age_seconds": hit.age_seconds,
                "reason": getattr(error, "code", type(error).__name__),
            },
        )

    async def _fetch_all(self) -> tuple[list[RegistryNode], list[CatalogIssue], int]:
        """Page 1 tells the page count; the other pages are fetched concurrently (bounded)."""
        self.gate.decide(self.page_url(1), "registry")  # refuse before a session is even built
        async with self.gate.session() as session:
            first = await self._get_page(1, session)
            if first.total_pages > self.max_pages:
                raise _registry_error(
                    f"the registry reports {first.total_pages} pages of {self.page_size} nodes, more than "
                    f"the limit of {self.max_pages}",
                    self.page_url(1),
                    total_pages=first.total_pages,
                )
            limiter = asyncio.Semaphore(self.concurrency)

            async def one(page: int) -> _Page:
                async with limiter:
                    return await self._get_page(page, session)

            tasks = [asyncio.ensure_future(one(p)) for p in range(2, first.total_pages + 1)]
            try:
                rest = list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        raw: list[Any] = []
        for page in [first, *rest]:
            raw.extend(page.raw_nodes)
        nodes, issues = collect_nodes(raw, self.listing_key())
        if issues:
            self.log.warning(
                "registry listing: skipped %d malformed node(s), first: %s", len(issues), issues[0].problem
            )
        return nodes, issues, first.total

    async def _get_page(self, page: int, session: Any) -> _Page:
        url = self.page_url(page)
        try:
            resp = await self.gate.get(url, purpose="registry", max_bytes=PAGE_MAX_BYTES, session=session)
        except HttpStatusError as exc:
            raise self._status(exc, what="the node listing") from None
        return parse_page(_decode_json(resp.body, url), url)

    def _status(
        self, exc: HttpStatusError, *, what: str, node_id: str = "", version: str | None = None
    ) -> ManagerError:
        status = exc.details.get("status")
        if status == 404 and node_id:
            label = f"{node_id}@{version}" if version else node_id
            return NotFound(
                f"{label} is not in the registry at {self.base_url}",
                hint=(
                    f"Check the node id and version against {self.base_url}/nodes/{node_id}/versions; "
                    "a private mirror must carry the node too (registry_url)."
                ),
                details={**exc.details, "node_id": node_id, "version": version or "latest"},
            )
        return HttpStatusError(
            f"{exc.message} while reading {what}",
            hint=f"{exc.hint} The registry base URL is the registry_url setting.",
            details=exc.details,
        )

    # -- one node ---------------------------------------------------------------------------------
    async def versions(self, node_id: str, *, refresh: str = "auto") -> list[RegistryNodeVersion]:
        """Active and pending versions of ``node_id``, newest first as the registry orders them."""
        url = self.versions_url(node_id)
        body = await self._get_json_doc(
            url, refresh=refresh, node_id=node_id, what=f"the versions of {node_id}", check=_must_be_list
        )
        if not isinstance(body, list):
            raise _registry_error(f"the versions of {node_id!r} are not a JSON list", url)
        out = []
        for raw in body:
            try:
                out.append(parse_version(raw, node_id=node_id, url=url))
            except RegistryError:
                self.log.warning("registry: skipped a malformed version entry of %s", node_id)
        return out

    async def install_info(self, node_id: str, version: str | None = None) -> RegistryNodeVersion:
        """Where to download ``node_id`` at ``version`` (``None``/``"latest"``: the newest release).

        The latest answer is always asked fresh (it moves); a pinned version never changes, so it
        is cached and also served offline.
        """
        pinned = None if version in (None, "", "latest") else version
        url = self.install_url(node_id, pinned)
        what = f"the install info of {node_id}"
        if pinned is None:
            body = await self._get_json_doc(url, refresh=None, node_id=node_id, what=what)
        else:
            body = await self._get_json_doc(
                url, refresh="auto", node_id=node_id, version=pinned, what=what, check=_must_be_object
            )
        info = parse_version(body, node_id=node_id, url=url)
        if info.node_id != node_id or (pinned is not None and info.version != pinned):
            raise _registry_error(
                f"asked for {node_id}@{pinned or 'latest'}, the registry answered {info.node_id}@{info.version}", url
            )
        if info.download_url and not info.download_url.lower().startswith(("https://", "http://")):
            # a registry answer must never make us copy a local file (file://, a path) or use
            # another scheme; plain http is then judged by the gate (https_required in public mode)
            raise _registry_error(
                f"the registry's download URL for {node_id}@{info.version} is not an http(s) URL: "
                f"{redact_url(info.download_url)[:200]!r}",
                url,
                download_url=redact_url(info.download_url)[:200],
            )
        return info

    async def _get_json_doc(
        self,
        url: str,
        *,
        refresh: str | None,
        node_id: str,
        what: str,
        version: str | None = None,
        check: Callable[[bytes], None] | None = None,
    ) -> Any:
        """GET ``url`` as JSON: through the cache when ``refresh`` is set, else straight via the gate."""
        try:
            if refresh is None or self.cache is None:
                resp = await self.gate.get(url, purpose="registry", max_bytes=PAGE_MAX_BYTES)
                data = resp.body
            else:
                hit = await self.cache.aget(url, refresh=refresh, validate=check)
                if hit.notice is not None:
                    self.log.warning("registry: %s", hit.notice.message)
                data = hit.data
        except HttpStatusError as exc:
            raise self._status(exc, what=what, node_id=node_id, version=version) from None
        except ChannelDataInvalid as exc:
            raise _registry_error(f"the registry answer for {what} is malformed ({exc.message})", url) from None
        return _decode_json(data, url)


def _must_be_list(data: bytes) -> None:
    if not isinstance(json.loads(data), list):
        raise ValueError("expected a JSON list of versions")


def _must_be_object(data: bytes) -> None:
    if not isinstance(json.loads(data), dict):
        raise ValueError("expected a JSON object")
