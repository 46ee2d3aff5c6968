"""Typed, frozen records that cross module boundaries.

Tuples instead of lists keep them hashable and immutable; ``to_dict`` gives the
JSON shape used by the API and ``cm-cli --json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Record:
    __slots__ = ()  # a subclass declared with slots=True then has no per-instance __dict__

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class Channel(_Record):
    """One line of channels.list: a named base URL (http(s) or file://) holding the DB files."""

    name: str
    url: str

    @property
    def is_local(self) -> bool:
        return self.url.startswith("file://") or "://" not in self.url


@dataclass(frozen=True, slots=True)
class NodePack(_Record):
    """One custom node pack as the catalog knows it (merged from channel files)."""

    id: str
    title: str
    author: str = ""
    reference: str = ""  # repository or page URL
    files: tuple[str, ...] = ()  # clone URL, raw file URLs or archive URLs
    install_type: str = "git-clone"  # normalised: git-clone | copy | unzip | cnr
    description: str = ""
    pip: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    nodename_pattern: str = ""
    preemptions: tuple[str, ...] = ()
    channel: str = ""
    stars: int | None = None
    last_update: str = ""
    cnr_id: str = ""  # Comfy Registry id when known
    latest_version: str = ""


@dataclass(frozen=True)
class ModelEntry(_Record):
    """One entry of a channel's model-list.json."""

    name: str
    type: str
    filename: str
    url: str
    base: str = ""
    save_path: str = "default"
    size: str = ""
    description: str = ""
    reference: str = ""
    channel: str = ""
    sha256: str = ""  # lower-case hex when the model list gives one ("" when absent or not a digest)


@dataclass(frozen=True)
class CacheEntry(_Record):
    """Metadata sidecar of one cached remote file."""

    url: str
    path: str  # absolute path of the cached body
    fetched_at: float  # unix time of the last successful fetch or revalidation
    sha256: str
    size: int
    etag: str = ""
    last_modified: str = ""


@dataclass(frozen=True)
class CatalogIssue(_Record):
    """A bad entry found while loading channel data: reported, never fatal."""

    channel: str
    file: str
    index: int | str
    problem: str
    entry_title: str = ""


@dataclass(frozen=True)
class Notice(_Record):
    """Something the user should know (stale data, fallbacks, skipped entries)."""

    level: str  # info | warning | error
    code: str
    message: str
    hint: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyDecision(_Record):
    """The security policy's answer for one operation: allowed, or denied with a code and hint.

    Operations take one of these from their caller (the API or the CLI decides with
    ``manager.security``), so an operation never runs a risky source nobody approved.
    """

    allowed: bool
    operation: str
    risk: str = ""  # e.g. catalog | registry | git_url | local_path | pip
    code: str = ""
    reason: str = ""
    hint: str = ""

    @classmethod
    def allow(cls, operation: str, risk: str = "", reason: str = "") -> PolicyDecision:
        return cls(True, operation, risk, "", reason)
