"""Who may drive the Manager: the request guard every route passes before its handler.

A browser page of another site is told apart by what the browser itself sends and the page
cannot forge: ``Sec-Fetch-Site``, ``Origin`` and ``Host``. The ``Content-Type`` is not used:
ComfyUI's ``api.fetchApi`` posts JSON as ``text/plain`` and ``urllib`` labels every body as a
form, so refusing those types broke real clients while a hostile page is caught by the
headers anyway (docs/api.md, "Request guards").

- **Host** (every request, reads included): on a loopback listener only loopback names and
  addresses, the listen address itself and ``allowed_hosts`` are accepted. A page that
  reaches 127.0.0.1 through DNS rebinding still sends its own name as Host.
- **Cross-site** (state-changing requests): ``Sec-Fetch-Site: cross-site`` or ``same-site``
  (another port or sub-domain of the same site: on loopback every other local program's page
  is "same-site"), ``Origin: null``, or an ``Origin`` that names neither this Host nor an
  ``allowed_hosts`` entry is refused. A request with neither header (curl, urllib, cm-cli)
  is a script on this machine or the LAN and is left to the security policy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from ..errors import CrossOriginDenied, HostNotAllowed
from ..security import is_loopback_listen

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


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
        if host is None or not self.listen or not is_loopback_listen(self.listen):
            return  # HTTP/1.0 scripts send no Host; LAN listeners have any name
        try:
            name, port = split_host(host, request.scheme)
        except ValueError:
            name, port = "", None
        listen_names = {p.strip().strip("[]").lower() for p in self.listen.split(",")}
        if name and (is_loopback_host(name) or name in listen_names or _listed(name, port, self._extra())):
            return
        raise HostNotAllowed(
            f"refused a request for host {host!r}: this server listens on {self.listen} and answers only "
            "loopback names (a page reaching it through another name may be a DNS-rebinding attack)",
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
