"""channels.list: named base URLs (remote or local) that hold the channel DB files.

Format: one ``name::url`` per line; ``#`` starts a comment line; blank lines and surrounding
whitespace are ignored. A bad line is a ``channel_invalid`` error naming the file and line, never
skipped silently. ``check_allowed`` is the policy that config.ini's channel keys express.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from .errors import ChannelInvalid, ChannelNotAllowed, PathEscape
from .network import NetworkGate
from .records import Channel

__all__ = ["parse_channels_list", "ChannelSet", "check_allowed", "DEFAULT_CHANNEL_URL", "CHANNEL_SCHEMES"]

DEFAULT_CHANNEL_URL = "https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main"
CHANNEL_SCHEMES = ("https", "http", "file")
_FORM_HINT = (
    "Each line must read name::url, for example "
    f"'default::{DEFAULT_CHANNEL_URL}' or 'mine::file:///srv/channel'; lines starting with # are comments."
)
_DRIVE_RE = re.compile(r"^[A-Za-z]:[\\/]")


def _url_problem(url: str) -> str:
    """Why ``url`` cannot be a channel base, or '' when it can."""
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        if scheme not in CHANNEL_SCHEMES:
            return f"unknown URL scheme {scheme + '://'!r} (use https://, http:// or file://)"
        parts = urllib.parse.urlsplit(url)
        if scheme in ("http", "https"):
            if not parts.hostname:
                return "the URL has no host"
            if any(ch.isspace() for ch in url):
                return "the URL contains whitespace"
        elif not parts.path or parts.netloc not in ("", "localhost"):
            return "a file:// URL needs an absolute local path (file:///path/to/channel)"
        return ""
    if url.startswith(("/", "~")) or _DRIVE_RE.match(url):
        return ""
    return "not a URL nor an absolute path (a missing or misspelled scheme?)"


def _norm_url(url: str) -> str:
    return url.strip().rstrip("/")


def _line_invalid(source: str, lineno: int, line: str, problem: str) -> ChannelInvalid:
    return ChannelInvalid(
        f"{source}, line {lineno}: {problem}: {line!r}",
        hint=_FORM_HINT,
        details={"file": source, "line": lineno},
    )


def parse_channels_list(text: str, *, source: str = "channels.list") -> list[Channel]:
    """Parse channels.list text; raises ``ChannelInvalid`` naming ``source`` and the line."""
    channels: list[Channel] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        bad = functools.partial(_line_invalid, source, lineno, line)
        if "::" not in line:
            raise bad("expected 'name::url'")
        name, url = (part.strip() for part in line.split("::", 1))
        if not name:
            raise bad("the channel name is empty")
        if not url:
            raise bad("the channel URL is empty")
        if name in first_line:
            raise bad(f"duplicate channel name {name!r} (first defined on line {first_line[name]})")
        problem = _url_problem(url)
        if problem:
            raise bad(problem)
        first_line[name] = lineno
        channels.append(Channel(name=name, url=url))
    return channels


class ChannelSet:
    """The configured channels, looked up by name or by listed URL."""

    def __init__(self, channels: Iterable[Channel], *, source: str = "channels.list"):
        self._channels = tuple(channels)
        self.source = source
        names = [c.name for c in self._channels]
        if len(set(names)) != len(names):
            raise ChannelInvalid(f"{source}: duplicate channel names", hint=_FORM_HINT, details={"file": source})

    @classmethod
    def from_text(cls, text: str, *, source: str = "channels.list") -> ChannelSet:
        return cls(parse_channels_list(text, source=source), source=source)

    @classmethod
    def load(cls, path: Path) -> ChannelSet:
        """Read and parse a channels.list file."""
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ChannelInvalid(
                f"cannot read {path}: {exc}",
                hint="Restore channels.list (a copy ships at the extension's root).",
                details={"file": str(path)},
            ) from exc
        return cls.from_text(text, source=str(path))

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    def names(self) -> list[str]:
        return [c.name for c in self._channels]

    def as_strings(self) -> list[str]:
        """``["name::url", ...]``: the shape of the classic ``channel_url_list`` route."""
        return [f"{c.name}::{c.url}" for c in self._channels]

    def remote_prefixes(self) -> tuple[str, ...]:
        """Base URLs (with a trailing slash) of the remote channels: private-mode allowed prefixes."""
        return tuple(_norm_url(c.url) + "/" for c in self._channels if not c.is_local)

    def get(self, name_or_url: str) -> Channel | None:
        key = (name_or_url or "").strip()
        for ch in self._channels:
            if ch.name == key:
                return ch
        for ch in self._channels:
            if key and _norm_url(ch.url) == _norm_url(key):
                return ch
        return None

    def resolve(self, name_or_url: str) -> Channel:
        """A channel by name, or by a URL that is listed; anything else is ``ChannelInvalid``."""
        found = self.get(name_or_url)
        if found is None:
            raise ChannelInvalid(
                f"unknown channel {name_or_url!r}: not a name or URL listed in {self.source}",
                hint=f"Use one of: {', '.join(self.names()) or '(none)'}; or add a 'name::url' line to {self.source}.",
                details={"channel": name_or_url, "file": self.source},
            )
        return found

    @property
    def default(self) -> Channel:
        """The channel named ``default``, else the first listed one."""
        if not self._channels:
            raise ChannelInvalid(
                f"{self.source} lists no channels",
                hint=f"Add a line such as 'default::{DEFAULT_CHANNEL_URL}'.",
                details={"file": self.source},
            )
        return self.get("default") or self._channels[0]

    def file_url(self, channel: Channel, filename: str) -> str:
        """URL of ``filename`` in ``channel``.

        A local channel may hold files in its root, under ``nodes/``, or (for model-list.json)
        under ``models/``; the first that exists wins, else the root location is returned.
        """
        rel = PurePosixPath(filename.replace("\\", "/"))
        if not filename or rel.is_absolute() or ".." in rel.parts or _DRIVE_RE.match(filename):
            raise PathEscape(
                f"channel file name {filename!r} must be a plain relative name", details={"file": filename}
            )
        if not channel.is_local:
            return _norm_url(channel.url) + "/" + urllib.parse.quote(rel.as_posix())
        root = NetworkGate.local_path(channel.url)
        if not root.is_absolute():
            root = root.resolve()
        candidates = [root / rel]
        if rel.as_posix() == "model-list.json":
            candidates.append(root / "models" / rel)
        candidates.append(root / "nodes" / rel)
        for cand in candidates:
            if cand.is_file():
                return cand.as_uri()
        return candidates[0].as_uri()


def check_allowed(
    channel: Channel, *, allow_remote_channel: bool, allowed_channels: Sequence[str], http_channel_enabled: bool
) -> None:
    """Raise ``ChannelNotAllowed`` (hint names the config.ini key) unless policy admits ``channel``.

    Local channels are always admitted. A remote channel needs ``allow_remote_channel`` (callers
    pass True for channels listed in channels.list) or its name/URL in ``allowed_channels``, which
    adds to the list as config.ini documents; plain ``http://`` also needs ``http_channel_enabled``.
    """
    details = {"channel": channel.name, "url": channel.url}
    if channel.is_local:
        return
    wanted = {a.strip() for a in allowed_channels} | {_norm_url(a) for a in allowed_channels}
    listed = channel.name in wanted or _norm_url(channel.url) in wanted
    if not (allow_remote_channel or listed):
        raise ChannelNotAllowed(
            f"remote channel {channel.name!r} ({channel.url}) is not allowed",
            hint="Add it to channels.list or to allowed_channels in config.ini, or set "
            "allow_remote_channel = True there; a local file:// channel is always allowed.",
            details=details,
        )
    if channel.url.lower().startswith("http://") and not http_channel_enabled:
        raise ChannelNotAllowed(
            f"channel {channel.name!r} uses plain http:// ({channel.url})",
            hint="Use https://, or set http_channel_enabled = True in config.ini (the data can then be "
            "altered in transit).",
            details=details,
        )
