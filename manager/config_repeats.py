"""Repeated sections and keys in config.ini, and which line counts.

A repeated ``[default]``/``[security]`` header or a key set twice in one of them is reported
(``config_invalid`` in ``Config.problems``) and never stops a start; where the repeated lines
disagree on a setting that guards security, the safer value is used (``_safer``), so a second
section appended to a file can never lower security. Any other repeated key: the last line wins,
as the classic manager reads it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .config_ini import _Entry, _Line
from .config_schema import (
    SECTIONS,
    SETTINGS_BY_KEY,
    Setting,
    ValueInvalid,
    format_value,
    parse_text,
    read_sections,
    redact_text,
)
from .errors import ConfigError


def _effective(entries: list[_Entry], key: str) -> _Entry | None:
    """The entry that counts for ``key``: its declared section beats the other known section
    (classic files keep [security] keys in [default]); within one, the last line wins, except
    that repeated lines of a setting guarding security give their safer value (``_safer``)."""
    setting = SETTINGS_BY_KEY[key]
    found = [e for e in entries if e.key == key and e.section in read_sections(setting)]
    preferred = [e for e in found if e.section == setting.section]
    pool = preferred or found
    return _choose(setting, pool) if pool else None


# --- repeated sections and keys ---------------------------------------------------------
# Settings with a safe direction: when a key is set twice (often a second [default] appended to
# the file), the safer of the values is used, whatever the order of the lines.
_ORDER_SAFE_FIRST = {
    "security_level": ("strong", "normal", "normal-", "weak"),
    "network_mode": ("offline", "private", "public"),
}
_TRUE_IS_LOOSER = (
    "allow_git_url_install",
    "allow_pip_install",
    "allow_external_pip",
    "allow_remote_channel",
    "http_channel_enabled",
    "bypass_ssl",
)
_TRUE_IS_SAFER = ("audit_logging",)
# lists that widen what may be reached or may drive the Manager: only what every line lists counts
_WIDENING_LISTS = (
    "allowed_channels",
    "allowed_pip_sources",
    "allowed_hosts",
    "allowed_http_hosts",
    "allowed_download_hosts",
    "private_mirrors",
    "trusted_networks",
)


def guards_security(key: str) -> bool:
    """True for the settings whose repeated lines resolve to the safer value."""
    return key in _ORDER_SAFE_FIRST or key in _TRUE_IS_LOOSER or key in _TRUE_IS_SAFER or key in _WIDENING_LISTS


def _safer(setting: Setting, pool: list[_Entry]) -> _Entry:
    """The entry that counts among repeated lines of ``setting``: the safer value for a setting
    that guards security, else the last line. A line that does not parse leaves the last line to
    the usual error path."""
    last = pool[-1]
    if not guards_security(setting.key):
        return last
    try:
        parsed = [(entry, parse_text(setting, entry.value)) for entry in pool]
    except ValueInvalid:
        return last
    key = setting.key
    if key in _ORDER_SAFE_FIRST:
        order = _ORDER_SAFE_FIRST[key]
        return min(parsed, key=lambda p: order.index(p[1]) if p[1] in order else len(order))[0]
    if key in _TRUE_IS_LOOSER or key in _TRUE_IS_SAFER:
        safe = key in _TRUE_IS_SAFER
        return next((entry for entry, value in parsed if bool(value) is safe), last)
    common = [item for item in parsed[0][1] if all(item in value for _, value in parsed[1:])]
    return dataclasses.replace(last, value=format_value(setting, tuple(common)))


def _choose(setting: Setting, pool: list[_Entry]) -> _Entry | None:
    """The line that counts among ``pool`` (lines of one setting in one section), None for the
    default. A setting that guards security takes the safer value, and lines that all sit under a
    repeated section header compete with the default: a repeated section never loosens it."""
    if len(pool) == 1 and not pool[0].repeat:
        return pool[0]
    if not guards_security(setting.key):
        return pool[-1]
    candidates = list(pool)
    if all(entry.repeat for entry in pool):
        default = format_value(setting, setting.default) if setting.default is not None else ""
        candidates.append(dataclasses.replace(pool[-1], value=default, line=0))
    chosen = _safer(setting, candidates)
    if chosen.line == 0 or (setting.type in ("list", "url-list") and not chosen.value.strip()):
        return None
    return chosen


def _repeats(path: Path | None, lines: list[_Line], entries: list[_Entry]) -> list[ConfigError]:
    """A ``config_invalid`` error per repeated [default]/[security] header and per key set more
    than once in one of those sections (the line numbers, the value used and the fix)."""
    problems: list[ConfigError] = []
    where = str(path) if path else "the config file"
    headers: dict[str, list[int]] = {}
    for line in lines:
        if line.kind == "section" and line.section in SECTIONS:
            headers.setdefault(line.section, []).append(line.number)
    for section, numbers in headers.items():
        if len(numbers) > 1:
            again = ", ".join(str(n) for n in numbers[1:])
            problems.append(
                ConfigError(
                    f"{where}: [{section}] appears {len(numbers)} times (lines {', '.join(map(str, numbers))}); "
                    "the repeats are read as part of the first",
                    hint=f"Merge the [{section}] sections of {where} into one: delete the header on line "
                    f"{again} and keep each setting once.",
                    details={
                        "path": str(path) if path else None,
                        "section": section,
                        "lines": numbers,
                        "repeat": "section",
                    },
                )
            )
    seen: dict[tuple[str, str], list[_Entry]] = {}
    for entry in entries:
        if entry.key in SETTINGS_BY_KEY and entry.section in read_sections(SETTINGS_BY_KEY[entry.key]):
            seen.setdefault((entry.section, entry.key), []).append(entry)
    for (section, key), pool in seen.items():
        setting = SETTINGS_BY_KEY[key]
        chosen = _choose(setting, pool)
        default = redact_text(setting, format_value(setting, setting.default) if setting.default is not None else "")
        details = {"path": str(path) if path else None, "section": section, "key": key, "lines": [e.line for e in pool]}
        if len(pool) == 1:
            if chosen is None:
                entry = pool[0]
                problems.append(
                    ConfigError(
                        f"{where}:{entry.line}: {key} = {redact_text(setting, entry.value)!r} sits in a repeated "
                        f"[{section}] section and would loosen security; it is ignored and {default!r} is used",
                        hint=f"If it is meant, move line {entry.line} into the first [{section}] section of "
                        f"{where} and delete the repeated header, then restart.",
                        details={**details, "repeat": "loosening"},
                    )
                )
            continue
        numbers = [e.line for e in pool]
        shown = ", ".join(f"line {e.line}: {redact_text(setting, e.value)!r}" for e in pool)
        if chosen is None:
            used = f"none of them may loosen security from a repeated section: {default!r} is used"
        elif len({e.value.strip().lower() for e in pool}) == 1:
            used = "they agree"
        elif guards_security(key) and chosen.value != pool[-1].value:
            used = (
                f"the safer value {redact_text(setting, chosen.value)!r} is used "
                "(a repeated line never lowers security)"
            )
        else:
            used = f"the last one (line {pool[-1].line}) is used" + (
                "" if guards_security(key) else ", as the classic manager reads it"
            )
        problems.append(
            ConfigError(
                f"{where}: {key} is set {len(pool)} times in [{section}] ({shown}); {used}",
                hint=f"Keep one {key} line in {where}: delete line {', '.join(map(str, numbers[:-1]))} or line "
                f"{numbers[-1]} (whichever is not meant), then restart.",
                details={**details, "repeat": "key"},
            )
        )
    return problems


def is_looser(key: str, value: Any, than: Any) -> bool:
    """True when ``value`` of a setting that guards security allows more than ``than``."""
    if key in _ORDER_SAFE_FIRST:
        order = _ORDER_SAFE_FIRST[key]
        rank = {v: i for i, v in enumerate(order)}
        return rank.get(str(value), len(order)) > rank.get(str(than), len(order))
    if key in _TRUE_IS_LOOSER:
        return bool(value) and not bool(than)
    if key in _TRUE_IS_SAFER:
        return not bool(value) and bool(than)
    if key in _WIDENING_LISTS:
        return bool(set(value or ()) - set(than or ()))
    return False
