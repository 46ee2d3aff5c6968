"""Git input checks (pure): remote URLs and ref names are refused here before git ever sees them.

No option injection, no ``ext::``-style helpers, only https/http/ssh/git/file and local paths;
refs follow git's ref-name rules. Re-exported by ``manager.git``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .errors import InvalidGitRef, InvalidGitUrl
from .network import redact_url

__all__ = ["check_ref", "check_remote_url"]

_ALLOWED_SCHEMES = {"https", "http", "ssh", "git", "file", "git+ssh", "ssh+git"}
_HELPER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_SCP_RE = re.compile(r"^(?:(?P<user>[^@/\s]+)@)?(?P<host>[^:/\s]{2,}):(?!//)")
_COMMIT_RE = re.compile(r"^[0-9a-fA-F]{7,64}$")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")

# Words that look like a scp-style "host:path" but are URL schemes a user never meant as ssh.
_SCHEME_WORDS = frozenset(
    {"javascript", "data", "vbscript", "about", "blob", "mailto", "http", "https", "ftp", "file", "ext", "fd"}
)


def check_remote_url(url: str) -> str:
    """Return ``url`` stripped, or raise ``InvalidGitUrl`` for anything git could misuse.

    Refused: empty, control characters, a leading ``-`` (read as an option such as
    ``--upload-pack=...``), remote helpers (``ext::sh -c ...``, ``fd::``), schemes other than
    https/http/ssh/git/file, and hosts or users starting with ``-`` (``ssh://-oProxyCommand=...``).
    """
    text = url.strip() if isinstance(url, str) else ""

    def bad(reason: str) -> InvalidGitUrl:
        return InvalidGitUrl(
            f"refused git URL {redact_url(text)!r}: {reason}", details={"url": redact_url(text), "reason": reason}
        )

    if not text:
        raise bad("empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise bad("control characters")
    if text.startswith("-"):
        raise bad("starts with '-' (would be read as a git option)")
    if _HELPER_RE.match(text) or text.lower().startswith("ext:"):
        raise bad("git remote helpers ('transport::address') run commands")
    if "://" in text:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in _ALLOWED_SCHEMES:
            typo = " (a typo of https?)" if scheme.startswith("ht") or scheme.endswith("tps") else ""
            raise bad(f"transport {scheme!r} is not allowed{typo}")
        if scheme != "file":
            if " " in text:
                raise bad("spaces in a remote URL")
            if not parts.hostname:
                raise bad("no host")
            if parts.hostname.startswith("-") or (parts.username or "").startswith("-"):
                raise bad("host or user starts with '-'")
        return text
    m = _SCP_RE.match(text)
    if m and not re.match(r"^[A-Za-z]:[\\/]", text):  # scp-like ssh address, not C:\path
        if m.group("host").startswith("-") or (m.group("user") or "").startswith("-"):
            raise bad("host or user starts with '-'")
        if m.group("host").lower() in _SCHEME_WORDS:  # javascript:..., data:... are not ssh hosts
            raise bad(f"{m.group('host')!r} is a URL scheme, not a host")
    return text


def check_ref(ref: str) -> str:
    """Return ``ref`` (branch, tag or commit) or raise ``InvalidGitRef`` (git's ref-name rules)."""
    text = ref.strip() if isinstance(ref, str) else ""

    def bad(reason: str) -> InvalidGitRef:
        return InvalidGitRef(f"refused git ref {text!r}: {reason}", details={"ref": text, "reason": reason})

    if not text:
        raise bad("empty")
    if text.startswith("-"):
        raise bad("starts with '-' (would be read as a git option)")
    if _BAD_REF_CHARS.search(text):
        raise bad("contains a space, control character or one of ~^:?*[\\")
    if ".." in text or "@{" in text or "//" in text or text == "@":
        raise bad("contains '..', '@{' or '//'")
    if text.endswith((".lock", "/", ".")) or text.startswith("/"):
        raise bad("bad start or end")
    if any(part.startswith(".") for part in text.split("/")):
        raise bad("a component starts with '.'")
    return text
