"""How each config.ini value type is parsed, checked, formatted and masked.

The settings themselves are declared in ``config_schema.SETTINGS``; this module holds the value
parsers and validators they share (``parse_text``, ``coerce``, ``format_value``, ``redact``).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from .config_schema import Setting

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_URL_SCHEMES = ("http", "https", "file")
_FORBIDDEN_CHARS = ("\r", "\n", "\x00")
REWRITE_ARROW = "->"


class ValueInvalid(ValueError):
    """A value that does not fit its setting; ``allowed`` says what would."""

    def __init__(self, reason: str, allowed: str, suggestion: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.allowed = allowed
        self.suggestion = suggestion


def allowed_text(setting: Setting) -> str:
    """Human description of the accepted values of ``setting``."""
    if setting.type == "choice":
        return ", ".join(setting.choices)
    if setting.type == "bool":
        return "true/false (also yes/no, on/off, 1/0)"
    if setting.type in ("int", "float"):
        kind = "a whole number" if setting.type == "int" else "a number"
        return kind + (f" >= {setting.minimum:g}" if setting.minimum is not None else "")
    if setting.type == "url":
        return "an http(s):// or file:// URL" + (" or empty" if setting.default == "" else "")
    if setting.type == "url-list":
        return "http(s):// or file:// URLs separated by commas or new lines"
    if setting.type == "list":
        return "items separated by commas or new lines"
    return "any text on one line"


def _check_url(setting: Setting, text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme.lower() not in _URL_SCHEMES:
        raise ValueInvalid(f"{text!r} is not an http(s):// or file:// URL", allowed_text(setting))
    if parts.scheme.lower() != "file" and not parts.netloc:
        raise ValueInvalid(f"{text!r} has no host name", allowed_text(setting))
    return text


def _check_networks(items: tuple[str, ...]) -> None:
    """``trusted_networks``: every item must be an IP network (a bare address is one host)."""
    import ipaddress

    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueInvalid(
                f"{item!r} is not an IP network", "CIDR networks such as 192.168.1.0/24 or fd00::/8, comma-separated"
            ) from None


def parse_rewrite(item: str) -> tuple[str, str]:
    """One ``rewrites`` item, ``FROM -> TO``: FROM an http(s):// URL prefix, TO an http(s):// or
    file:// one. Raises ``ValueInvalid``."""
    allowed = "'FROM -> TO' lines, e.g. https://civitai.com/ -> https://models.corp/civitai/"
    source, arrow, target = item.partition(REWRITE_ARROW)
    source, target = source.strip(), target.strip()
    if not arrow or not source or not target:
        raise ValueInvalid(f"{item!r} is not 'FROM -> TO'", allowed)
    parts = urlsplit(source)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueInvalid(f"{source!r} (FROM) is not an http(s):// URL prefix with a host", allowed)
    tparts = urlsplit(target)
    if tparts.scheme.lower() not in _URL_SCHEMES or (tparts.scheme.lower() != "file" and not tparts.netloc):
        raise ValueInvalid(f"{target!r} (TO) is not an http(s):// or file:// URL", allowed)
    return source, target


def _split_list(text: str) -> tuple[str, ...]:
    items = [part.strip() for line in text.splitlines() for part in line.split(",")]
    return tuple(item for item in items if item)


def parse_text(setting: Setting, text: str) -> Any:
    """Parse the text form of a value (file, env or CLI) into its typed value.

    Raises ``ValueInvalid`` naming the allowed values.
    """
    raw = text.strip()
    kind = setting.type
    if kind == "bool":
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueInvalid("not a boolean", allowed_text(setting))
    if kind == "choice":
        probe = raw.lower() if setting.lower else raw
        if probe in setting.choices:
            return probe
        close = difflib.get_close_matches(raw.lower(), setting.choices, n=1, cutoff=0.6)
        raise ValueInvalid("not one of the allowed values", allowed_text(setting), close[0] if close else None)
    if kind in ("int", "float"):
        try:
            number: float = int(raw, 10) if kind == "int" else float(raw)
        except ValueError:
            raise ValueInvalid(f"not {allowed_text(setting)}", allowed_text(setting)) from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueInvalid("not a finite number", allowed_text(setting))
        if setting.minimum is not None and number < setting.minimum:
            raise ValueInvalid(f"below the minimum {setting.minimum:g}", allowed_text(setting))
        return number
    if kind == "url":
        if raw == "" and setting.default == "":
            return ""
        return _check_url(setting, raw)
    if kind == "list":
        items = _split_list(raw)
        if setting.key == "trusted_networks":
            _check_networks(items)
        if setting.key == "rewrites":
            for item in items:
                parse_rewrite(item)
        return items
    if kind == "url-list":
        return tuple(_check_url(setting, item) for item in _split_list(raw))
    return raw


def format_value(setting: Setting, value: Any) -> str:
    """The config.ini text of a typed value (booleans as true/false, which the classic manager reads)."""
    if setting.type == "bool":
        return "true" if value else "false"
    if setting.type in ("list", "url-list"):
        return ", ".join(value)
    if setting.type == "float":
        text = repr(float(value))
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def coerce(setting: Setting, value: Any) -> Any:
    """Validate a value handed in by code (typed or text) and return its typed form.

    Text goes through ``parse_text``; typed values are checked by re-parsing their text form,
    so both paths accept exactly the same set. CR, LF and NUL are refused outright because a
    value must stay on its own line in config.ini.
    """
    if isinstance(value, str):
        text = value
    elif setting.type == "bool" and isinstance(value, bool):
        text = format_value(setting, value)
    elif setting.type in ("int", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
    elif setting.type in ("list", "url-list") and isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
        if any("," in item for item in items):
            raise ValueInvalid("a list item contains a comma, the list separator", allowed_text(setting))
        text = ", ".join(items)
    else:
        raise ValueInvalid(f"{value!r} has the wrong type for a {setting.type} setting", allowed_text(setting))
    if any(ch in text for ch in _FORBIDDEN_CHARS):
        raise ValueInvalid("it contains a line break or NUL character", allowed_text(setting))
    return parse_text(setting, text)


def redact(setting: Setting, value: Any) -> Any:
    """Hide credentials in a secret setting's value; URLs keep their shape minus the password."""
    if not setting.secret or value in ("", ()):
        return value
    if setting.type in ("url", "url-list"):
        items = (value,) if isinstance(value, str) else value
        hidden = tuple(_strip_password(item) for item in items)
        return hidden[0] if isinstance(value, str) else hidden
    if setting.type == "list":  # [mirrors] rewrites: 'FROM -> TO' lines keep their shape
        return tuple(re.sub(r"(://)[^/@\s]*@", r"\1***@", item) for item in value)
    return "***"


def redact_text(setting: Setting, text: str) -> str:
    """Mask URL credentials in raw text of a secret setting (for error messages)."""
    return re.sub(r"(://)[^/@\s]*@", r"\1***@", text) if setting.secret else text


def _strip_password(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, colon, _password = userinfo.partition(":")
    # A lone user part is often a token (https://TOKEN@host), so hide it too.
    netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class ConfigValue:
    """One resolved setting as shown by ``Config.explain()``.

    ``origin`` says exactly where the value came from: ``<path>:<line>``, the environment
    variable name, ``command line`` or ``built-in default``.
    """

    key: str
    value: Any
    source: str
    section: str
    help: str
    origin: str = ""
    default: Any = field(default=None, compare=False)
