"""Config files at the classic manager's old locations: read, compared with what is in effect.

A stricter ``network_mode``/``security_level`` there wins (``STRICTER_WINS``); every other
difference is reported as a ``config_conflict`` (``Config.problems``, ``Config.old_files``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config_ini import _parse, _read_text
from .config_repeats import _effective, is_looser
from .config_schema import SETTINGS, Setting, ValueInvalid, format_value, parse_text, redact_text
from .errors import ConfigError, ManagerError


# --- config files at the classic's old locations ------------------------------------------
class ConfigConflict(ConfigError):
    """A config file at an old location sets values that differ from the file in effect."""

    code = "config_conflict"
    http_status = 409


#: settings where a stricter value in an old config file wins over the file in effect and the
#: default (never over the environment or the command line): an old ``network_mode = offline``
#: never leaves the box running public (docs/decisions.md)
STRICTER_WINS = ("network_mode", "security_level")


@dataclass(frozen=True)
class OldSetting:
    key: str
    value: str  # as written in the old file (secrets masked)
    line: int
    in_effect: str  # the value in effect, formatted (secrets masked)
    differs: bool
    stricter_wins: bool = False  # this old value is the one in effect (STRICTER_WINS)
    looser: bool = False  # copying it would lower security

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class OldConfigFile:
    """A config.ini at an old location: what it sets and how that compares with what is in effect."""

    path: Path
    settings: tuple[OldSetting, ...] = ()
    error: str = ""  # why it could not be read (then ``settings`` is empty)

    @property
    def differs(self) -> tuple[OldSetting, ...]:
        return tuple(s for s in self.settings if s.differs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "settings": [s.to_dict() for s in self.settings],
            "differs": [s.key for s in self.differs],
            "stricter_wins": [s.key for s in self.settings if s.stricter_wins],
            "error": self.error,
        }


def _shown(setting: Setting, value: Any) -> str:
    try:
        return redact_text(setting, format_value(setting, value))
    except (TypeError, ValueError):
        return str(value)


def read_old_file(path: Path) -> tuple[list[tuple[Setting, Any, int]], str]:
    """The settings an old config file sets: (setting, typed value, line) and an error text."""
    try:
        read = _read_text(path)
        _, entries = _parse(read[0] if read else "", path)
    except ManagerError as exc:
        return [], exc.message
    found = []
    for setting in SETTINGS:
        entry = _effective(entries, setting.key)
        if entry is None:
            continue
        try:
            found.append((setting, parse_text(setting, entry.value), entry.line))
        except ValueInvalid:
            continue  # a value we cannot read is not a setting to compare or copy
    return found, ""


def _compare_old(
    old: tuple[Path, ...],
    path: Path | None,
    values: dict[str, Any],
    sources: dict[str, str],
    origins: dict[str, str],
    problems: list[ConfigError],
) -> tuple[OldConfigFile, ...]:
    """Compare each old file with the values in effect: a stricter ``STRICTER_WINS`` value that
    only the file in effect or the default decided wins (``values`` updated), and every file
    that differs adds one ``config_conflict`` to ``problems``."""
    out: list[OldConfigFile] = []
    for old_path in old:
        found, error = read_old_file(old_path)
        if error:
            out.append(OldConfigFile(old_path, (), error))
            problems.append(
                ConfigConflict(
                    f"old config file {old_path} cannot be read: {error}",
                    hint=f"Fix or delete {old_path}; the settings in effect come from {path}.",
                    details={"path": str(old_path), "in_effect": str(path)},
                )
            )
            continue
        rows: list[OldSetting] = []
        for setting, value, line in found:
            key = setting.key
            current = values[key]
            wins = key in STRICTER_WINS and sources[key] in ("file", "default") and is_looser(key, current, value)
            if wins:
                shown_before = f"{_shown(setting, current)} from {origins[key]}"
                values[key] = value
                sources[key] = "file"
                origins[key] = f"{old_path}:{line}"
            rows.append(
                OldSetting(
                    key,
                    _shown(setting, value),
                    line,
                    shown_before if wins else _shown(setting, current),
                    differs=wins or value != current,
                    stricter_wins=wins,
                    looser=is_looser(key, value, current),
                )
            )
        record = OldConfigFile(old_path, tuple(rows))
        out.append(record)
        if record.differs:
            problems.append(_conflict(record, path))
    return tuple(out)


def _conflict(record: OldConfigFile, path: Path | None) -> ConfigConflict:
    parts = []
    for s in record.differs:
        if s.stricter_wins:
            parts.append(f"{s.key} = {s.value} (line {s.line}) is stricter than {s.in_effect}: it is used")
        else:
            parts.append(f"{s.key} = {s.value} (line {s.line}; in effect: {s.in_effect or '(empty)'}) is ignored")
    return ConfigConflict(
        f"old config file {record.path} differs from the file in effect {path}: " + "; ".join(parts),
        hint=f"Run cm-cli.py migrate to copy its settings into {path} (a backup is kept; a value that "
        f"would lower security needs --allow-lower), or delete {record.path} if nothing reads it any more.",
        details={
            "path": str(record.path),
            "in_effect": str(path),
            "keys": [s.key for s in record.differs],
            "stricter_wins": [s.key for s in record.differs if s.stricter_wins],
        },
    )
