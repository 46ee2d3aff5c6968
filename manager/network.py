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
import dataclasses
import enum
import fnmatch
import ipaddress
import logging
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from . import fetch
from .errors import HttpsRequired, NetworkBlocked, OfflineModeEnabled, RedirectRefused
from .fetch import GateResponse
from .mirrors import mirror_rules, rewrite_url
from .mirrors import under_prefix as _under_prefix

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "NetworkMode",
    "NetworkPolicy",
    "NetworkGate",
    "GateResponse",
    "PURPOSES",
    "HTTPS_PURPOSES",
    "KNOWN_DOWNLOAD_HOSTS",
    "redact_url",
    "with_download_rules",
]

PURPOSES = ("channel", "registry", "git", "pip", "model", "other")
# What public mode fetches over https only (models, registry archives, channel files, pack
# archives and single files by URL); git and pip keep their own tools' rules.
HTTPS_PURPOSES = frozenset({"channel", "registry", "model", "other"})
# Where the public sources of the shipped channel and the Comfy Registry send their downloads
# (CDNs). A redirect hop may land on these, on the first URL's own host, or on a host of the
# configuration (see ``with_download_rules``); anything else is ``redirect_refused``.
KNOWN_DOWNLOAD_HOSTS = (
    "huggingface.co",
    "*.huggingface.co",
    "*.hf.co",
    "github.com",
    "codeload.github.com",
    "*.githubusercontent.com",
    "comfy.org",
    "*.comfy.org",
    "storage.googleapis.com",
    "civitai.com",
    "*.civitai.com",
    "civitai-delivery-worker-prod.*.r2.cloudflarestorage.com",
)

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
    # public mode: hosts reachable over plain http for HTTPS_PURPOSES (allowed_http_hosts)
    allowed_http_hosts: tuple[str, ...] = ()
    # public mode: plain http channels are allowed (http_channel_enabled)
    http_channels: bool = False
    # public mode: hosts a redirect hop may land on besides the first URL's host and
    # KNOWN_DOWNLOAD_HOSTS (allowed_download_hosts plus the hosts of configured URLs)
    redirect_hosts: tuple[str, ...] = ()
    config_file: str = ""  # named in refusals: where to change the settings


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


def _host_port(url: str) -> tuple[str, int | None]:
    try:
        parts = urllib.parse.urlsplit(url)
        return (parts.hostname or "").lower().rstrip("."), parts.port
    except ValueError:
        return "", None


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_matches(host: str, port: int | None, pattern: str) -> bool:
    """``pattern`` is a host name, ``name:port``, ``[v6]:port`` or a shell pattern such as
    ``*.example.com`` (which does not cover ``example.com`` itself); case-insensitive."""
    pat = pattern.strip().lower().rstrip(".")
    if not pat:
        return False
    want_port: int | None = None
    if pat.startswith("["):  # [::1]:8080 or [::1]
        inner, _, rest = pat[1:].partition("]")
        pat = inner
        if rest.startswith(":") and rest[1:].isdigit():
            want_port = int(rest[1:])
    elif pat.count(":") == 1:
        name, _, p = pat.partition(":")
        if p.isdigit():
            pat, want_port = name, int(p)
    if want_port is not None and want_port != port:
        return False
    if any(c in pat for c in "*?["):
        return fnmatch.fnmatchcase(host, pat)
    return host == pat


def _url_hosts(urls: Any) -> list[str]:
    out: list[str] = []
    for url in urls:
        text = str(url or "").strip()
        if text.lower().startswith(("http://", "https://")):
            host, _ = _host_port(text)
            if host and host not in out:
                out.append(host)
    return out


def with_download_rules(policy: NetworkPolicy, config: Config) -> NetworkPolicy:
    """``policy`` plus the mirror map and download rules of ``config``: the ``[mirrors]``
    rewrites (``manager/mirrors.py``; their http(s) targets are allowed in private mode: the
    admin named them), ``allowed_http_hosts`` (and the hosts of http:// URLs the admin
    configured), ``http_channel_enabled``, and the redirect allow-list (``allowed_download_hosts``
    and the hosts of ``channel_url``, ``registry_url``, ``allowed_channels``, ``private_mirrors``,
    ``model_store``, ``pip_index_url`` and the mirror map's targets)."""
    rules = tuple(dict.fromkeys(policy.mirror_map + mirror_rules(config)))
    targets = [t for _, t in rules if t.lower().startswith(("http://", "https://"))]
    allowed = tuple(dict.fromkeys(policy.allowed_prefixes + tuple(targets)))
    policy = dataclasses.replace(policy, mirror_map=rules, allowed_prefixes=allowed)
    urls: list[Any] = [config["channel_url"], config["registry_url"], config["pip_index_url"]]
    for key in ("allowed_channels", "private_mirrors", "model_store"):
        urls.extend(config[key])
    urls.extend(target for _, target in policy.mirror_map)
    hosts = list(config["allowed_download_hosts"])
    hosts += [h for h in _url_hosts(urls) if h not in hosts]
    # an http:// URL the admin wrote into the config (a store, a mirror) is an allowed http host
    plain = list(config["allowed_http_hosts"])
    plain += [h for h in _url_hosts(u for u in urls if str(u).lower().startswith("http://")) if h not in plain]
    path = config.path
    return dataclasses.replace(
        policy,
        allowed_http_hosts=tuple(plain),
        http_channels=bool(config["http_channel_enabled"]),
        redirect_hosts=tuple(hosts),
        config_file=str(path) if path is not None else "",
    )


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
        """Apply the first matching mirror rule (prefix replaced, rest kept; ``manager/mirrors.py``)."""
        return rewrite_url(url, self._policy.mirror_map)

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
            self.log.debug("mirror rewrite: %s -> %s", redact_url(original), redact_url(final))
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
                    "or rewrite this host onto your mirror in the [mirrors] section (github, raw_github, "
                    "registry, pypi, huggingface, or a 'FROM -> TO' line in rewrites; docs/network.md)"
                    + (f" (allowed now: {', '.join(prefixes)})" if prefixes else " (none configured)"),
                    details={"url": shown, "purpose": purpose, "network_mode": mode.value},
                )
        elif final == original:  # a [mirrors] target is the admin's own choice
            self._check_https(final, purpose)
        return final

    def _in_config(self) -> str:
        where = self._policy.config_file
        return f" in {where}" if where else " in config.ini"

    def _plain_http_allowed(self, url: str, purpose: str) -> bool:
        """True unless ``url`` is plain http for an https-only purpose on a host nobody allowed."""
        if not url.lower().startswith("http://") or purpose not in HTTPS_PURPOSES:
            return True
        host, port = _host_port(url)
        if _is_loopback(host):  # never leaves the machine: no path to tamper with
            return True
        if purpose == "channel" and self._policy.http_channels:
            return True
        return any(host_matches(host, port, p) for p in self._policy.allowed_http_hosts)

    def _check_https(self, url: str, purpose: str) -> None:
        if self._plain_http_allowed(url, purpose):
            return
        host, port = _host_port(url)
        shown = redact_url(url)
        named = f"{host}:{port}" if port else host
        self.log.info("public mode refused plain http %s URL %s", purpose, shown)
        raise HttpsRequired(
            f"refused plain http URL {shown} ({purpose}): public mode fetches models, registry "
            f"archives, pack archives and channel files over https only, and host {named!r} is not "
            "allowed for http",
            hint=f"Use the https:// URL, or add {named} to allowed_http_hosts ([security]){self._in_config()} "
            "if this host has no https (anyone on the path can change what it sends).",
            details={"url": shown, "host": named, "purpose": purpose, "setting": "allowed_http_hosts"},
        )

    def redirect_host_allowed(self, first_url: str, url: str) -> bool:
        """Public mode: may a redirect chain that started at ``first_url`` land on ``url``?"""
        host, port = _host_port(url)
        if host and host == _host_port(first_url)[0]:
            return True
        patterns = (*self._policy.redirect_hosts, *KNOWN_DOWNLOAD_HOSTS)
        return any(host_matches(host, port, p) for p in patterns)

    def decide_redirect(self, first_url: str, previous: str, target: str, purpose: str) -> str:
        """Decide one redirect hop from ``previous`` to ``target`` of a chain that started at
        ``first_url``: http(s) only, no https -> http downgrade (unless allowed), the mode's
        rules, and in public mode a host on the allow-list. Raises ``RedirectRefused``."""
        shown = redact_url(target)
        base = {"url": shown, "from": redact_url(previous), "purpose": purpose}
        try:
            scheme = urllib.parse.urlsplit(target).scheme.lower()
        except ValueError:
            scheme = ""
        if self.is_local(target) or scheme not in _HTTP_SCHEMES:
            raise RedirectRefused(
                f"refused a redirect from {redact_url(previous)} to {shown!r}: only http(s) redirects are followed",
                hint="The server (or mirror) redirected somewhere unsafe (a local file or another scheme); "
                "check its setup. No setting allows this.",
                details={**base, "reason": "scheme"},
            )
        if self.mode is NetworkMode.PUBLIC:
            host, port = _host_port(target)
            named = f"{host}:{port}" if port else host
            if (
                scheme == "http"
                and previous.lower().startswith("https://")
                and not any(host_matches(host, port, p) for p in self._policy.allowed_http_hosts)
            ):
                raise RedirectRefused(
                    f"refused a redirect from https to plain http {shown} ({purpose})",
                    hint=f"Fix the server or mirror, or add {named} to allowed_http_hosts ([security])"
                    f"{self._in_config()} if it has no https.",
                    details={**base, "reason": "downgrade", "host": named, "setting": "allowed_http_hosts"},
                )
        try:
            final = self.decide(target, purpose)
        except OfflineModeEnabled:
            raise
        except RedirectRefused:
            raise
        except HttpsRequired as exc:
            raise RedirectRefused(
                f"refused a redirect to plain http {shown} ({purpose})",
                hint=exc.hint,
                details={**base, **exc.details, "reason": "downgrade"},
            ) from exc
        except NetworkBlocked as exc:
            reason = "host_not_allowed" if self.mode is NetworkMode.PRIVATE else "scheme"
            raise RedirectRefused(
                f"refused a redirect from {redact_url(previous)} to {shown}: {exc.message}",
                hint=exc.hint,
                details={**base, **exc.details, "reason": reason, "setting": "private_mirrors"},
            ) from exc
        if self.mode is NetworkMode.PUBLIC and not self.redirect_host_allowed(first_url, final):
            host, port = _host_port(final)
            named = f"{host}:{port}" if port else host
            self.log.info("refused a redirect to %s (host not on the download allow-list)", shown)
            raise RedirectRefused(
                f"refused a redirect from {redact_url(previous)} to host {named!r}: not on the download allow-list",
                hint=f"If {host} is a download host you trust, add it to allowed_download_hosts ([security])"
                f"{self._in_config()}; the list already holds the first URL's host, the configured channel, "
                "registry, store and mirror hosts, and the known CDNs.",
                details={**base, "reason": "host_not_allowed", "host": named, "setting": "allowed_download_hosts"},
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
