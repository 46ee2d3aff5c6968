"""pip_overrides.json: replace what packs ask for, site-wide, before anything is installed.

Two forms per key (a key is either the exact requirement text a pack writes, or a bare
package name, which then matches any requirement on that package):

- classic: ``"opencv-python": "opencv-contrib-python-headless"`` or
  ``"numpy<1.24>=1.18": "numpy==1.26.4"``. A bare replacement name keeps the pack's
  specifiers, extras and markers (a rename); a replacement with a specifier replaces them.
- rich: ``"pkg": {"requirement": "...", "index_url": "...", "trusted_host": "...",
  "local_path": "wheels/pkg-1.0-py3-none-any.whl"}`` (all keys optional, at least one).
  ``local_path`` is resolved against the file's folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .errors import DepsListInvalid
from .requirements import ReqLine, name_from_filename

RICH_KEYS = ("requirement", "index_url", "trusted_host", "local_path")
_BARE_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Override:
    key: str
    requirement: str | None = None
    index_url: str | None = None
    trusted_host: str | None = None
    local_path: Path | None = None

    def describe(self) -> str:
        parts = []
        if self.requirement:
            parts.append(f"-> {self.requirement}")
        if self.local_path:
            parts.append(f"local wheel {self.local_path}")
        if self.index_url:
            trusted = f" (trusted host {self.trusted_host})" if self.trusted_host else ""
            parts.append(f"from {self.index_url}{trusted}")
        return f"{self.key}: " + ", ".join(parts)


@dataclass(frozen=True)
class AppliedOverride:
    """Shown in the plan: which pack line was changed into what, by which entry."""

    pack: str
    original: str
    result: str
    override: Override


@dataclass(frozen=True)
class OverrideOutcome:
    line: ReqLine
    index_url: str | None = None
    trusted_host: str | None = None
    applied: AppliedOverride | None = None


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


@dataclass(frozen=True)
class Overrides:
    """Parsed pip_overrides.json (empty when the file does not exist)."""

    by_text: Mapping[str, Override]
    by_name: Mapping[str, Override]
    source: str = ""

    @classmethod
    def empty(cls) -> Overrides:
        return cls({}, {}, "")

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "<mapping>", base_dir: Path | None = None) -> Overrides:
        """Validate ``data`` (the JSON object); ``DepsListInvalid`` names the bad key."""
        if not isinstance(data, dict):
            raise _invalid(source, 'the top level must be a JSON object {"package": ...}')
        by_text: dict[str, Override] = {}
        by_name: dict[str, Override] = {}
        for key, value in data.items():
            entry = _entry(str(key), value, source, base_dir)
            if _BARE_NAME_RE.match(key.strip()):
                by_name[str(canonicalize_name(key.strip()))] = entry
            else:
                by_text[_squash(key)] = entry
        return cls(by_text, by_name, source)

    def __len__(self) -> int:
        return len(self.by_text) + len(self.by_name)

    def local_wheels(self) -> dict[str, Path]:
        """Canonical project name -> wheel file of every ``local_path`` entry."""
        out: dict[str, Path] = {}
        for entry in [*self.by_text.values(), *self.by_name.values()]:
            if entry.local_path is not None:
                name = name_from_filename(entry.local_path.name)[0]
                if name:
                    out[name] = entry.local_path
        return out

    def rewrite_text(self, text: str) -> str | None:
        """The replacement for a requirement written exactly as an override key (before parsing)."""
        if not self.by_text:
            return None
        entry = self.by_text.get(_squash(text))
        return entry.requirement if entry is not None and entry.requirement else None

    def find(self, line: ReqLine) -> Override | None:
        exact = self.by_text.get(_squash(line.origin.line.split(" --hash", 1)[0])) if self.by_text else None
        if exact:
            return exact
        return self.by_name.get(line.name) if line.name else None

    def apply(self, line: ReqLine) -> OverrideOutcome:
        """The line with its override applied (unchanged when none matches)."""
        entry = self.find(line)
        if entry is None:
            return OverrideOutcome(line)
        new = line
        if entry.local_path is not None:
            name = name_from_filename(entry.local_path.name)[0] or line.name
            new = replace(line, kind="path", name=name, text=str(entry.local_path), requirement=None, url=None)
        elif entry.requirement:
            new = _replaced(line, entry.requirement)
        original = line.origin.line.split(" --hash", 1)[0].strip()
        applied = AppliedOverride(line.origin.pack, original, new.text, entry)
        return OverrideOutcome(new, entry.index_url, entry.trusted_host, applied)


def _replaced(line: ReqLine, replacement: str) -> ReqLine:
    repl = Requirement(replacement)
    old = line.requirement
    if old is not None and not repl.specifier and not repl.url and not repl.extras and repl.marker is None:
        # a rename: keep what the pack asked for, under the new name
        text = repl.name + (f"[{','.join(sorted(old.extras))}]" if old.extras else "") + str(old.specifier)
        if old.marker is not None:
            text += f"; {old.marker}"
        repl = Requirement(text)
    elif old is not None and old.marker is not None and repl.marker is None:
        repl = Requirement(f"{repl}; {old.marker}")
    kind = "url" if repl.url else "name"
    return replace(
        line, kind=kind, name=str(canonicalize_name(repl.name)), text=str(repl), requirement=repl, url=repl.url
    )


def _entry(key: str, value: Any, source: str, base_dir: Path | None) -> Override:
    if isinstance(value, str):
        return Override(key, requirement=_checked_req(value, key, source))
    if not isinstance(value, dict) or not value:
        raise _invalid(source, f"entry {key!r} must be a requirement string or an object with {', '.join(RICH_KEYS)}")
    unknown = sorted(set(value) - set(RICH_KEYS))
    if unknown:
        raise _invalid(
            source, f"entry {key!r} has unknown field(s) {', '.join(unknown)} (allowed: {', '.join(RICH_KEYS)})"
        )
    for field_name, field_value in value.items():
        if not isinstance(field_value, str) or not field_value.strip():
            raise _invalid(source, f"entry {key!r}: {field_name} must be a non-empty string")
    local = value.get("local_path")
    local_path = None
    if local:
        local_path = Path(local).expanduser()
        if not local_path.is_absolute() and base_dir is not None:
            local_path = base_dir / local_path
        if local_path.suffix != ".whl":
            raise _invalid(source, f"entry {key!r}: local_path must name a .whl file, got {local!r}")
    index_url = value.get("index_url")
    if index_url and not re.match(r"^(https?|file)://", index_url, re.I):
        raise _invalid(source, f"entry {key!r}: index_url must be an http(s):// or file:// URL")
    if value.get("trusted_host") and not index_url:
        raise _invalid(source, f"entry {key!r}: trusted_host only makes sense with index_url")
    req = value.get("requirement")
    return Override(
        key,
        requirement=_checked_req(req, key, source) if req else None,
        index_url=index_url,
        trusted_host=value.get("trusted_host"),
        local_path=local_path,
    )


def _checked_req(text: str, key: str, source: str) -> str:
    try:
        return str(Requirement(text))
    except InvalidRequirement:
        raise _invalid(source, f"entry {key!r}: {text!r} is not a valid requirement") from None


def _invalid(source: str, why: str) -> DepsListInvalid:
    return DepsListInvalid(
        f"{source}: {why}",
        hint=f"Fix {source} (see docs/deps.md, 'pip_overrides.json'); nothing was installed.",
        details={"file": source},
    )


def load_overrides(path: Path) -> Overrides:
    """Read pip_overrides.json; a missing file is no overrides, a broken one is an error."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return Overrides.empty()
    except OSError as exc:
        raise _invalid(str(path), f"cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise _invalid(str(path), f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return Overrides.from_mapping(data, source=str(path), base_dir=path.parent)
