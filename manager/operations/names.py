"""Folder names of node packs: validation, names from URLs, and the classic ``.disabled`` naming.

Every name that becomes a path under ``custom_nodes/`` passes ``validate_pack_name`` first, so
a hostile id, URL or pyproject name can never point outside the tree or at one of our hidden
working folders.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from typing import Any

from ..errors import InvalidName
from ..inventory import InstalledPack, parse_disabled_name
from ..layout import DISABLED_DIRNAME, MANAGER_DIRNAME, STAGING_DIRNAME, TRASH_DIRNAME, is_reserved_device_name

__all__ = ["validate_pack_name", "name_from_url", "disabled_name", "enabled_name", "version_token"]

_RESERVED = {
    DISABLED_DIRNAME,
    STAGING_DIRNAME,
    TRASH_DIRNAME,
    MANAGER_DIRNAME,
    "__pycache__",
    ".git",
    "custom_nodes",
    "models",
    "user",
    "web",
    "input",
    "output",
}
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+\-]{0,63}$")
MAX_NAME = 200


def _bad(name: Any, reason: str, what: str) -> InvalidName:
    shown = name if isinstance(name, str) else repr(name)
    return InvalidName(
        f"refused {what} {shown!r}: {reason}",
        hint="A pack folder name is one plain path component: letters, digits, spaces, '-', '_', "
        "'.'; not starting with '.', no '/', '\\', '..', '@', ':' and not a reserved name. "
        "Pass another name with the `name` parameter.",
        details={"name": shown, "reason": reason},
    )


def validate_pack_name(name: Any, *, what: str = "pack folder name") -> str:
    """Return ``name`` when it is safe as one entry of ``custom_nodes/``; raise ``InvalidName``.

    Refused: empty, separators, ``..``, a leading ``.`` (hidden, and our working folders),
    ``@`` (reserved by the disabled naming), ``:``, control/format characters, names NFKC
    normalisation would change (fullwidth ``／``), a ``.disabled``
    suffix (ComfyUI would skip it), reserved and Windows device names, surrounding spaces.
    """
    if not isinstance(name, str) or not name:
        raise _bad(name, "empty", what)
    if name != name.strip():
        raise _bad(name, "leading or trailing spaces", what)
    if len(name) > MAX_NAME:
        raise _bad(name, f"longer than {MAX_NAME} characters", what)
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for c in name):
        raise _bad(name, "control, format or invisible characters (bidi overrides, zero-width spaces)", what)
    if unicodedata.normalize("NFKC", name) != name:
        # fullwidth '／' or '．．' become '/' and '..' once normalised by some tools
        raise _bad(name, "characters that change under Unicode normalisation (NFKC)", what)
    if "/" in name or "\\" in name:
        raise _bad(name, "path separators", what)
    if ".." in name:
        raise _bad(name, "'..' (path traversal)", what)
    if name.startswith("."):
        raise _bad(name, "starts with '.' (hidden and reserved for the Manager's folders)", what)
    if "@" in name or ":" in name:
        raise _bad(name, "contains '@' or ':' (reserved by the disabled naming / Windows streams)", what)
    low = name.lower()
    if low.endswith(".disabled"):
        raise _bad(name, "ends with '.disabled' (ComfyUI would skip it)", what)
    if low in _RESERVED or is_reserved_device_name(name):
        raise _bad(name, "reserved name", what)
    if name.endswith("."):
        raise _bad(name, "ends with '.'", what)
    return name


def name_from_url(url: str) -> str:
    """The folder ``git clone`` would create: last path segment, ``.git`` dropped, %-decoded."""
    text = url.strip()
    if "://" in text:
        path = urllib.parse.urlsplit(text).path
    elif re.match(r"^(?:[^@/\s]+@)?[A-Za-z0-9.-]{2,}:(?!//)", text):  # scp-like git@host:owner/repo
        path = text.split(":", 1)[1]
    else:
        path = text
    segs = [s for s in path.replace("\\", "/").split("/") if s]
    last = urllib.parse.unquote(segs[-1]) if segs else ""
    for suffix in (".git",):
        if last.lower().endswith(suffix):
            last = last[: -len(suffix)]
    return validate_pack_name(last, what="folder name taken from the URL")


def version_token(version: str) -> str:
    """``1.2.3`` -> ``1_2_3`` (the classic disabled naming); refuses anything path-like."""
    if version == "nightly":
        return version
    if not _VERSION_RE.match(version or ""):
        raise InvalidName(
            f"refused version {version!r} in a disabled folder name",
            hint="Versions are letters, digits, '.', '+', '-'.",
            details={"version": version},
        )
    return version.replace(".", "_")


def _safe_id(text: str) -> str:
    try:
        return validate_pack_name(text, what="pack id")
    except InvalidName:
        return ""


def disabled_name(pack: InstalledPack) -> str:
    """Name of ``pack`` inside ``custom_nodes/.disabled/``.

    Registry packs: ``<id>@<version with _>``; git packs with a registry identity
    (``[project] name``): ``<id>@nightly``; anything else keeps its folder name.
    """
    cnr_id = _safe_id(pack.cnr_id) if pack.cnr_id else ""
    if pack.kind == "cnr" and cnr_id and pack.version:
        try:
            return f"{cnr_id}@{version_token(pack.version)}"
        except InvalidName:
            return pack.name
    if pack.kind == "git" and cnr_id:
        return f"{cnr_id}@nightly"
    return pack.name


def enabled_name(disabled_entry: str, origins: dict[str, str] | None = None) -> str:
    """The ``custom_nodes/`` name a disabled entry goes back to: the recorded origin, else the id."""
    recorded = (origins or {}).get(disabled_entry, "")
    if recorded:
        try:
            return validate_pack_name(recorded)
        except InvalidName:
            pass
    base, _version, _suffix = parse_disabled_name(disabled_entry)
    return validate_pack_name(base)
