"""The line-preserving config.ini reader: every line classified, every value with its line number.

Read like the classic manager reads it (``configparser`` rules: ``key = value`` or ``key: value``,
full-line ``#``/``;`` comments, indented continuation lines, no inline comments, keys
case-insensitive), but parsed by hand so that a save can rewrite exactly one line (config.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, ConfigUnreadable

CONFIG_ENV = "CM_CONFIG"
DOCS_HINT = "every setting is listed in docs/config.md and in the shipped config.ini"

_BOM = "\ufeff"
_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_SECTION_RE = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
_KEY_RE = re.compile(r"^(?P<key>\s*[^\s=:][^=:]*?)\s*(?P<delim>[=:])[ \t]*")


# --- the line-preserving INI reader -----------------------------------------------------
@dataclass
class _Line:
    number: int  # 1-based, as editors count
    text: str  # including its line ending
    kind: str  # blank | comment | section | key | cont
    section: str | None  # current section, lower-cased; None before the first header
    key: str = ""
    value: str = ""
    value_start: int = 0  # index in ``text`` where the value begins


@dataclass(frozen=True)
class _Entry:
    key: str
    section: str
    value: str  # continuation lines joined with "\n"
    line: int  # number of the key line
    first: int  # index of the key line in the line list
    last: int  # index of its last continuation line
    repeat: bool = False  # under a second (third...) header of its section


def _split_lines(text: str) -> list[str]:
    return _LINE_RE.findall(text)


def _parse(text: str, path: Path | None) -> tuple[list[_Line], list[_Entry]]:
    """Classify every line and collect ``key = value`` entries; ``ConfigError`` on bad syntax."""
    lines: list[_Line] = []
    entries: list[_Entry] = []
    section: str | None = None
    open_key: _Line | None = None
    key_indent = 0
    key_index = last_index = 0
    values: list[str] = []
    headers_seen: dict[str, int] = {}
    repeat = False

    def close() -> None:
        if open_key is not None and open_key.section is not None:
            entries.append(
                _Entry(
                    open_key.key, open_key.section, "\n".join(values), open_key.number, key_index, last_index, repeat
                )
            )

    for number, raw in enumerate(_split_lines(text), start=1):
        body = raw.rstrip("\r\n")
        stripped = body.strip()
        indent = len(body) - len(body.lstrip())
        if not stripped:
            lines.append(_Line(number, raw, "blank", section))
            continue
        if stripped[0] in "#;":
            lines.append(_Line(number, raw, "comment", section))
            continue
        if open_key is not None and indent > key_indent:
            # An indented line continues the value above it (configparser's rule).
            lines.append(_Line(number, raw, "cont", section, key=open_key.key, value=stripped))
            values.append(stripped)
            last_index = len(lines) - 1
            continue
        close()
        open_key = None
        header = _SECTION_RE.match(body)
        if header:
            section = header.group("name").strip().lower()
            headers_seen[section] = headers_seen.get(section, 0) + 1
            repeat = headers_seen[section] > 1
            lines.append(_Line(number, raw, "section", section))
            continue
        match = _KEY_RE.match(body)
        if not match:
            raise _syntax_error(path, number, body, "is neither 'key = value', a [section] nor a comment")
        if section is None:
            raise _syntax_error(path, number, body, "comes before the first [section] header")
        key = match.group("key").strip().lower()
        value = body[match.end() :].rstrip()
        open_key = _Line(number, raw, "key", section, key=key, value=value, value_start=match.end())
        lines.append(open_key)
        key_indent = indent
        key_index = last_index = len(lines) - 1
        values = [value] if value else []
    close()
    return lines, entries


def _syntax_error(path: Path | None, number: int, body: str, why: str) -> ConfigError:
    where = f"{path}:{number}" if path else f"line {number}"
    return ConfigError(
        f"{where}: the line {body.strip()[:80]!r} {why}",
        hint=f"Fix or delete line {number} of {path}; {DOCS_HINT}.",
        details={"path": str(path) if path else None, "line": number},
    )


def _norm_key(key: str) -> str:
    return key.strip().lower().replace("-", "_")


# --- reading the file -------------------------------------------------------------------
def _read_text(path: Path) -> tuple[str, bool] | None:
    """(text, had_bom) of the file, None when it does not exist; ``ConfigUnreadable`` otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigUnreadable(
            f"cannot read the config file {path}: {exc.strerror or exc}",
            hint=f"Check that {path} is a readable file (permissions, not a folder), "
            f"or point {CONFIG_ENV} at another file.",
            details={"path": str(path)},
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigUnreadable(
            f"the config file {path} is not UTF-8 text (bad byte at line {line})",
            hint=f"Re-save {path} as UTF-8.",
            details={"path": str(path), "line": line},
        ) from exc
    if text.startswith(_BOM):
        return text[1:], True
    return text, False
