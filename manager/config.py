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
security, the safer value is used (``_safer``), so a second section appended to a file can never
lower security. Any other repeated key: the last line wins, as the classic manager reads it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

CONFIG_ENV = "CM_CONFIG"
DOCS_HINT = "every setting is listed in docs/config.md and in the shipped config.ini"

_BOM = "\ufeff"
_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_SECTION_RE = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
_KEY_RE = re.compile(r"^(?P<key>\s*[^\s=:][^=:]*?)\s*(?P<delim>[=:])[ \t]*")


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
