"""pip_blacklist.list (never install) and downgrade protection (never move these backwards).

The same functions serve the server and the CLI, so both honour the user's lists (the classic
CLI silently ignored the configured downgrade list).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import DepsListInvalid

# The GPU stack: a pack's requirements.txt must never move these to an older release. Matches
# the built-in set named in docs/config.md for `downgrade_blacklist`.
BUILTIN_DOWNGRADE_PROTECTED = ("torch", "torchvision", "torchaudio", "transformers", "safetensors", "kornia")
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


def load_blacklist(path: Path) -> frozenset[str]:
    """Canonical names from pip_blacklist.list: one name per line, ``#`` comments, blanks ignored.

    A missing file is an empty list; a line that is not a bare package name is an error naming
    the line (a version spec here would be silently too broad or too narrow).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return frozenset()
    except OSError as exc:
        raise DepsListInvalid(
            f"{path} cannot be read ({exc.strerror})",
            hint=f"Fix the permissions of {path}.",
            details={"file": str(path)},
        ) from None
    names: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not _NAME_RE.match(line):
            raise DepsListInvalid(
                f"{path} line {number}: {line!r} is not a package name",
                hint=f"Write one package name per line in {path} (no versions or options).",
                details={"file": str(path), "line_no": number, "line": raw},
            )
        names.add(str(canonicalize_name(line)))
    return frozenset(names)


def downgrade_protected(extra: Iterable[str] | str = ()) -> frozenset[str]:
    """The built-in protected set plus ``downgrade_blacklist`` (a list or the classic comma string)."""
    items = extra.split(",") if isinstance(extra, str) else list(extra)
    names = {str(canonicalize_name(n)) for n in BUILTIN_DOWNGRADE_PROTECTED}
    names.update(str(canonicalize_name(n.strip())) for n in items if n and n.strip())
    return frozenset(names)


def clause_version(spec: Specifier) -> Version | None:
    text = spec.version[:-2] if spec.version.endswith(".*") else spec.version
    try:
        return Version(text)
    except InvalidVersion:
        return None


def would_downgrade(specifier: SpecifierSet | str, installed: str) -> bool:
    """True when every version ``specifier`` admits is older than ``installed``.

    It is enough that one clause rejects ``installed`` from above (``==1.0``, ``<2``, ``<=1.5``,
    ``~=1.2``, ``==1.*`` when 2.0 is installed); a clause rejecting it from below (``>=3``) means
    an upgrade, and an installed version that satisfies the set means no change at all.
    """
    try:
        spec = SpecifierSet(str(specifier))
        current = Version(installed)
    except (InvalidSpecifier, InvalidVersion):
        return False
    if spec.contains(current, prereleases=True):
        return False
    for clause in spec:
        if clause.operator in (">", ">=", "!="):
            continue
        if clause.contains(current, prereleases=True):
            continue
        bound = clause_version(clause)
        if bound is not None and (bound <= current if clause.operator == "<" else bound < current):
            return True
    return False
