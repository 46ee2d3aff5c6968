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

from .errors import ChannelInvalid, ChannelNotAllowed, ManagerError, PathEscape
from .network import NetworkGate
from .records import Channel

__all__ = [
    "parse_channels_list",
    "ChannelSet",
    "check_allowed",
    "check_channel_folder",
    "channel_url_problem",
    "is_local_url",
    "local_channel_listed",
    "DEFAULT_CHANNEL_URL",
    "CHANNEL_SCHEMES",
]

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


def channel_url_problem(url: str) -> str:
    """Why ``url`` cannot be a channel base, or '' when it can (the rule channels.list lines obey)."""
    return _url_problem(url.strip())


def is_local_url(url: str) -> bool:
    """A ``file://`` URL (any case of the scheme) or a bare path: a channel on this machine."""
    text = url.strip()
    return text.lower().startswith("file:") or "://" not in text


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

    Local channels are admitted here (config.ini's ``channel_url`` is the admin's own choice); a
    door that selects a local channel the admin did not name (``local_channel_listed``) decides it
    like a local-path install first, and ``check_channel_folder`` proves it holds a channel.
    A remote channel needs ``allow_remote_channel`` (callers
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


# --- a local channel must be a channel ----------------------------------------------------------
CHANNEL_INDEX = "custom-node-list.json"
_HEAD_BYTES = 4096


def _real(url: str) -> Path | None:
    """The resolved folder of a local channel URL, or None when the URL names no local path."""
    try:
        path = NetworkGate.local_path(url)
    except ManagerError:  # a file:// URL naming a remote host
        return None
    if not path.is_absolute():
        return None
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError):  # a link loop
        return None


def local_channel_listed(channel: Channel, channels: Iterable[Channel], allowed_channels: Sequence[str]) -> bool:
    """True when the admin named ``channel``'s folder: a local line of channels.list or a local
    ``allowed_channels`` entry resolves to it or to a folder above it (links and ``..`` resolved
    first, so no spelling of the path reaches outside what was named)."""
    real = _real(channel.url)
    if real is None:
        return False
    named = [c.url for c in channels if c.is_local] + [a for a in allowed_channels if a.strip() and is_local_url(a)]
    for url in named:
        base = _real(url)
        if base is not None and (real == base or base in real.parents):
            return True
    return False


def _folder_invalid(channel: Channel, problem: str, hint: str, **details: str) -> ChannelInvalid:
    return ChannelInvalid(
        f"{channel.url} is not a channel: {problem}",
        hint=hint + " Nothing was changed.",
        details={"url": channel.url, "problem": problem, **details},
    )


def check_channel_folder(channel: Channel) -> Path:
    """The folder of local ``channel`` once it holds a channel; ``ChannelInvalid`` otherwise.

    The URL may not step up with ``..``; the folder must exist and hold ``custom-node-list.json``
    (in the folder or its ``nodes/``) as a regular file inside the folder (a link pointing out is
    refused), readable, starting like a JSON object. Reads at most a few KiB.
    """
    hint = f"Point it at a folder holding {CHANNEL_INDEX} (a channel made by cm-cli.py or the demo)."
    text = channel.url.strip()
    raw_path = urllib.parse.urlsplit(text).path if text.lower().startswith("file:") else text
    if ".." in PurePosixPath(urllib.parse.unquote(raw_path).replace("\\", "/")).parts:
        raise _folder_invalid(channel, "the path steps up with '..'", "Give the channel's folder as an absolute path.")
    try:
        root = NetworkGate.local_path(text)
    except ManagerError as exc:
        raise _folder_invalid(channel, exc.message, exc.hint or hint) from None
    if not root.is_absolute():
        raise _folder_invalid(channel, "the path is not absolute", "Use file:///absolute/path/to/channel.")
    if not root.is_dir():
        raise _folder_invalid(channel, "the folder does not exist", hint, path=str(root))
    real_root = root.resolve()
    index = next((p for p in (root / CHANNEL_INDEX, root / "nodes" / CHANNEL_INDEX) if p.exists()), None)
    if index is None:
        raise _folder_invalid(channel, f"it holds no {CHANNEL_INDEX}", hint, path=str(root))
    real_index = index.resolve()
    if real_root not in real_index.parents:
        raise _folder_invalid(
            channel,
            f"{index.name} links outside the folder (to {real_index})",
            "Copy the channel files into the folder instead of linking them.",
            path=str(index),
        )
    if not real_index.is_file():
        raise _folder_invalid(channel, f"{index} is not a regular file", hint, path=str(index))
    try:
        with open(real_index, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        raise _folder_invalid(
            channel, f"{index} cannot be read: {exc.strerror or exc}", "Check the file's permissions.", path=str(index)
        ) from None
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        raise _folder_invalid(channel, f"{index} is not a JSON object", hint, path=str(index))
    return root
