"""Load and save config.ini: precedence CLI > environment > config.ini > default.

Every value records where it came from (``Config.source``/``Config.explain``). Saving edits
the file line by line: comments, foreign sections, unknown content and the user's other
values survive, and the file is replaced atomically. The settings themselves are declared in
``config_schema.SETTINGS``.

A second file may sit beneath the one we write (``under``): read, never written. That is how
the Manager shares ``config.ini`` with another manager that reads it (manager/config_share.py):
our changes go to our own file on top, so a key the other manager reads never changes.

The file is read like the classic manager reads it (``configparser`` rules: ``key = value``
or ``key: value``, full-line ``#``/``;`` comments, indented continuation lines, no inline
comments, keys case-insensitive), but parsed by hand so that every value keeps its line number
and a save can rewrite exactly one line.

A repeated ``[default]``/``[security]`` header or a key set twice in one of them is reported
(``config_invalid`` in ``Config.problems``, shown by ``cm-cli.py config``, the startup alerts and
the panel) and never stops a start; where the repeated lines disagree on a setting that guards
security, the safer value is used (``config_repeats._safer``), so a second section appended to a file can never
lower security. Any other repeated key: the last line wins, as the classic manager reads it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config_ini import (
    _BOM,
    CONFIG_ENV,
    DOCS_HINT,
    _Entry,
    _norm_key,
    _parse,
    _read_text,
)
from .config_locations import (
    STRICTER_WINS,
    ConfigConflict,
    OldConfigFile,
    OldSetting,
    _compare_old,
    read_old_file,
)
from .config_repeats import _effective, _repeats, guards_security, is_looser
from .config_save import _apply, _newline_of, _read_under
from .config_schema import (
    FOREIGN_KEYS,
    RETIRED_KEYS,
    SECTIONS,
    SETTINGS,
    SETTINGS_BY_KEY,
    ConfigValue,
    Setting,
    ValueInvalid,
    coerce,
    format_value,
    parse_text,
    read_sections,
    redact,
    redact_text,
    suggest_keys,
)
from .errors import ConfigError, ConfigUnknownKey, ConfigUnreadable, ManagerError
from .fsops import atomic_write_bytes
from .layout import Layout

__all__ = [
    "CONFIG_ENV",
    "DOCS_HINT",
    "STRICTER_WINS",
    "Config",
    "ConfigConflict",
    "ConfigError",
    "ConfigUnknownKey",
    "ConfigUnreadable",
    "ConfigValue",
    "FOREIGN_KEYS",
    "Layout",
    "ManagerError",
    "OldConfigFile",
    "OldSetting",
    "RETIRED_KEYS",
    "SECTIONS",
    "SETTINGS",
    "SETTINGS_BY_KEY",
    "Setting",
    "ValueInvalid",
    "atomic_write_bytes",
    "coerce",
    "format_value",
    "guards_security",
    "is_looser",
    "parse_text",
    "read_old_file",
    "read_sections",
    "redact",
    "redact_text",
    "resolve_config_path",
    "suggest_keys",
]


def resolve_config_path(
    layout: Layout,
    env: Mapping[str, str] = os.environ,
    cli_path: str | os.PathLike[str] | None = None,
) -> Path:
    """The config.ini in effect: ``--config`` on the command line, else ``CM_CONFIG``, else
    ``<user>/__manager/config.ini``."""
    if cli_path:
        return Path(cli_path).expanduser().absolute()
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser().absolute()
    return layout.config_file


# --- errors with their origin -----------------------------------------------------------
@dataclass(frozen=True)
class _Origin:
    source: str  # cli | env | file | save
    path: Path | None
    line: int | None = None
    env: str = ""

    def describe(self) -> str:
        if self.source == "file":
            return f"{self.path}:{self.line}"
        if self.source == "env":
            return self.env
        return "command line" if self.source == "cli" else "saved change"


def _invalid(setting: Setting, raw: Any, exc: ValueInvalid, where: _Origin) -> ConfigError:
    text = redact_text(setting, raw) if isinstance(raw, str) else raw
    reason = redact_text(setting, exc.reason)
    guess = f" Did you mean {exc.suggestion!r}?" if exc.suggestion else ""
    if where.source == "file":
        msg = f"{where.describe()}: {setting.key} = {text!r} is invalid: {reason}."
        hint = (
            f"Edit line {where.line} of {where.path} (allowed: {exc.allowed}), or delete it to use "
            f"the default {format_value(setting, setting.default)!r}."
        )
    elif where.source == "env":
        msg = f"environment variable {where.env}={text!r} is invalid for {setting.key}: {reason}."
        hint = f"Fix or unset {where.env}; allowed: {exc.allowed}.{_in_effect(where.path)}"
    else:
        msg = f"{where.describe()} value {text!r} for {setting.key} is invalid: {reason}."
        hint = f"Allowed: {exc.allowed}.{_in_effect(where.path)}"
    return ConfigError(
        msg + guess,
        hint=hint,
        details={
            "key": setting.key,
            "value": str(text),
            "allowed": exc.allowed,
            "suggestion": exc.suggestion,
            "source": where.source,
            "origin": where.describe(),
            "path": str(where.path) if where.path else None,
            "line": where.line,
        },
    )


def _in_effect(path: Path | None) -> str:
    return f" Config file in effect: {path}." if path else ""


def _unknown(key: str, where: _Origin, section: str | None = None) -> ConfigUnknownKey:
    close = suggest_keys(key)
    guess = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    if where.source == "file":
        msg = f"{where.describe()}: unknown setting {key!r} in [{section}].{guess}"
        hint = f"Rename or delete line {where.line} of {where.path}; {DOCS_HINT}."
    elif where.source == "cli":
        msg = f"unknown setting {key!r} on the command line.{guess}"
        hint = f"Check the setting name; {DOCS_HINT}.{_in_effect(where.path)}"
    else:
        msg = f"unknown setting {key!r}.{guess}"
        hint = f"Check the setting name; {DOCS_HINT}."
    return ConfigUnknownKey(
        msg,
        hint=hint,
        details={
            "key": key,
            "suggestions": close,
            "source": where.source,
            "origin": where.describe(),
            "path": str(where.path) if where.path else None,
            "line": where.line,
        },
    )


# --- the Config object ------------------------------------------------------------------
class Config:
    """Resolved settings with their sources. Immutable: ``save`` returns a new ``Config``."""

    __slots__ = (
        "_path",
        "_under",
        "_values",
        "_sources",
        "_origins",
        "_env",
        "_cli",
        "_strict",
        "problems",
        "notes",
        "old_files",
    )

    def __init__(
        self,
        *,
        path: Path | None,
        values: dict[str, Any],
        sources: dict[str, str],
        origins: dict[str, str],
        env: dict[str, str],
        cli: dict[str, Any],
        strict: bool,
        problems: tuple[ConfigError, ...] = (),
        notes: tuple[str, ...] = (),
        under: Path | None = None,
        old_files: tuple[OldConfigFile, ...] = (),
    ):
        self._path = path
        self._under = under
        self._values = values
        self._sources = sources
        self._origins = origins
        self._env = env
        self._cli = cli
        self._strict = strict
        #: errors skipped because ``strict=False`` (their setting fell back a level), and repeated
        #: [default]/[security] sections and keys (reported in any mode, see ``_repeats``).
        self.problems = problems
        #: harmless findings worth logging: retired classic keys, settings in a foreign section.
        self.notes = notes
        #: config files found at the classic's old locations, with what they set (``OldConfigFile``)
        self.old_files = old_files

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None,
        *,
        env: Mapping[str, str] = os.environ,
        cli: Mapping[str, Any] | None = None,
        strict: bool = True,
        under: str | os.PathLike[str] | None = None,
        old: Sequence[str | os.PathLike[str]] = (),
    ) -> Config:
        """Read ``path`` (missing is fine: defaults), then apply ``CM_<KEY>`` variables and ``cli``.

        ``under``: a file read beneath ``path`` (its values count where ``path`` has none) and
        never written; ``save`` writes ``path`` only.

        ``old``: config files at the classic's old locations (``config_share.old_config_files``).
        They are not read as settings, except that a stricter ``network_mode`` or
        ``security_level`` there wins over the file in effect and the default (never over the
        environment or the command line); every difference is reported in ``problems``
        (``config_conflict``) and listed in ``old_files``.

        ``strict=False`` never raises for a bad key or value: the offending layer is skipped,
        the next one down is used and the error lands in ``problems`` (for a host that must
        not fail to start). An unreadable or unparsable file still raises.
        """
        file_path = Path(path).expanduser().absolute() if path is not None else None
        read = _read_text(file_path) if file_path is not None else None
        return cls._build(
            file_path,
            read[0] if read else "",
            env=env,
            cli=cli or {},
            strict=strict,
            under=_read_under(under),
            old=tuple(Path(p).expanduser().absolute() for p in old),
        )

    @classmethod
    def defaults(cls) -> Config:
        """Every setting at its default, with no file behind it."""
        return cls._build(None, "", env={}, cli={}, strict=True)

    @classmethod
    def _build(
        cls,
        path: Path | None,
        text: str,
        *,
        env: Mapping[str, str],
        cli: Mapping[str, Any],
        strict: bool,
        under: tuple[Path, str] | None = None,
        old: tuple[Path, ...] = (),
    ) -> Config:
        problems: list[ConfigError] = []
        notes: list[str] = []
        if under is not None:
            notes.append(f"{under[0]} is read beneath {path} and never written here; changes are saved to {path}")

        def fail(err: ConfigError) -> None:
            if strict:
                raise err
            problems.append(err)

        def fail_in(where: Path | None) -> Any:
            # Another manager's file never stops ours: what we cannot read there falls back.
            return problems.append if under is not None and where == under[0] else fail

        # Lowest first: the file beneath (shared with another manager), then ours.
        parsed = ([(under[0], _parse(under[1], under[0]))] if under is not None else []) + [(path, _parse(text, path))]
        layers: list[tuple[Path | None, list[_Entry]]] = [(p, entries) for p, (_, entries) in parsed]
        for layer_path, (layer_lines, layer_entries) in parsed:
            # repeated sections and keys never stop a start: reported, resolved to the safer value
            problems.extend(_repeats(layer_path, layer_lines, layer_entries))
        for layer_path, layer_entries in layers:
            for entry in layer_entries:
                here = _Origin("file", layer_path, entry.line)
                if entry.key in SETTINGS_BY_KEY:
                    sections = read_sections(SETTINGS_BY_KEY[entry.key])
                    if entry.section not in sections:
                        notes.append(
                            f"{here.describe()}: {entry.key} in [{entry.section}] is ignored; "
                            f"it is read from [{'] and ['.join(sections)}]"
                        )
                elif entry.key in RETIRED_KEYS or entry.key in FOREIGN_KEYS:
                    if entry.section in ("default", "security"):
                        why = RETIRED_KEYS.get(entry.key) or FOREIGN_KEYS[entry.key]
                        state = "is no longer used" if entry.key in RETIRED_KEYS else "is not a setting of this Manager"
                        notes.append(f"{here.describe()}: {entry.key} {state} ({why}); left as is")
                elif entry.section in SECTIONS:
                    fail_in(layer_path)(_unknown(entry.key, here, entry.section))

        cli_by_key: dict[str, Any] = {}
        for raw_key, value in cli.items():
            key = _norm_key(raw_key)
            if key not in SETTINGS_BY_KEY:
                fail(_unknown(raw_key, _Origin("cli", path)))
                continue
            cli_by_key[key] = value

        # CM_<KEY>, and below it a classic variable (GITHUB_ENDPOINT, HF_ENDPOINT) where declared
        env_seen = {name: env[name] for s in SETTINGS for name in (s.env, s.classic_env) if name and name in env}
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        origins: dict[str, str] = {}
        for setting in SETTINGS:
            candidates: list[tuple[_Origin, Any]] = []
            if setting.key in cli_by_key:
                candidates.append((_Origin("cli", path), cli_by_key[setting.key]))
            for name in (setting.env, setting.classic_env):
                if name and name in env_seen:
                    candidates.append((_Origin("env", path, env=name), env_seen[name]))
            for layer_path, layer_entries in reversed(layers):
                found = _effective(layer_entries, setting.key)
                if found is not None:
                    candidates.append((_Origin("file", layer_path, found.line), found.value))
            values[setting.key] = setting.default
            sources[setting.key] = "default"
            origins[setting.key] = "built-in default"
            for where, raw in candidates:
                try:
                    value = coerce(setting, raw) if where.source == "cli" else parse_text(setting, raw)
                except ValueInvalid as exc:
                    fail_in(where.path if where.source == "file" else None)(_invalid(setting, raw, exc, where))
                    continue
                values[setting.key] = value
                sources[setting.key] = where.source
                origins[setting.key] = where.describe()
                break
        old_files = _compare_old(old, path, values, sources, origins, problems)
        return cls(
            path=path,
            values=values,
            sources=sources,
            origins=origins,
            env=env_seen,
            cli=dict(cli),
            strict=strict,
            problems=tuple(problems),
            notes=tuple(notes),
            under=under[0] if under is not None else None,
            old_files=old_files,
        )

    # --- reading values -------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The file this object was loaded from and saves to (it may not exist yet)."""
        return self._path

    @property
    def under(self) -> Path | None:
        """The file read beneath ``path`` and never written (shared with another manager), if any."""
        return self._under

    def _setting(self, key: str) -> Setting:
        norm = _norm_key(key)
        if norm not in SETTINGS_BY_KEY:
            raise _unknown(key, _Origin("save", self._path))
        return SETTINGS_BY_KEY[norm]

    def __getitem__(self, key: str) -> Any:
        return self._values[self._setting(key).key]

    def get(self, key: str) -> Any:
        """The typed value of ``key``; an undeclared key raises ``ConfigUnknownKey``."""
        return self[key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _norm_key(key) in SETTINGS_BY_KEY

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def source(self, key: str) -> str:
        """Where the value of ``key`` came from: ``cli``, ``env``, ``file`` or ``default``."""
        return self._sources[self._setting(key).key]

    def origin(self, key: str) -> str:
        """Exactly where: ``<path>:<line>``, the variable name, ``command line`` or ``built-in default``."""
        return self._origins[self._setting(key).key]

    def values(self, include_secrets: bool = False) -> dict[str, Any]:
        """Every setting's typed value; secret ones have credentials masked unless asked."""
        return {s.key: self._values[s.key] if include_secrets else redact(s, self._values[s.key]) for s in SETTINGS}

    def explain(self, include_secrets: bool = False) -> list[ConfigValue]:
        """One ``ConfigValue`` per setting, in declaration order, with its source."""
        shown = self.values(include_secrets=include_secrets)
        return [
            ConfigValue(
                key=s.key,
                value=shown[s.key],
                source=self._sources[s.key],
                section=s.section,
                help=s.help,
                origin=self._origins[s.key],
                default=s.default,
            )
            for s in SETTINGS
        ]

    def __repr__(self) -> str:
        overrides = sorted(k for k, v in self._sources.items() if v != "default")
        return f"Config(path={str(self._path)!r}, overrides={overrides})"

    # --- saving ---------------------------------------------------------------------------
    def save(self, changes: Mapping[str, Any]) -> Config:
        """Write ``changes`` into the file and return the reloaded ``Config``.

        Only the changed keys are touched, on the file as it is on disk now; every other
        line stays byte for byte. A key is updated where it already is (every active line of
        it in [default]/[security], so a classic reader agrees), else a commented-out
        ``;key = ...`` template line in its section is replaced, else it is added to its
        section. Nothing is written when a change is invalid, the file cannot be parsed, or
        the result would not load.
        """
        if self._path is None:
            raise ConfigError(
                "this configuration has no file to save to",
                hint=f"Load it with Config.load(<path>) or set {CONFIG_ENV}.",
            )
        typed: dict[str, str] = {}
        for raw_key, value in changes.items():
            setting = self._setting(raw_key)
            try:
                typed[setting.key] = format_value(setting, coerce(setting, value))
            except ValueInvalid as exc:
                raise _invalid(setting, value, exc, _Origin("save", self._path)) from None
        read = _read_text(self._path)
        original, bom = read if read else ("", False)
        text = original
        newline = _newline_of(original)
        for key, value_text in typed.items():
            text = _apply(text, key, value_text, newline, self._path)
        updated = Config._build(
            self._path,
            text,
            env=self._env,
            cli=self._cli,
            strict=self._strict,
            under=_read_under(self._under),
            old=tuple(f.path for f in self.old_files),
        )
        if text != original or read is None:
            mode = self._path.stat().st_mode & 0o777 if read is not None else 0o644
            atomic_write_bytes(self._path, ((_BOM if bom else "") + text).encode("utf-8"), mode=mode)
        return updated
