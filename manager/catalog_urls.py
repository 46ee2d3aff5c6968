"""URLs in channel files: repair of obvious typos, and the lookup key that makes two spellings of
one repository URL meet (``normalize_url``); also the reduced pack name used for exact-name ranking.

Used by ``catalog_parse`` (re-exported there) while it reads the channel files.
"""

from __future__ import annotations

import re
import sys
from typing import NamedTuple

__all__ = ["UrlInfo", "name_core", "normalize_url", "url_info"]

_GITHUB_HOSTS = frozenset(
    {
        "github.com",
        "gist.github.com",
        "raw.githubusercontent.com",
        "gist.githubusercontent.com",
        "objects.githubusercontent.com",
        "api.github.com",
    }
)
# Hosts whose paths are case-insensitive: their URLs are lower-cased entirely for lookups.
_CASELESS_HOSTS = frozenset({"github.com", "gist.github.com"})
_SCHEME_RE = re.compile(r"^([A-Za-z]{2,8})(:?)(/{0,3})(?=[^/])")
_SSH_RE = re.compile(r"^(?:ssh://)?git@([^:/]+)[:/](.+)$")
_GOOD_URL = re.compile(r"^(https?)://([A-Za-z0-9._-]+)(:\d{1,5})?(/[^\s?#]*)?(?:\?([^\s#]*))?(?:#\S*)?$")
_SEPARATORS = re.compile(r"[\s_.\-]+")


# --- URLs ------------------------------------------------------------------------------
class UrlInfo(NamedTuple):
    """A URL after repair, with its lookup key. ``problem`` is '' when it was fine as written."""

    url: str
    problem: str = ""  # '' | url_repaired | invalid_url | suspicious_url
    usable: bool = True  # False: not an http(s) URL even after repair
    key: str = ""  # normalize_url() of it
    host: str = ""  # lower-cased host
    path: str = ""


def _host_problem(host: str) -> str:
    if not host or "." not in host:
        return "invalid_url"
    if "github" in host and host not in _GITHUB_HOSTS and not host.endswith((".github.io", ".githubusercontent.com")):
        return "suspicious_url"  # github.fcom and friends: kept, but reported
    return ""


def _from_match(url: str, m: re.Match[str], problem: str) -> UrlInfo:
    host = m.group(2).lower()
    host_problem = _host_problem(host)
    if host_problem == "invalid_url":
        return UrlInfo(url, "invalid_url", False, url.strip().lower(), host)
    khost = host[4:] if host.startswith("www.") else host
    if m.group(3):
        khost += m.group(3)
    raw_path = m.group(4) or ""
    path = raw_path.rstrip("/")
    if path[-4:].lower() == ".git":
        path = path[:-4].rstrip("/")
    if khost in _CASELESS_HOSTS:
        key = f"https://{khost}{path}".lower()
    else:
        query = m.group(5)
        key = f"https://{khost}{path}" + (f"?{query}" if query else "")
    # interned: the same repository's key is kept by the pack, its stats and its node-map entry
    return UrlInfo(url, problem or host_problem, True, sys.intern(key), host, raw_path)


def url_info(raw: str) -> UrlInfo:
    """Repair obvious scheme typos (``htps://``, ``ttps://``, ``https:/``, a missing scheme, SSH
    remotes) and flag the rest; one regex match in the common case."""
    m = _GOOD_URL.match(raw)
    if m:  # fast path: the form of nearly every URL in the real DB
        return _from_match(raw, m, "")
    url = raw.strip()
    problem = "url_repaired" if url != raw else ""
    ssh = _SSH_RE.match(url)
    sm = _SCHEME_RE.match(url)
    if not url:
        return UrlInfo("", "invalid_url", False)
    if url.lower().startswith("file://"):  # local mirrors and offline channels: keyed by path
        segs = _segments(url[len("file://") :])
        return UrlInfo(url, problem, True, "file:///" + "/".join(segs), "", "/".join(segs))
    if ssh:
        url = f"https://{ssh.group(1)}/{ssh.group(2)}"
    elif sm and (sm.group(2) or sm.group(3)):
        scheme, colon, slashes = sm.group(1).lower(), sm.group(2), sm.group(3)
        if scheme in ("http", "https") and colon and slashes == "//":
            url = scheme + url[len(sm.group(1)) :]
        elif set(scheme) <= set("htps") and ("tp" in scheme or "tt" in scheme):
            url = "https://" + url[sm.end() :]  # htps, ttps, htttps, https:/, https// ...
            problem = "url_repaired"
        else:
            return UrlInfo(url, "invalid_url", False, url.lower())
    elif "://" not in url and "." in url.split("/", 1)[0] and " " not in url:
        url = "https://" + url  # github.com/owner/repo
        problem = "url_repaired"
    m = _GOOD_URL.match(url)
    if m is None:
        return UrlInfo(url, "invalid_url", False, url.lower())
    return _from_match(url, m, problem)


def normalize_url(raw: str) -> str:
    """The lookup key of a repository/page URL.

    Same key for: trailing ``.git`` or ``/``, http vs https, host case, ``www.``, SSH remotes
    (``git@github.com:o/r.git``), a missing scheme, scheme typos; GitHub paths are case-insensitive.
    """
    return url_info(raw).key


def _segments(path: str) -> list[str]:
    """Non-empty path segments (``.git`` dropped from the last one)."""
    segs = [s for s in path.split("/") if s]
    if segs and segs[-1].lower().endswith(".git"):
        segs[-1] = segs[-1][:-4]
    return [s for s in segs if s]


def name_core(name: str) -> str:
    """A pack name reduced for "is this the pack I typed?": lower case, separators as single
    spaces, a leading "ComfyUI"/"Comfy" word dropped ("ComfyUI_Impact-Pack" -> "impact pack")."""
    core = _SEPARATORS.sub(" ", name.lower()).strip()
    for prefix in ("comfyui ", "comfy "):
        if core.startswith(prefix):
            return core[len(prefix) :]
    return core
