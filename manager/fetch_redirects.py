"""Error translation and redirect handling for ``fetch``: every hop of a request is decided by the
gate before it is requested, and aiohttp failures become coded errors whose hint names
``network_mode``, ``http_timeout``, the proxy variables or ``bypass_ssl``. Re-exported by
``manager.fetch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from .errors import DownloadIncomplete, HttpStatusError, ManagerError, NetworkUnreachable, RedirectRefused

if TYPE_CHECKING:  # network.py imports fetch, which imports this module; only the type is needed here
    from .network import NetworkGate

MAX_REDIRECTS = 10
_REDIRECTS = (301, 302, 303, 307, 308)


# -- error translation ------------------------------------------------------------------
def _unreachable(gate: NetworkGate, url: str, purpose: str, exc: BaseException) -> ManagerError:
    from .network import redact_url

    shown = redact_url(url)
    pol = gate.policy
    if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError)):
        return NetworkUnreachable(
            f"TLS failure reaching {shown} ({purpose}): {exc}",
            hint="The certificate is not trusted (a company proxy re-signing TLS?). Point SSL_CERT_FILE "
            "at your CA bundle, or set bypass_ssl = True in config.ini (insecure).",
            details={"url": shown, "purpose": purpose, "reason": "ssl"},
        )
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        reason, what = "timeout", (f"timed out (connect {pol.connect_timeout:g} s, total {pol.total_timeout:g} s)")
    else:
        reason, what = "connect", f"failed: {exc.__class__.__name__}: {exc}"
    return NetworkUnreachable(
        f"could not reach {shown} ({purpose}): {what}",
        hint="Check the connection and the proxy (HTTPS_PROXY / NO_PROXY are honoured); raise "
        "http_timeout / http_connect_timeout in config.ini for a slow link; or set network_mode = offline (or private "
        "with a reachable mirror) to work from the cache.",
        details={"url": shown, "purpose": purpose, "reason": reason, "network_mode": gate.mode.value},
    )


def _status_error(url: str, purpose: str, status: int, reason: str = "") -> HttpStatusError:
    from .network import redact_url

    shown = redact_url(url)
    if status == 404:
        hint = "Nothing at this URL: check the channel or mirror URL (channels.list, [mirrors] in config.ini)."
    elif status == 407:
        hint = "The proxy wants credentials: put them in HTTPS_PROXY (http://user:pass@proxy:port)."
    elif status in (401, 403):
        hint = "The server refused access: check the mirror's permissions, the proxy, or the token."
    elif status == 429:
        hint = "Rate limited: wait a while and retry; cached data is used meanwhile."
    elif status >= 500:
        hint = "The server failed: retry later; cached data is used meanwhile when there is some."
    else:
        hint = "Check the URL (channels.list, [mirrors] in config.ini)."
    return HttpStatusError(
        f"HTTP {status}{' ' + reason if reason else ''} from {shown} ({purpose})",
        hint=hint,
        details={"url": shown, "status": status, "purpose": purpose},
    )


@contextlib.asynccontextmanager
async def _open(
    gate: NetworkGate,
    sess: aiohttp.ClientSession,
    url: str,
    purpose: str,
    headers: Mapping[str, str] | None,
    read_bufsize: int | None = None,
    method: str = "GET",
) -> AsyncIterator[tuple[str, aiohttp.ClientResponse]]:
    """GET following redirects by hand: aiohttp never follows one itself, and each hop is decided
    by the gate (``decide_redirect``: scheme, downgrade, mode, host allow-list) before it is
    requested; a loop or more than ``MAX_REDIRECTS`` hops is ``redirect_refused``. aiohttp
    errors, also those raised while the caller reads the body, become coded errors."""
    from .network import redact_url

    current = url
    seen = {url}
    try:
        for _ in range(MAX_REDIRECTS + 1):
            extra: dict[str, Any] = {"read_bufsize": read_bufsize} if read_bufsize else {}
            resp = await sess.request(method, current, headers=dict(headers or {}), allow_redirects=False, **extra)
            location = resp.headers.get("Location")
            if resp.status in _REDIRECTS and location:
                resp.release()
                target = urllib.parse.urljoin(current, location)
                if target in seen:
                    raise RedirectRefused(
                        f"redirect loop: {redact_url(current)} leads back to {redact_url(target)}",
                        hint="The server or mirror redirects in a circle; check its configuration.",
                        details={"url": redact_url(target), "from": redact_url(current), "reason": "loop"},
                    )
                current = gate.decide_redirect(url, current, target, purpose)
                seen.update((target, current))
                continue
            try:
                yield current, resp
            finally:
                resp.release()
            return
        raise RedirectRefused(
            f"more than {MAX_REDIRECTS} redirects starting at {redact_url(url)}",
            hint="The server or mirror redirects without end; check its configuration.",
            details={"url": redact_url(url), "reason": "too_many", "max": MAX_REDIRECTS},
        )
    except ManagerError:
        raise
    except aiohttp.ClientPayloadError as exc:
        raise DownloadIncomplete(
            f"transfer from {current} was cut short: {exc}",
            hint="The connection dropped; run the command again (downloads resume).",
            details={"url": current, "purpose": purpose},
        ) from exc
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:  # not OSError: disk errors stay disk errors
        raise _unreachable(gate, current, purpose, exc) from exc


def _lower_headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in resp.headers.items():
        k = key.lower()
        out[k] = f"{out[k]}, {value}" if k in out else value
    return out


def _declared_length(resp: aiohttp.ClientResponse) -> int | None:
    """Content-Length when it describes the bytes we read (not a compressed size)."""
    if resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
        return None
    try:
        return int(resp.headers["Content-Length"])
    except (KeyError, ValueError):
        return None
