"""Who may drive the Manager: the request guard every route passes before its handler.

A browser page of another site is told apart by what the browser itself sends and the page
cannot forge: ``Sec-Fetch-Site``, ``Origin`` and ``Host``. The ``Content-Type`` is not used:
ComfyUI's ``api.fetchApi`` posts JSON as ``text/plain`` and ``urllib`` labels every body as a
form, so refusing those types broke real clients while a hostile page is caught by the
headers anyway (docs/api.md, "Request guards").

- **Host** (every request, reads included): on a loopback listener only loopback names and
  addresses, the listen address itself and ``allowed_hosts`` are accepted. A page that
  reaches 127.0.0.1 through DNS rebinding still sends its own name as Host. On a non-loopback
  listener a *browser* request (one carrying ``Origin`` or ``Sec-Fetch-Site``) must also name
  an IP address, this machine's own name or an ``allowed_hosts`` entry: a rebinding page in a
  browser on a trusted LAN machine would otherwise act with that machine's address. Scripts
  (no such headers) may use any name there. A Host that is not ``name[:port]`` is refused.
- **Cross-site** (state-changing requests): ``Sec-Fetch-Site: cross-site`` or ``same-site``
  (another port or sub-domain of the same site: on loopback every other local program's page
  is "same-site"), ``Origin: null``, or an ``Origin`` that names neither this Host nor an
  ``allowed_hosts`` entry is refused. A request with neither header (curl, urllib, cm-cli)
  is a script on this machine or the LAN and is left to the security policy.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from ..errors import CrossOriginDenied, HostNotAllowed
from ..security import is_loopback_listen

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# RFC 7230 Host: a registered name or IPv4 address, or an IPv6 literal in brackets, then :port
_HOST_SYNTAX = re.compile(r"^(?:\[[0-9a-fA-F:.]+(?:%[0-9A-Za-z._~-]+)?\]|[0-9A-Za-z._-]+)(?::[0-9]{1,5})?$")


def split_host(value: str, scheme: str = "http") -> tuple[str, int | None]:
    """``"[::1]:8188"`` -> ``("::1", 8188)``; lower-cased, trailing dot dropped, default port None.

    Raises ``ValueError`` for text that is not a host[:port] (a port that is not a number).
    """
    text = value.strip().lower()
    if "://" in text:
        scheme, text = text.split("://", 1)
    text = text.split("/", 1)[0].rsplit("@", 1)[-1]
    port: int | None = None
    if text.startswith("["):
        name, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:]:
            port = int(rest[1:])
    elif text.count(":") == 1:
        name, _, digits = text.partition(":")
        port = int(digits) if digits else None
    else:
        name = text  # a bare IPv6 address or a plain name
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    return name.rstrip("."), port


def is_loopback_host(name: str) -> bool:
    """A host name every browser resolves to this machine (never through DNS)."""
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or bool(mapped and mapped.is_loopback)


def is_address(name: str) -> bool:
    """An IP literal in its usual spelling (a browser normalises ``2130706433`` before sending it)."""
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def own_names() -> frozenset[str]:
    """This machine's own host name, bare and with ``.local`` (mDNS); no DNS lookup is made."""
    try:
        name = socket.gethostname().strip().lower().rstrip(".")
    except OSError:
        return frozenset()
    if not name:
        return frozenset()
    short = name.split(".", 1)[0]
    return frozenset({name, short, short + ".local"})


def _from_browser(request: web.Request) -> bool:
    """A browser sends ``Sec-Fetch-Site`` (modern) or ``Origin`` (every cross-origin or unsafe request)."""
    return "Sec-Fetch-Site" in request.headers or "Origin" in request.headers


def _listed(name: str, port: int | None, entries: Sequence[str]) -> bool:
    """``name[:port]`` is one of ``entries`` (an entry without a port matches any port)."""
    for entry in entries:
        try:
            e_name, e_port = split_host(entry)
        except ValueError:
            continue
        if e_name == name and (e_port is None or e_port == port):
            return True
    return False


@dataclass(frozen=True)
class RequestGuard:
    """The guard of one door. ``listen`` is the address the server listens on ("" = unknown:
    no Host check); ``allowed_hosts`` returns the admin's extra names (read on use, so an
    edited config.ini applies after the reload that re-reads it)."""

    listen: str = ""
    allowed_hosts: Callable[[], Sequence[str]] = field(default=lambda: ())

    def check(self, request: web.Request, *, changes: bool) -> None:
        """Raise ``host_not_allowed`` or ``cross_origin_denied`` (403); return when accepted."""
        self.check_host(request)
        if changes:
            self.check_cross_site(request)

    def _extra(self) -> Sequence[str]:
        try:
            return tuple(self.allowed_hosts())
        except Exception:  # a broken config.ini must not open the door: no extras
            return ()

    def check_host(self, request: web.Request) -> None:
        host = request.headers.get("Host")
        if host is None or not self.listen:
            return  # HTTP/1.0 scripts send no Host; an unknown listener cannot be judged
        loopback = is_loopback_listen(self.listen)
        if not loopback and not _from_browser(request):
            return  # a script on the LAN may use any name; the policy decides what it may do
        name, port = "", None
        if _HOST_SYNTAX.match(host):
            try:
                name, port = split_host(host, request.scheme)
            except ValueError:
                pass
        listen_names = {p.strip().strip("[]").lower() for p in self.listen.split(",")}
        if name and (
            is_loopback_host(name)
            or name in listen_names
            or _listed(name, port, self._extra())
            or (not loopback and (is_address(name) or name in own_names()))
        ):
            return
        if loopback:
            raise HostNotAllowed(
                f"refused a request for host {host!r}: this server listens on {self.listen} and answers only "
                "loopback names (a page reaching it through another name may be a DNS-rebinding attack)",
                details={"host": host, "listen": self.listen},
            )
        raise HostNotAllowed(
            f"refused a browser request for host {host!r}: this server listens on {self.listen} and answers "
            "pages only under an IP address, this machine's name or an allowed_hosts entry (a page reaching "
            "it through another name may be a DNS-rebinding attack)",
            hint="Open the Manager as http://<this machine's address>:<port>/, or add the name you use to "
            "allowed_hosts in the [security] section of config.ini and restart the server.",
            details={"host": host, "listen": self.listen},
        )

    def check_cross_site(self, request: web.Request) -> None:
        site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
        if site in ("cross-site", "same-site"):
            raise CrossOriginDenied(
                "refused a state-changing request sent by a page of another "
                f"{'site' if site == 'cross-site' else 'origin'}"
                f" (Sec-Fetch-Site: {site})",
                details={"sec_fetch_site": site, "origin": request.headers.get("Origin")},
            )
        origin = request.headers.get("Origin")
        if origin is None:
            return  # not a browser page (scripts, the CLI): the policy decides
        host = request.headers.get("Host", "")
        try:
            o_scheme = origin.split("://", 1)[0].lower() if "://" in origin else ""
            o_name, o_port = split_host(origin)
            h_name, h_port = split_host(host, o_scheme or request.scheme) if host else ("", None)
        except ValueError:
            o_name = h_name = ""
            o_port = h_port = None
        same = bool(o_name) and "://" in origin and (o_name, o_port) == (h_name, h_port)
        if not same and not (o_name and _listed(o_name, o_port, self._extra())):
            raise CrossOriginDenied(
                f"refused a state-changing request from origin {origin!r} to host {host!r}",
                details={"origin": origin, "host": host},
            )


def changes_state(
    method: str, operation: str, read: str, *, setter: str = "", request: web.Request | None = None
) -> bool:
    """Whether a request may change something: any unsafe method, a GET route whose operation is
    not a read (the classic UI calls queue reset/start with GET), or a GET carrying the route's
    setter query parameter (classic ``GET /manager/share_option?value=``)."""
    if method not in SAFE_METHODS:
        return True
    if setter:
        return request is not None and setter in request.query
    return operation != read
