"""Read a pack's requirements.txt into checked records; never hand the file itself to pip.

Each line becomes a ``ReqLine`` (a name with specifiers/markers, a direct URL, or a local
file inside the pack) or a ``SourceOption`` (``--index-url``, ``--extra-index-url``,
``--find-links``, ``--trusted-host``, admitted only for allowed sources). Anything else that
starts with ``-`` is either a harmless option we ignore (noted) or refused: a pack must not
smuggle global pip options into our command line. Every error names the pack, the file, the
line number and the line.
"""

from __future__ import annotations

import re
import shlex
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from ..errors import PathEscape
from ..layout import ensure_inside
from .errors import DepsRequirementInvalid, DepsSourceNotAllowed

MAX_INCLUDE_DEPTH = 8
SOURCE_OPTIONS = {
    "-i": "index-url",
    "--index-url": "index-url",
    "--extra-index-url": "extra-index-url",
    "-f": "find-links",
    "--find-links": "find-links",
    "--trusted-host": "trusted-host",
}
# Global options that only tune how pip picks files; we do not forward them (noted, not fatal).
IGNORED_OPTIONS = {
    "--pre",
    "--prefer-binary",
    "--only-binary",
    "--no-binary",
    "--use-feature",
    "--no-cache-dir",
    "--progress-bar",
}
_TAKES_VALUE = {
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-e",
    "--editable",
    *SOURCE_OPTIONS,
    "--only-binary",
    "--no-binary",
    "--use-feature",
    "--progress-bar",
}
_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
_TRAILING_OPT_RE = re.compile(r"\s(--?[A-Za-z][\w-]*)")
_URL_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*\+)?[a-z][a-z0-9+.-]*://", re.I)
_ARCHIVES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")


@dataclass(frozen=True)
class Origin:
    """Where a line came from, for messages: pack, file (relative to the pack), line number, text."""

    pack: str
    file: str
    line_no: int
    line: str

    def where(self) -> str:
        return f"{self.pack}: {self.file} line {self.line_no}"


@dataclass(frozen=True)
class ReqLine:
    """One requirement. ``text`` is what an installer receives (an absolute path for local files)."""

    origin: Origin
    kind: str  # "name" | "url" | "path"
    name: str | None  # canonical project name (None: a URL/path we cannot name)
    text: str
    requirement: Requirement | None = None
    url: str | None = None


@dataclass(frozen=True)
class SourceOption:
    origin: Origin
    option: str  # index-url | extra-index-url | find-links | trusted-host
    value: str  # a URL, a host, or an absolute local path (find-links)


@dataclass(frozen=True)
class SourceRules:
    """Which package sources a pack's requirements may name (from ``allowed_pip_sources``)."""

    allowed_prefixes: tuple[str, ...] = ()
    allow_external: bool = False

    def url_allowed(self, url: str) -> bool:
        if self.allow_external:
            return True
        bare = re.sub(r"^[a-z]+\+", "", url.strip(), flags=re.I)  # git+https:// -> https://
        return any(under_prefix(bare, p) for p in self.allowed_prefixes)

    def host_allowed(self, host: str) -> bool:
        if self.allow_external:
            return True
        hosts = set()
        for prefix in self.allowed_prefixes:
            parts = urllib.parse.urlsplit(prefix)
            if parts.hostname:
                hosts.add(parts.hostname.lower())
                hosts.add(parts.netloc.lower().rsplit("@", 1)[-1])
        return host.strip().lower() in hosts


@dataclass(frozen=True)
class ParsedRequirements:
    pack: str
    requirements: tuple[ReqLine, ...]
    sources: tuple[SourceOption, ...]
    notes: tuple[str, ...]


def under_prefix(url: str, prefix: str) -> bool:
    """``url`` equals ``prefix`` or continues it at a path boundary (case-insensitive host)."""
    if not prefix:
        return False
    u, p = _lower_host(url), _lower_host(prefix)
    if not u.startswith(p):
        return False
    return len(u) == len(p) or p.endswith(("/", "?", "#", "=")) or u[len(p)] in "/?#"


def _lower_host(url: str) -> str:
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    netloc, sep, path = rest.partition("/")
    return f"{scheme.lower()}://{netloc.lower()}{sep}{path}"


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, joined text) with ``\\`` continuations joined and comments removed."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not buf:
            start = number
        if raw.endswith("\\") and not _COMMENT_RE.search(raw[:-1]):
            buf.append(raw[:-1])
            continue
        buf.append(raw)
        line = _COMMENT_RE.sub("", " ".join(part.strip() for part in buf)).strip()
        buf = []
        if line:
            out.append((start, line))
    if buf:
        line = _COMMENT_RE.sub("", " ".join(part.strip() for part in buf)).strip()
        if line:
            out.append((start, line))
    return out


def name_from_filename(filename: str) -> tuple[str | None, str | None]:
    """(canonical name, version) of a wheel or sdist file name, (None, None) if not one."""
    base = filename.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]
    try:
        if base.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(base)
            return str(name), str(version)
        if base.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(base)
            return str(name), str(version)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None, None
    return None, None


Rewrite = Callable[[str], "str | None"]


class _Reader:
    def __init__(self, pack: str, pack_dir: Path, rules: SourceRules, rewrite: Rewrite | None = None):
        self.rewrite = rewrite
        self.pack = pack
        self.pack_dir = pack_dir
        self.rules = rules
        self.reqs: list[ReqLine] = []
        self.sources: list[SourceOption] = []
        self.notes: list[str] = []
        self.seen: set[Path] = set()

    # -- errors ---------------------------------------------------------------------------
    def bad(self, origin: Origin, why: str, hint: str) -> DepsRequirementInvalid:
        return DepsRequirementInvalid(
            f"{origin.where()}: {why}: {origin.line!r}",
            hint=hint,
            details={"pack": origin.pack, "file": origin.file, "line_no": origin.line_no, "line": origin.line},
        )

    def refused(self, origin: Origin, why: str) -> DepsSourceNotAllowed:
        return DepsSourceNotAllowed(
            f"{origin.where()}: {why}: {origin.line!r}",
            details={
                "pack": origin.pack,
                "file": origin.file,
                "line_no": origin.line_no,
                "line": origin.line,
                "allowed_pip_sources": list(self.rules.allowed_prefixes),
            },
        )

    # -- reading --------------------------------------------------------------------------
    def read_file(self, path: Path, depth: int, via: Origin | None) -> None:
        try:
            real = ensure_inside(path, self.pack_dir)
        except PathEscape:
            if via is None:
                raise
            raise self.bad(
                via,
                "an included file lies outside the pack folder",
                "Requirements files may only include files inside the pack.",
            ) from None
        if real in self.seen:
            return  # a cycle or a repeated include: read once
        if depth > MAX_INCLUDE_DEPTH:
            raise self.bad(
                via or Origin(self.pack, str(path), 0, ""),
                f"includes nest deeper than {MAX_INCLUDE_DEPTH} files",
                "Flatten the includes.",
            )
        self.seen.add(real)
        try:
            text = real.read_bytes().decode("utf-8-sig", errors="replace")
        except OSError as exc:
            if via is None:
                raise
            raise self.bad(
                via,
                f"cannot read the included file ({exc.strerror})",
                "Fix the -r path; it is resolved relative to the including file.",
            ) from None
        rel = real.relative_to(Path(self.pack_dir).resolve()).as_posix()
        for line_no, line in logical_lines(text):
            self.read_line(Origin(self.pack, rel, line_no, line), real.parent, depth)

    def read_line(self, origin: Origin, base: Path, depth: int) -> None:
        line = origin.line
        if line.startswith("-"):
            self.read_option(origin, base, depth)
            return
        match = _TRAILING_OPT_RE.search(line)
        if match:
            opts = line[match.start() :].split()
            unknown = [o for o in opts if o.startswith("-") and not o.startswith("--hash")]
            if unknown:
                raise self.bad(
                    origin,
                    f"per-requirement option {unknown[0].split('=')[0]} is not allowed",
                    "Only --hash may follow a requirement; build or install options are refused.",
                )
            self.notes.append(f"{origin.where()}: --hash ignored (hashes are checked by the index/wheelhouse)")
            line = line[: match.start()].strip()
        replacement = self.rewrite(line) if self.rewrite else None
        if replacement:  # an exact-text override may fix a line packaging cannot even parse
            line = replacement
        self.reqs.append(self.requirement(origin, line, base))

    def read_option(self, origin: Origin, base: Path, depth: int) -> None:
        try:
            tokens = shlex.split(origin.line)
        except ValueError:
            raise self.bad(origin, "unbalanced quotes", "Fix the quoting of this line.") from None
        opt, value = tokens[0], None
        if "=" in opt and opt.startswith("--"):
            opt, value = opt.split("=", 1)
        elif len(opt) > 2 and not opt.startswith("--") and opt[:2] in ("-r", "-c", "-e", "-i", "-f"):
            opt, value = opt[:2], opt[2:]
        rest = tokens[1:]
        known = opt in _TAKES_VALUE or opt in IGNORED_OPTIONS
        if not known:
            raise self.bad(
                origin,
                f"option {opt} is not allowed in a pack's requirements",
                "Only requirements, -r, and allowed --index-url/--extra-index-url/--find-links/"
                "--trusted-host lines are accepted.",
            )
        if value is None and opt in _TAKES_VALUE and rest:
            value, rest = rest[0], rest[1:]
        if rest:
            raise self.bad(
                origin,
                "more than one option or value on one line",
                "Put one option per line; extra pip options are not forwarded.",
            )
        if opt in ("-r", "--requirement"):
            if not value:
                raise self.bad(origin, "-r needs a file name", "Write `-r other-requirements.txt`.")
            self.read_file(base / value, depth + 1, origin)
        elif opt in SOURCE_OPTIONS:
            self.source(origin, SOURCE_OPTIONS[opt], value or "", base)
        elif opt in ("-e", "--editable"):
            raise self.bad(
                origin,
                "editable installs (-e) are not supported",
                "List the package by name (or as a wheel in the pack); editable installs run "
                "arbitrary build code from the pack folder.",
            )
        elif opt in ("-c", "--constraint"):
            raise self.bad(
                origin,
                "constraints files (-c) are not supported",
                "Pin versions in requirements.txt, or use pip_overrides.json for site-wide pins.",
            )
        else:
            self.notes.append(f"{origin.where()}: option {opt} ignored (not forwarded to the installer)")

    def source(self, origin: Origin, option: str, value: str, base: Path) -> None:
        if not value:
            raise self.bad(origin, f"--{option} needs a value", "Give the URL or host after the option.")
        if option == "trusted-host":
            if not self.rules.host_allowed(value):
                raise self.refused(origin, f"trusted host {value!r} is not an allowed pip source")
        elif _URL_RE.match(value) and not value.lower().startswith("file:"):
            if not self.rules.url_allowed(value):
                raise self.refused(origin, f"package source {value!r} is not in allowed_pip_sources")
        elif option == "find-links":
            is_url = value.lower().startswith("file:")
            local_path = Path(urllib.parse.unquote(urllib.parse.urlsplit(value).path)) if is_url else base / value
            try:
                value = str(ensure_inside(local_path, self.pack_dir))
            except PathEscape:
                raise self.refused(origin, "a local --find-links folder outside the pack") from None
        else:
            raise self.bad(origin, f"--{option} needs an http(s) URL", "Use the full index URL.")
        self.sources.append(SourceOption(origin, option, value))

    def requirement(self, origin: Origin, text: str, base: Path) -> ReqLine:
        if _URL_RE.match(text) and not text.lower().startswith("file:"):
            return self.url_requirement(origin, text, None)
        if text.lower().startswith("file:") or text.startswith((".", "/", "~")):
            return self.path_requirement(origin, text, base)
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            if "/" in text and text.lower().endswith(_ARCHIVES):  # wheels/x-1.0-py3-none-any.whl
                return self.path_requirement(origin, text, base)
            raise self.bad(
                origin,
                f"not a valid requirement ({str(exc).splitlines()[0]})",
                'Write `name`, `name>=1.0`, `name[extra]==2; python_version >= "3.10"` or `name @ https://...`.',
            ) from None
        if req.url:
            return self.url_requirement(origin, req.url, req)
        return ReqLine(origin, "name", str(canonicalize_name(req.name)), str(req), req)

    def url_requirement(self, origin: Origin, url: str, req: Requirement | None) -> ReqLine:
        if not self.rules.url_allowed(url):
            raise self.refused(origin, "a direct URL requirement to a source outside allowed_pip_sources")
        name = str(canonicalize_name(req.name)) if req else None
        if name is None:
            egg = re.search(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)", url)
            name = str(canonicalize_name(egg.group(1))) if egg else name_from_filename(url)[0]
        text = str(req) if req else (f"{name} @ {url}" if name else url)
        return ReqLine(origin, "url", name, text, req or (Requirement(text) if name else None), url)

    def path_requirement(self, origin: Origin, text: str, base: Path) -> ReqLine:
        raw = urllib.parse.unquote(urllib.parse.urlsplit(text).path) if text.lower().startswith("file:") else text
        target = Path(raw).expanduser()
        target = target if target.is_absolute() else base / target
        try:
            real = ensure_inside(target, self.pack_dir)
        except PathEscape:
            raise self.refused(origin, "a local file requirement outside the pack folder") from None
        if not real.exists():
            raise self.bad(origin, "the local file does not exist", "Fix the path (relative to the requirements file).")
        name, _ = name_from_filename(real.name)
        return ReqLine(origin, "path", name, str(real), None, None)


def parse_requirements_file(
    path: Path, *, pack: str, pack_dir: Path, rules: SourceRules = SourceRules(), rewrite: Rewrite | None = None
) -> ParsedRequirements:
    """Parse ``path`` (and the files it includes with ``-r``, inside ``pack_dir`` only).

    ``rewrite(text)`` may replace a requirement's text before it is parsed (pip_overrides.json
    keys written as exact requirement strings). Raises ``DepsRequirementInvalid`` or
    ``DepsSourceNotAllowed`` naming the first bad line.
    """
    reader = _Reader(pack, Path(pack_dir), rules, rewrite)
    reader.read_file(Path(path), 0, None)
    return ParsedRequirements(pack, tuple(reader.reqs), tuple(reader.sources), tuple(reader.notes))


def parse_requirement_lines(
    lines: Sequence[str],
    *,
    pack: str,
    base_dir: Path,
    rules: SourceRules = SourceRules(),
    file: str = "<input>",
    rewrite: Rewrite | None = None,
) -> ParsedRequirements:
    """Parse requirement strings given directly (a command line, a snapshot's pip list)."""
    reader = _Reader(pack, Path(base_dir), rules, rewrite)
    for number, line in enumerate(lines, start=1):
        text = _COMMENT_RE.sub("", line).strip()
        if text:
            reader.read_line(Origin(pack, file, number, text), Path(base_dir), 0)
    return ParsedRequirements(pack, tuple(reader.reqs), tuple(reader.sources), tuple(reader.notes))
