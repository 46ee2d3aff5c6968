"""Saving config.ini: one key's lines rewritten in place, every other line kept byte for byte."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .config_ini import _parse, _read_text
from .config_schema import SETTINGS_BY_KEY, read_sections


def _read_under(under: str | os.PathLike[str] | None) -> tuple[Path, str] | None:
    """(path, text) of the file beneath ours; a missing one reads as empty."""
    if under is None:
        return None
    path = Path(under).expanduser().absolute()
    read = _read_text(path)
    return path, read[0] if read else ""


def _newline_of(text: str) -> str:
    match = re.search(r"\r\n|\r|\n", text)
    return match.group(0) if match else "\n"


def _apply(text: str, key: str, value_text: str, newline: str, path: Path) -> str:
    """Return ``text`` with ``key`` set to ``value_text``, every other line unchanged."""
    lines, entries = _parse(text, path)
    out = [line.text for line in lines]
    setting = SETTINGS_BY_KEY[key]
    active = [e for e in entries if e.key == key and e.section in read_sections(setting)]
    if active:
        # Rewrite from the bottom so earlier indices stay valid.
        for entry in sorted(active, key=lambda e: e.first, reverse=True):
            first = lines[entry.first]
            prefix = first.text[: first.value_start]
            if prefix.endswith(("=", ":")) and prefix[:-1].endswith((" ", "\t")):
                prefix += " "
            ending = _ending_of(lines[entry.last].text) or newline
            out[entry.first : entry.last + 1] = [(prefix + value_text).rstrip() + ending]
        return "".join(out)
    new_line = f"{key} = {value_text}".rstrip()
    # The shipped config.ini lists each default as ";key = value"; only that exact form is
    # taken over, so a user's own "# key = ..." notes are never rewritten.
    template = re.compile(rf"^;\s*{re.escape(key)}\s*=", re.IGNORECASE)
    in_section = [i for i, line in enumerate(lines) if line.section == setting.section]
    for index in reversed(in_section):
        if lines[index].kind == "comment" and template.match(lines[index].text):
            out[index] = new_line + (_ending_of(lines[index].text) or newline)
            return "".join(out)
    if in_section:
        # After the last key of the section's last block, else right under its header.
        headers = [i for i in in_section if lines[i].kind == "section"]
        block = [i for i in in_section if i >= headers[-1]]
        anchor = max((i for i in block if lines[i].kind in ("key", "cont")), default=headers[-1])
        if not _ending_of(out[anchor]):
            out[anchor] += newline
        out.insert(anchor + 1, new_line + newline)
        return "".join(out)
    if out and not _ending_of(out[-1]):
        out[-1] += newline
    lead = newline if out and out[-1].strip() else ""
    return "".join(out) + f"{lead}[{setting.section}]{newline}{new_line}{newline}"


def _ending_of(line: str) -> str:
    return line[len(line.rstrip("\r\n")) :]
