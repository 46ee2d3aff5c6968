"""Comfy Registry records: the registry's JSON objects parsed, validated, and written to / read
from the one cache entry that holds the assembled listing.

Pure functions of their input (no network, no cache): ``RegistryClient`` in ``manager/registry.py``
does the fetching and uses these. Malformed answers raise ``RegistryError``; a single bad node is
skipped and reported as a ``CatalogIssue``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidName, RegistryError
from .network import redact_url
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
