"""Path safety for model files: a channel's ``save_path`` and ``filename`` never leave the models tree.

Both values come from channel data (or an API request) and are untrusted. They are checked
*lexically*, before anything touches the disk: NFC-normalised, then refused when they hold
``..``, an absolute or drive-qualified part, control/bidi/invisible characters, a
Windows-reserved device name, a trailing dot or space, a character Windows cannot store, or
a name our own temp files use. The final path is then checked to sit under the folder it
was joined to. Symlinks the *user* made inside the models tree (model folders on another
disk are common) are not second-guessed: the channel cannot create them.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path, PurePosixPath

from ..errors import ModelPathInvalid, PathEscape
from ..layout import is_reserved_device_name

DEFAULT_SAVE_PATH = "default"
MAX_COMPONENT_BYTES = 255
MAX_PATH_CHARS = 1024
# Suffixes of our own working files next to a model (see fetch.download): a model must not
# be named like one, or it would be overwritten by (or mistaken for) a partial download.
TEMP_SUFFIXES = (".part", ".part.json", ".lock", ".tmp")

_WINDOWS_FORBIDDEN = set('<>:"|?*')
_DRIVE = re.compile(r"^[A-Za-z]:")
# Categories refused anywhere in a name: controls, format chars (bidi overrides, zero-width,
# BOM), surrogates, private use, unassigned.
_REFUSED_CATEGORIES = {
    "Cc": "control_char",
    "Cf": "invisible_char",
    "Cs": "invalid_char",
    "Co": "invalid_char",
    "Cn": "invalid_char",
}
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _invalid(field: str, value: str, reason: str, why: str) -> ModelPathInvalid:
    return ModelPathInvalid(
        f"model {field} {value!r} is refused: {why}", details={"field": field, "value": value, "reason": reason}
    )


def _escape(field: str, value: str, why: str) -> PathEscape:
    return PathEscape(
        f"model {field} {value!r} would leave the model folder: {why}",
        hint="save_path must be a relative folder inside the models tree and filename a "
        "plain file name; fix the entry in model-list.json.",
        details={"field": field, "value": value, "reason": "escape"},
    )


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise _invalid(field, repr(value), "not_text", "it is not text")
    if "\x00" in value:
        raise _invalid(field, value, "nul_char", "it contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(
            field, value.encode("utf-8", "backslashreplace").decode(), "invalid_char", "it contains a lone surrogate"
        ) from None
    return unicodedata.normalize("NFC", value)


def check_component(part: str, *, field: str, original: str) -> str:
    """Validate one path component (already NFC); return it unchanged or raise a coded error."""
    if part in ("", "."):
        raise _invalid(field, original, "empty", "it has an empty part")
    if part == "..":
        raise _escape(field, original, "'..' climbs out of the folder")
    for ch in part:
        if ch in _BIDI:
            raise _invalid(field, original, "bidi_control", f"it contains the bidi control U+{ord(ch):04X}")
        reason = _REFUSED_CATEGORIES.get(unicodedata.category(ch))
        if reason:
            raise _invalid(field, original, reason, f"it contains the character U+{ord(ch):04X}")
        if ch in _WINDOWS_FORBIDDEN:
            raise _invalid(field, original, "forbidden_char", f"{ch!r} cannot appear in a file name on Windows")
    # Compatibility forms that read as separators or dots (fullwidth '／', '．．') are how
    # "best fit" code pages turn a harmless-looking name into a traversal.
    folded = unicodedata.normalize("NFKC", part)
    if folded != part and (folded in (".", "..") or any(c in folded for c in "/\\:")):
        raise _escape(field, original, f"{part!r} reads as {folded!r}")
    if part[-1] in ". ":
        raise _invalid(
            field,
            original,
            "trailing_dot_space",
            "a part ends with a dot or a space (Windows drops it and the name changes)",
        )
    if is_reserved_device_name(part):
        raise _invalid(field, original, "reserved_name", f"{part!r} is a reserved device name on Windows")
    if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
        raise _invalid(field, original, "too_long", f"a part is longer than {MAX_COMPONENT_BYTES} bytes")
    return part


def safe_save_path(save_path: object) -> tuple[str, ...]:
    """The folder parts of ``save_path`` ("" or "default" -> ``()``), or a coded error.

    Backslashes count as separators (a Windows-made channel); empty and ``.`` parts are
    dropped (``loras//x/`` is ``loras/x``).
    """
    text = _text(save_path, "save_path")
    if text.strip() in ("", DEFAULT_SAVE_PATH):
        return ()
    if len(text) > MAX_PATH_CHARS:
        raise _invalid("save_path", text[:80] + "...", "too_long", f"it is longer than {MAX_PATH_CHARS} characters")
    unified = text.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise _escape("save_path", text, "it is an absolute path")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if not parts:
        return ()
    return tuple(check_component(p, field="save_path", original=text) for p in parts)


def safe_filename(filename: object) -> str:
    """``filename`` as one safe, NFC-normalised file name, or a coded error."""
    text = _text(filename, "filename")
    if text != text.strip():
        raise _invalid("filename", text, "trailing_dot_space", "it starts or ends with white space")
    if "/" in text or "\\" in text:
        if ".." in text.replace("\\", "/").split("/") or text.startswith(("/", "\\")):
            raise _escape("filename", text, "it is a path, not a file name")
        raise _invalid("filename", text, "not_a_name", "it contains a path separator")
    if _DRIVE.match(text):
        raise _escape("filename", text, "it names a drive")
    check_component(text, field="filename", original=text)
    if text.startswith("."):
        raise _invalid("filename", text, "hidden_name", "hidden names are reserved for the Manager's own files")
    if text.lower().endswith(TEMP_SUFFIXES):
        raise _invalid("filename", text, "temp_name", "the name ends like a partial download")
    return text


def join_inside(base: Path, parts: tuple[str, ...], filename: str | None = None) -> Path:
    """``base/parts.../filename``, checked lexically to stay under ``base`` (PathEscape otherwise)."""
    rel = PurePosixPath(*parts, filename) if filename else PurePosixPath(*parts) if parts else PurePosixPath(".")
    target = Path(os.path.normpath(os.path.join(os.path.abspath(base), *rel.parts)))
    root = Path(os.path.normpath(os.path.abspath(base)))
    if target != root and root not in target.parents:
        raise PathEscape(f"{rel} would land outside {root}", details={"path": str(target), "base": str(root)})
    return target


def rel_posix(parts: tuple[str, ...], filename: str) -> str:
    """The portable relative name (``SDXL/model.safetensors``) used in ids, stores and snapshots."""
    return "/".join((*parts, filename))
