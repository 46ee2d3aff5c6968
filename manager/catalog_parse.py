"""Tolerant parsing of one channel file (bytes) into channel-free records plus issues.

Each ``parse_*`` function takes the raw bytes of one file and never raises for bad data: a file
that is not JSON or has the wrong top-level shape yields one file-level issue and nothing else;
a bad entry yields an entry-level issue and the rest of the file still loads. Results carry no
channel name, so identical bytes served by two channels are parsed once (``catalog.ParseCache``);
``catalog.Catalog.build`` stamps the channel and merges. Problem texts start with a stable
snake_case code (``invalid_json: ...``) so tools can match on them.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from .catalog_urls import UrlInfo as UrlInfo  # re-exported: the URL helpers live there
from .catalog_urls import _segments
from .catalog_urls import name_core as name_core
from .catalog_urls import normalize_url as normalize_url
from .catalog_urls import url_info as url_info
from .json_stream import NotStreamable, members
from .records import CatalogIssue, ModelEntry

FILE_NODES = "custom-node-list.json"
FILE_MODELS = "model-list.json"
FILE_NODE_MAP = "extension-node-map.json"
FILE_ALTER = "alter-list.json"
FILE_STATS = "github-stats.json"
CHANNEL_FILES = (FILE_NODES, FILE_MODELS, FILE_NODE_MAP, FILE_ALTER, FILE_STATS)

# Every accepted spelling of an install type -> the normalised value used by the installers.
_INSTALL_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "git-clone": "git-clone",
        "git": "git-clone",
        "git_clone": "git-clone",
        "gitclone": "git-clone",
        "clone": "git-clone",
        "copy": "copy",
        "unzip": "unzip",
        "zip": "unzip",
        "cnr": "cnr",
    }
)
_HF_REPO_RE = re.compile(r"^[\w.-]+/[\w.-]+$")
MAX_PATTERN_LEN = 500  # a longer nodename_pattern is refused: no entry needs one


# --- parsed results ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PackStats:
    """github-stats.json data of one repository."""

    stars: int | None = None
    last_update: str = ""
    author_account_age_days: int | None = None


class PackDraft(NamedTuple):
    """One custom-node-list entry, channel-free; ``catalog`` assigns the final id and channel.

    A NamedTuple, not a dataclass: ~6,000 are made per cold load and tuples build 4x faster.
    """

    fields: Mapping[str, Any]  # NodePack keyword arguments except id, channel and stats
    pack_id: str  # explicit id, or derived from the repository name
    entry_index: int  # the entry's place in the file (named so: a tuple has .index())
    explicit_id: bool
    identity: str  # normalised repository (or reference+files) deciding "same pack"
    url_keys: tuple[str, ...]  # normalised reference and file URLs, for by_reference
    owner: str  # repository owner, used to disambiguate colliding derived ids
    pattern: re.Pattern[str] | None = None
    issues: tuple[CatalogIssue, ...] = ()

    @property
    def title(self) -> str:
        return str(self.fields.get("title", ""))


class NodeMapEntry(NamedTuple):
    url: str
    url_key: str
    names_text: str  # the class names joined by newlines: one object per entry, not one per name
    title: str = ""
    pattern: re.Pattern[str] | None = None
    preemptions: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.names_text.split("\n")) if self.names_text else ()


class AlterItem(NamedTuple):
    url: str
    url_key: str
    tags: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class ParsedFile:
    """What one file yielded. ``file_problem`` is set when the whole file was unusable."""

    kind: str
    items: tuple[Any, ...] = ()
    issues: tuple[CatalogIssue, ...] = ()
    file_problem: CatalogIssue | None = None
    entry_count: int = 0
    stats: Mapping[str, PackStats] = field(default_factory=lambda: MappingProxyType({}))
    by_url: Mapping[str, NodeMapEntry] = field(default_factory=lambda: MappingProxyType({}))  # node map


class _Issues:
    """Collects issues of one file; channel is stamped later by the catalog."""

    def __init__(self, kind: str):
        self.kind = kind
        self.items: list[CatalogIssue] = []

    def add(self, index: int | str, code: str, detail: str, title: str = "") -> CatalogIssue:
        issue = CatalogIssue(channel="", file=self.kind, index=index, problem=f"{code}: {detail}", entry_title=title)
        self.items.append(issue)
        return issue


def _load_json(kind: str, data: bytes, key: str | None) -> tuple[Any, CatalogIssue | None]:
    """Decode ``data``; with ``key`` the top level must be an object holding a list under it."""

    def problem(code: str, detail: str) -> CatalogIssue:
        return CatalogIssue(channel="", file=kind, index="(file)", problem=f"{code}: {detail}")

    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return None, problem("invalid_json", str(exc)[:200] or type(exc).__name__)
    if not isinstance(doc, dict):
        return None, problem("wrong_shape", f"top level is {type(doc).__name__}, expected an object")
    if key is None:
        return doc, None
    if not isinstance(doc.get(key), list):
        return None, problem("wrong_shape", f"expected an object with a list under '{key}'")
    return doc[key], None


def compile_pattern(pattern: str) -> tuple[re.Pattern[str] | None, str]:
    """Compile a nodename_pattern; return (None, reason) instead of raising."""
    if len(pattern) > MAX_PATTERN_LEN:
        return None, f"pattern longer than {MAX_PATTERN_LEN} characters"
    try:
        return re.compile(pattern), ""
    except (re.error, RecursionError, OverflowError) as exc:
        return None, str(exc)


def _own(text: str) -> str:
    """A copy of ``text`` made now, while the decoded document is alive: the few strings a file's
    records keep then share memory pages with the records instead of pinning the pages of the
    whole document (which would stay mapped after it is freed: ~80 MB at 59k packs)."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass") if text else ""


# --- field coercion --------------------------------------------------------------------
def _text(entry: dict[str, Any], key: str, issues: _Issues, idx: int, title: str) -> str:
    value = entry.get(key)
    if type(value) is str:
        return _own(value.strip())
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        issues.add(idx, "wrong_type", f"'{key}' is a number; read as text", title)
        return str(value)
    issues.add(idx, "wrong_type", f"'{key}' is {type(value).__name__}, expected text; ignored", title)
    return ""


def _text_list(entry: dict[str, Any], key: str, issues: _Issues, idx: int, title: str) -> tuple[str, ...]:
    value = entry.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        # alter-list style "a, b, c" or a single value written without brackets
        if key != "tags":
            return (_own(value.strip()),)
        return tuple(_own(v.strip()) for v in value.split(",") if v.strip())
    if not isinstance(value, list):
        issues.add(idx, "wrong_type", f"'{key}' is {type(value).__name__}, expected a list; ignored", title)
        return ()
    out = [_own(v.strip()) for v in value if isinstance(v, str) and v.strip()]
    if len(out) != len(value):
        issues.add(
            idx, "wrong_type", f"'{key}' holds {len(value) - len(out)} non-text or empty item(s); skipped", title
        )
    return tuple(out)


# --- custom-node-list.json ---------------------------------------------------------------
def _streamed(kind: str, data: bytes, key: str | None, build: Callable[[Iterable[Any]], ParsedFile]) -> ParsedFile:
    """``build`` over the document's members decoded one at a time (``json_stream``); a document
    that cannot be streamed is read whole with ``json.loads``, as before, with the same result."""
    try:
        return build(members(data, key))
    except NotStreamable:
        pass
    doc, bad = _load_json(kind, data, key)
    if bad is not None:
        return ParsedFile(kind, file_problem=bad, issues=(bad,))
    return build(doc if key is not None else doc.items())


def parse_custom_node_list(data: bytes) -> ParsedFile:
    """``{"custom_nodes": [...]}`` -> PackDraft items (see docs/catalog.md for every rule)."""
    return _streamed(FILE_NODES, data, "custom_nodes", _packs_from)


def _packs_from(entries: Iterable[Any]) -> ParsedFile:
    issues = _Issues(FILE_NODES)
    drafts: list[PackDraft] = []
    count = 0
    for idx, entry in enumerate(entries):
        count = idx + 1
        draft = _parse_pack(entry, idx, issues)
        if draft is not None:
            drafts.append(draft)
    return ParsedFile(FILE_NODES, tuple(drafts), tuple(issues.items), entry_count=count)


def _parse_pack(entry: Any, idx: int, issues: _Issues) -> PackDraft | None:
    first_issue = len(issues.items)  # issues from here on belong to this entry
    if not isinstance(entry, dict):
        issues.add(idx, "not_an_object", f"entry is {type(entry).__name__}; dropped")
        return None
    get = entry.get
    title = _text(entry, "title", issues, idx, "")
    raw_id = _text(entry, "id", issues, idx, title)
    install_raw = _text(entry, "install_type", issues, idx, title)
    install_type = _INSTALL_TYPES.get(install_raw, "")
    if install_type != install_raw or not install_raw:  # anything but a canonical spelling
        lowered = install_raw.lower()
        if not install_raw:
            install_type = "git-clone"
            issues.add(idx, "missing_field", "'install_type' missing; assumed git-clone", title)
        elif lowered not in _INSTALL_TYPES:
            install_type = lowered
            issues.add(
                idx,
                "unknown_install_type",
                f"'{install_raw}' is not git-clone/copy/unzip/cnr; kept, not installable",
                title,
            )
        else:
            install_type = _INSTALL_TYPES[lowered]
            issues.add(idx, "install_type_normalised", f"'{install_raw}' read as '{install_type}'", title)

    v = get("reference")
    raw_ref = v if type(v) is str else _text(entry, "reference", issues, idx, title)
    ref = _check_one(raw_ref, "reference", issues, idx, title)
    v = get("files")
    raw_files = v if type(v) is list else _text_list(entry, "files", issues, idx, title)
    files: list[UrlInfo] = []
    for pos, raw in enumerate(raw_files):
        if type(raw) is not str:
            issues.add(idx, "wrong_type", f"files[{pos}] is {type(raw).__name__}, expected text; skipped", title)
            continue
        info = ref if ref is not None and raw == raw_ref else _check_one(raw, f"files[{pos}]", issues, idx, title)
        if info is not None:
            files.append(info)
    if not files:
        if install_type == "git-clone" and ref is not None:
            files = [ref]
            issues.add(idx, "empty_files", "'files' is empty; the reference is used as the clone URL", title)
        else:
            issues.add(idx, "empty_files", "'files' is empty; kept, not installable", title)
    if ref is None:
        ref = files[0] if files else None
        if not raw_ref:
            issues.add(
                idx, "missing_field", "'reference' missing" + ("; the first file URL is used" if ref else ""), title
            )
    reference = _own(ref.url) if ref is not None else ""

    # the folder name `git clone` would create is the id users expect when an entry has none
    repo = files[0] if install_type == "git-clone" and files else ref
    segs = _segments(repo.path) if repo is not None else []
    owner = sys.intern(segs[0]) if len(segs) >= 2 else ""
    if raw_id:
        pack_id, explicit = raw_id, True
    else:
        explicit = False
        if segs:  # GitHub-style URLs (.../owner/repo/tree/main, raw.../owner/repo/main/x.py): the repo
            pack_id = segs[1] if len(segs) >= 2 and repo is not None and "github" in repo.host else segs[-1]
        else:
            pack_id = re.sub(r"[^\w.-]+", "-", title).strip("-")
        if not pack_id:
            issues.add(idx, "unusable_entry", "no id, reference, files or title; dropped", title)
            return None
    if not title:
        title = pack_id
        issues.add(idx, "missing_field", f"'title' missing; '{pack_id}' used", title)

    pattern = None
    pattern_text = ""
    if "nodename_pattern" in entry:
        pattern_text = _text(entry, "nodename_pattern", issues, idx, title)
        if pattern_text:
            pattern, why = compile_pattern(pattern_text)
            if pattern is None:
                issues.add(idx, "bad_regex", f"nodename_pattern {pattern_text!r}: {why}; ignored", title)
                pattern_text = ""

    ref_key = ref.key if ref is not None else ""
    file_keys = [f.key for f in files]
    if install_type == "git-clone" and files:
        identity = file_keys[0]
    else:
        identity = ref_key + "|" + "|".join(sorted(file_keys))
    keys = tuple(dict.fromkeys(k for k in (ref_key, *file_keys) if k))
    if not keys:
        identity = "id:" + pack_id  # no URL at all: only the id can tell two such entries apart
    author = sys.intern(_text(entry, "author", issues, idx, title))  # one object per author, not per pack
    description = _text(entry, "description", issues, idx, title)
    fields = {
        "title": title,
        "author": author,
        "reference": reference,
        "files": tuple(reference if f is ref else _own(f.url) for f in files),
        "install_type": install_type,
        "description": description,
        "pip": _text_list(entry, "pip", issues, idx, title) if "pip" in entry else (),
        "tags": _text_list(entry, "tags", issues, idx, title) if "tags" in entry else (),
        "nodename_pattern": pattern_text,
        "preemptions": _text_list(entry, "preemptions", issues, idx, title) if "preemptions" in entry else (),
    }
    return PackDraft(
        fields=MappingProxyType(fields),
        pack_id=pack_id,
        entry_index=idx,
        explicit_id=explicit,
        identity=identity,
        url_keys=keys,
        owner=owner,
        pattern=pattern,
        issues=tuple(issues.items[first_issue:]),
    )


def _check_one(raw: str, what: str, issues: _Issues, idx: int, title: str) -> UrlInfo | None:
    """The repaired URL, or None when it is unusable (reported either way)."""
    if not raw:
        return None
    checked = url_info(raw)
    if checked.problem == "url_repaired":
        issues.add(idx, "url_repaired", f"{what} {raw!r} read as {checked.url!r}", title)
    elif checked.problem == "suspicious_url":
        issues.add(idx, "suspicious_url", f"{what} {raw!r} has an unusual host; kept as written", title)
    elif checked.problem == "invalid_url":
        issues.add(idx, "invalid_url", f"{what} {raw!r} is not an http(s) URL; ignored", title)
        return None
    return checked


# --- model-list.json -------------------------------------------------------------------
def parse_model_list(data: bytes) -> ParsedFile:
    """``{"models": [...]}`` -> ModelEntry items; unsafe save_path/filename entries are dropped."""
    entries, bad = _load_json(FILE_MODELS, data, "models")
    if bad is not None:
        return ParsedFile(FILE_MODELS, file_problem=bad, issues=(bad,))
    issues = _Issues(FILE_MODELS)
    models: list[ModelEntry] = []
    for idx, entry in enumerate(entries):
        if not isinstance(entry, dict):
            issues.add(idx, "not_an_object", f"entry is {type(entry).__name__}; dropped")
            continue
        name = _text(entry, "name", issues, idx, "")
        filename = _text(entry, "filename", issues, idx, name)
        url_raw = _text(entry, "url", issues, idx, name)
        if not filename or not url_raw:
            issues.add(idx, "missing_field", "'filename' and 'url' are required; dropped", name)
            continue
        save_path = _text(entry, "save_path", issues, idx, name) or "default"
        if _unsafe_rel(save_path) or _unsafe_name(filename):
            issues.add(
                idx,
                "unsafe_path",
                f"save_path {save_path!r} / filename {filename!r} leaves the models folder; dropped",
                name,
            )
            continue
        url = url_raw
        if not _HF_REPO_RE.match(url_raw):  # 'owner/repo' is a Hugging Face repository id: kept
            checked = url_info(url_raw)
            url = checked.url if checked.usable else url_raw
            if checked.problem:
                what = {
                    "url_repaired": f"read as {url!r}",
                    "suspicious_url": "has an unusual host; kept",
                    "invalid_url": "is not an http(s) URL; kept, not downloadable",
                }[checked.problem]
                issues.add(idx, checked.problem, f"url {url_raw!r} {what}", name)
        models.append(
            ModelEntry(
                name=name or filename,
                type=_text(entry, "type", issues, idx, name),
                filename=filename,
                url=url,
                base=_text(entry, "base", issues, idx, name),
                save_path=save_path,
                size=_text(entry, "size", issues, idx, name),
                description=_text(entry, "description", issues, idx, name),
                reference=_text(entry, "reference", issues, idx, name),
                sha256=_model_sha256(entry, issues, idx, name),
            )
        )
    return ParsedFile(FILE_MODELS, tuple(models), tuple(issues.items), entry_count=len(entries))


def _model_sha256(entry: dict[str, Any], issues: _Issues, idx: int, title: str) -> str:
    """The entry's ``sha256`` (``sha256:`` prefix and case tolerated); anything else is an issue, ignored."""
    text = _text(entry, "sha256", issues, idx, title).lower().removeprefix("sha256:")
    if text and not re.fullmatch(r"[0-9a-f]{64}", text):
        issues.add(idx, "invalid_sha256", f"'sha256' {text[:80]!r} is not 64 hex digits; ignored", title)
        return ""
    return text


def _unsafe_rel(path: str) -> bool:
    p = path.replace("\\", "/")
    return p.startswith("/") or re.match(r"^[A-Za-z]:", p) is not None or ".." in p.split("/")


def _unsafe_name(name: str) -> bool:
    return name != "<huggingface>" and ("/" in name or "\\" in name or name in (".", ".."))


# --- extension-node-map.json -------------------------------------------------------------
def parse_node_map(data: bytes) -> ParsedFile:
    """``{url: [[class names], {meta}]}`` -> NodeMapEntry items."""
    return _streamed(FILE_NODE_MAP, data, None, _node_map_from)


def _node_map_from(pairs: Iterable[Any]) -> ParsedFile:
    issues = _Issues(FILE_NODE_MAP)
    out: list[NodeMapEntry] = []
    by_url: dict[str, NodeMapEntry] = {}
    count = 0
    for url, value in pairs:
        count += 1
        if isinstance(value, list) and value and isinstance(value[0], list):
            raw_names, meta = value[0], value[1] if len(value) > 1 and isinstance(value[1], dict) else {}
        else:
            issues.add(url, "wrong_type", "expected [[class names], {meta}]; skipped")
            continue
        names = tuple(n for n in dict.fromkeys(x for x in raw_names if type(x) is str) if n and "\n" not in n)
        if len(names) != len(raw_names):
            issues.add(url, "wrong_type", "non-text, empty, multi-line or repeated class names skipped")
        title_aux = meta.get("title_aux")
        title = _own(title_aux) if isinstance(title_aux, str) else ""
        pattern = None
        ptext = meta.get("nodename_pattern")
        if isinstance(ptext, str) and ptext:
            pattern, why = compile_pattern(ptext)
            if pattern is None:
                issues.add(url, "bad_regex", f"nodename_pattern {ptext!r}: {why}; ignored", title)
        pre = meta.get("preemptions")
        preemptions = tuple(_own(p) for p in pre if isinstance(p, str)) if isinstance(pre, list) else ()
        entry = NodeMapEntry(_own(url), normalize_url(url), "\n".join(names), title, pattern, preemptions)
        out.append(entry)
        by_url.setdefault(entry.url_key, entry)
    return ParsedFile(
        FILE_NODE_MAP,
        tuple(out),
        tuple(issues.items),
        entry_count=count,
        by_url=MappingProxyType(by_url),
    )


# --- alter-list.json ---------------------------------------------------------------------
def parse_alter_list(data: bytes) -> ParsedFile:
    """``{"items": [{id, tags, description}]}`` -> AlterItem items (``id`` is a repository URL)."""
    entries, bad = _load_json(FILE_ALTER, data, "items")
    if bad is not None:
        return ParsedFile(FILE_ALTER, file_problem=bad, issues=(bad,))
    issues = _Issues(FILE_ALTER)
    out: list[AlterItem] = []
    for idx, entry in enumerate(entries):
        if not isinstance(entry, dict):
            issues.add(idx, "not_an_object", f"item is {type(entry).__name__}; dropped")
            continue
        url = _text(entry, "id", issues, idx, "")
        if not url:
            issues.add(idx, "missing_field", "'id' missing; dropped")
            continue
        out.append(
            AlterItem(
                url,
                normalize_url(url),
                _text_list(entry, "tags", issues, idx, url),
                _text(entry, "description", issues, idx, url),
            )
        )
    return ParsedFile(FILE_ALTER, tuple(out), tuple(issues.items), entry_count=len(entries))


# --- github-stats.json -------------------------------------------------------------------
def parse_github_stats(data: bytes) -> ParsedFile:
    """``{repo url: {stars, last_update, author_account_age_days}}`` -> stats keyed by normalised URL."""
    return _streamed(FILE_STATS, data, None, _stats_from)


def _stats_from(pairs: Iterable[Any]) -> ParsedFile:
    issues = _Issues(FILE_STATS)
    stats: dict[str, PackStats] = {}
    count = 0
    for url, value in pairs:
        count += 1
        if not isinstance(value, dict):
            issues.add(url, "wrong_type", f"value is {type(value).__name__}, expected an object; skipped")
            continue
        checked = url_info(url)
        if checked.problem == "url_repaired":
            issues.add(url, "url_repaired", f"key {url!r} read as {checked.url!r}")
        key = checked.key
        if key in stats and checked.problem:
            continue  # a typo'd duplicate of a key already read: the clean key wins
        stars, age = value.get("stars"), value.get("author_account_age_days")
        last = value.get("last_update")
        stats[key] = PackStats(
            stars=stars if isinstance(stars, int) and not isinstance(stars, bool) else None,
            last_update=_own(last) if isinstance(last, str) else "",
            author_account_age_days=age if isinstance(age, int) and not isinstance(age, bool) else None,
        )
    return ParsedFile(FILE_STATS, issues=tuple(issues.items), entry_count=count, stats=MappingProxyType(stats))


PARSERS: Mapping[str, Callable[[bytes], ParsedFile]] = MappingProxyType(
    {
        FILE_NODES: parse_custom_node_list,
        FILE_MODELS: parse_model_list,
        FILE_NODE_MAP: parse_node_map,
        FILE_ALTER: parse_alter_list,
        FILE_STATS: parse_github_stats,
    }
)
