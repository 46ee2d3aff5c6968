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
import urllib.parse
from collections.abc import Callable
from typing import Any

from .channel_cache import CachedFile, ChannelCache, format_age
from .errors import (
    CacheCorrupt,
    CacheMissing,
    ChannelDataInvalid,
    ConfigError,
    DownloadIncomplete,
    HttpStatusError,
    ManagerError,
    NetworkBlocked,
    NetworkUnreachable,
    NotFound,
    RegistryError,
    ResponseTooLarge,
)
from .network import NetworkGate, redact_url
from .records import CatalogIssue, Notice
from .registry_records import (
    _REGISTRY_HINT,
    DEFAULT_REGISTRY_URL,
    LISTING_FORMAT,
    MAX_ISSUES_KEPT,
    NIGHTLY,
    REGISTRY_PAGE_URL,
    VERSION_STATUSES,
    RegistryListing,
    RegistryNode,
    RegistryNodeVersion,
    _decode_json,
    _Page,
    _registry_error,
    collect_nodes,
    decode_listing,
    encode_listing,
    parse_node,
    parse_page,
    parse_version,
    to_node_packs,
    validate_node_id,
    validate_version,
)

# The records and their parsing moved to registry_records; these names stay importable from here.
__all__ = [
    "DEFAULT_REGISTRY_URL",
    "LISTING_FORMAT",
    "MAX_ISSUES_KEPT",
    "NIGHTLY",
    "PAGE_MAX_BYTES",
    "REGISTRY_PAGE_URL",
    "RegistryClient",
    "RegistryListing",
    "RegistryNode",
    "RegistryNodeVersion",
    "VERSION_STATUSES",
    "collect_nodes",
    "decode_listing",
    "encode_listing",
    "parse_node",
    "parse_page",
    "parse_version",
    "to_node_packs",
    "validate_node_id",
    "validate_version",
]

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

    def version_url(self, node_id: str, version: str) -> str:
        """The path form of one version (``GET /nodes/{id}/versions/{version}``), which a static
        mirror can answer (``manager/fleet/registry_static.py``)."""
        return f"{self.base_url}/nodes/{validate_node_id(node_id)}/versions/{validate_version(version)}"

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
        if pinned is not None and info.node_id == node_id and info.version != pinned:
            # a static mirror (mirror build) cannot see the query: ask its path form of the version
            url = self.version_url(node_id, pinned)
            body = await self._get_json_doc(
                url, refresh="auto", node_id=node_id, version=pinned, what=what, check=_must_be_object
            )
            info = parse_version(body, node_id=node_id, url=url)
        if info.download_url and "://" not in info.download_url and not info.download_url.startswith("//"):
            # a mirror answers download URLs relative to the answer's own URL (any URL prefix works)
            info = dataclasses.replace(info, download_url=urllib.parse.urljoin(url, info.download_url))
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
