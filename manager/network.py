"""The one network gate: every outbound URL (HTTP, git remote, pip index, model) passes here.

``NetworkGate.decide`` applies the ordered mirror map, then refuses the URL *before any socket
is opened* when the mode forbids it: ``offline`` refuses every remote URL, ``private`` only
allows URLs under a configured mirror or allowed prefix, ``public`` allows any http(s) URL.
``NetworkGate.session`` is the only ``aiohttp.ClientSession`` factory in the project; ``get``
and ``download`` (implemented in ``fetch.py``) always call ``decide`` first, and again on
every redirect hop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from . import fetch
from .errors import NetworkBlocked, OfflineModeEnabled
from .fetch import GateResponse

__all__ = ["NetworkMode", "NetworkPolicy", "NetworkGate", "GateResponse", "PURPOSES", "redact_url"]

PURPOSES = ("channel", "registry", "git", "pip", "model", "other")

_HTTP_SCHEMES = ("http", "https")
_GIT_ONLY_SCHEMES = ("ssh", "git", "git+ssh", "ssh+git")
# git's remote-helper syntax ("ext::sh -c ...", "fd::3") runs commands: never let it through.
_HELPER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
# scp-like git address: "[user@]host:path" (a colon before the first slash, not a drive letter).
_SCP_RE = re.compile(r"^(?:[^@/\s]+@)?[A-Za-z0-9.-]{2,}:(?!//)")
_DEFAULT_LOGGER = "offline_manager.network"


class NetworkMode(str, enum.Enum):
    """``network_mode`` in config.ini."""

    PUBLIC = "public"
    PRIVATE = "private"
    OFFLINE = "offline"


@dataclass(frozen=True)
class NetworkPolicy:
    """Everything the gate needs to decide on a URL and to build HTTP sessions."""

    mode: NetworkMode = NetworkMode.PUBLIC
    private_mirrors: tuple[str, ...] = ()  # URL prefixes allowed in private mode
    allowed_prefixes: tuple[str, ...] = ()  # channels, allowed_channels, registry base (private mode)
    mirror_map: tuple[tuple[str, str], ...] = ()  # ordered (prefix, replacement), applied before deciding
    connect_timeout: float = 5.0
    total_timeout: float = 30.0
    bypass_ssl: bool = False
    user_agent: str = "comfyui-offline-manager"


def redact_url(url: str) -> str:
    """The URL with any user:password part hidden, for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))


def _normalise(url: str) -> str:
    """Lower-case scheme and host so prefix checks are not fooled by case."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    netloc, sep, path = rest.partition("/")
    return f"{scheme.lower()}://{netloc.lower()}{sep}{path}"


def _under_prefix(url: str, prefix: str) -> bool:
    """True when ``url`` equals ``prefix`` or continues it at a path boundary.

    ``https://mirror.corp`` must not admit ``https://mirror.corp.evil.com/`` nor ``:8080``.
    """
    if not prefix:
        return False
    u, p = _normalise(url), _normalise(prefix)
    if not u.startswith(p):
        return False
    if len(u) == len(p) or p.endswith(("/", "?", "#", "=", "&")):
        return True
    return u[len(p)] in "/?#"


class NetworkGate:
    """Decides on every URL and builds every HTTP session. One per ``Manager``; no globals."""

    def __init__(self, policy: NetworkPolicy, *, logger: logging.Logger | None = None):
        self._policy = policy
        self.log = logger or logging.getLogger(_DEFAULT_LOGGER)
        self._ssl_warned = False

    @property
    def policy(self) -> NetworkPolicy:
        return self._policy

    def set_policy(self, policy: NetworkPolicy) -> None:
        """Adopt new settings (a saved network_mode); sessions built afterwards follow them."""
        self._policy = policy

    @property
    def mode(self) -> NetworkMode:
        return NetworkMode(self._policy.mode)

    @property
    def offline(self) -> bool:
        return self.mode is NetworkMode.OFFLINE

    # -- deciding -----------------------------------------------------------------------
    @staticmethod
    def is_local(url: str) -> bool:
        """``file://`` URLs and plain filesystem paths (absolute, relative, Windows drive)."""
        text = str(url).strip()
        if text.lower().startswith("file:"):
            return True
        if "://" in text or _HELPER_RE.match(text):
            return False
        if re.match(r"^[A-Za-z]:[\\/]", text):  # C:\models or C:/models
            return True
        return not _SCP_RE.match(text)

    @staticmethod
    def local_path(url: str) -> Path:
        """The filesystem path of a local URL (``file:///a%20b`` -> ``/a b``)."""
        text = str(url).strip()
        if text.lower().startswith("file:"):
            parts = urllib.parse.urlsplit(text)
            if parts.netloc not in ("", "localhost"):
                raise NetworkBlocked(
                    f"file URL {text!r} names a remote host {parts.netloc!r}",
                    hint="Use file:///absolute/path (three slashes) for a local folder.",
                )
            return Path(urllib.request.url2pathname(parts.path))
        return Path(text).expanduser()

    def rewrite(self, url: str) -> str:
        """Apply the first matching ``mirror_map`` rule (prefix replaced, rest kept)."""
        for prefix, replacement in self._policy.mirror_map:
            if _under_prefix(url, prefix):
                rest = url[len(prefix) :]
                if prefix.endswith("/") and not replacement.endswith("/"):
                    replacement += "/"
                if replacement.endswith("/") and rest.startswith("/"):
                    rest = rest[1:]
                return replacement + rest
        return url

    def allowed_prefixes(self) -> tuple[str, ...]:
        return tuple(self._policy.private_mirrors) + tuple(self._policy.allowed_prefixes)

    def decide(self, url: str, purpose: str = "other") -> str:
        """Return the URL to use (mirror map applied) or raise before any socket is opened.

        Raises ``OfflineModeEnabled`` in offline mode and ``NetworkBlocked`` for a URL outside
        the private mirrors or with an unsupported scheme. Local files are always allowed.
        """
        original = str(url).strip()
        if not original:
            raise NetworkBlocked(
                f"empty URL for {purpose}",
                hint="Check the source of this URL (channels.list, the catalog entry or the command line).",
            )
        final = self.rewrite(original)
        if final != original:
            self.log.debug("mirror_map: %s -> %s", redact_url(original), redact_url(final))
        if self.is_local(final):
            return final
        self._check_scheme(final, purpose)
        mode = self.mode
        shown = redact_url(final)
        if mode is NetworkMode.OFFLINE:
            self.log.info("offline mode refused %s URL %s", purpose, shown)
            raise OfflineModeEnabled(
                f"offline mode: refused to reach {shown} ({purpose})",
                details={"url": shown, "purpose": purpose, "network_mode": mode.value},
            )
        if mode is NetworkMode.PRIVATE:
            prefixes = self.allowed_prefixes()
            if not any(_under_prefix(final, p) for p in prefixes):
                self.log.info("private mode refused %s URL %s", purpose, shown)
                raise NetworkBlocked(
                    f"private mode: {shown} ({purpose}) is not under an allowed mirror",
                    hint="network_mode is 'private': add the URL prefix to private_mirrors in config.ini, "
                    "or rewrite this host onto an allowed mirror (mirror_map)"
                    + (f" (allowed now: {', '.join(prefixes)})" if prefixes else " (none configured)"),
                    details={"url": shown, "purpose": purpose, "network_mode": mode.value},
                )
        return final

    def _check_scheme(self, url: str, purpose: str) -> None:
        shown = redact_url(url)
        if _HELPER_RE.match(url):
            raise NetworkBlocked(
                f"refused {shown!r}: git remote helpers ('name::') are not allowed",
                hint="Use an https:// (or, for git, ssh://) URL.",
                details={"url": shown, "purpose": purpose},
            )
        if "://" not in url:  # scp-like "git@host:owner/repo"
            if purpose == "git":
                return
            raise NetworkBlocked(
                f"refused {shown!r}: not an http(s) URL",
                hint="Use an https:// URL.",
                details={"url": shown, "purpose": purpose},
            )
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in _HTTP_SCHEMES or (purpose == "git" and scheme in _GIT_ONLY_SCHEMES):
            if not parts.hostname:
                raise NetworkBlocked(
                    f"refused {shown!r}: the URL has no host", hint="Check the URL for typos.", details={"url": shown}
                )
            return
        raise NetworkBlocked(
            f"refused {shown!r}: scheme {scheme + '://'!r} is not supported for {purpose}",
            hint="Use https:// (or http://); ssh:// is accepted for git remotes only. A typo such as "
            "'htps://' in a catalog entry also lands here.",
            details={"url": shown, "purpose": purpose, "scheme": scheme},
        )

    # -- sessions -----------------------------------------------------------------------
    def session(self, *, streaming: bool = False) -> aiohttp.ClientSession:
        """A new ``aiohttp.ClientSession`` configured by the policy (must run inside a loop).

        ``streaming=True`` drops the total timeout (a multi-GB model download must not be cut
        at 30 s) and uses ``total_timeout`` as the read-stall limit instead.
        """
        pol = self._policy
        if streaming:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=pol.connect_timeout, sock_read=pol.total_timeout)
        else:
            timeout = aiohttp.ClientTimeout(total=pol.total_timeout, sock_connect=pol.connect_timeout)
        connector = None
        if pol.bypass_ssl:
            if not self._ssl_warned:
                self._ssl_warned = True
                self.log.warning(
                    "bypass_ssl is on: TLS certificates are NOT verified for any "
                    "request (set bypass_ssl = False in config.ini to verify them)"
                )
            connector = aiohttp.TCPConnector(ssl=False)
        return aiohttp.ClientSession(
            timeout=timeout, connector=connector, trust_env=True, headers={"User-Agent": pol.user_agent}
        )

    # -- requests (see fetch.py) ----------------------------------------------------------
    async def get(
        self,
        url: str,
        *,
        purpose: str = "other",
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> GateResponse:
        """Gated GET. ``file://`` is read from disk; status >= 400 raises ``HttpStatusError``
        (304 is returned); connection failures raise ``NetworkUnreachable``. Pass ``session``
        to reuse connections across many calls (paging)."""
        return await fetch.gated_get(self, url, purpose=purpose, headers=headers, max_bytes=max_bytes, session=session)

    async def download(
        self,
        url: str,
        dest: Path,
        *,
        purpose: str = "model",
        expected_size: int | None = None,
        sha256: str | None = None,
        resume: bool = True,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Path:
        """Stream ``url`` to ``dest`` via ``dest.name + '.part'``, resuming with Range when the
        server supports it; size and sha256 are checked before the rename into place."""
        return await fetch.download(
            self,
            url,
            Path(dest),
            purpose=purpose,
            expected_size=expected_size,
            sha256=sha256,
            resume=resume,
            progress=progress,
        )


_T = TypeVar("_T")


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` in a fresh event loop; a RuntimeError inside a running loop (use await).

    The one bridge from sync code (task workers, the CLI) into this async network layer; no
    per-method ``*_sync`` twins (docs/decisions.md)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError("called a sync network helper inside a running event loop; await the async API")
