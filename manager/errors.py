"""One exception hierarchy with stable error codes shared by the API and the CLI.

Every error carries a snake_case ``code`` (stable: scripts match on it), a human
``message``, a ``hint`` naming the setting, file or command that fixes it, and the
``http_status`` the API answers with. ``ERROR_CODES`` is the registry a test checks
against the source in both directions.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ManagerError(Exception):
    """Root of every error the Manager raises on purpose."""

    code: ClassVar[str] = "manager_error"
    http_status: ClassVar[int] = 500
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, *, hint: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.details = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """The error part of the shared JSON envelope."""
        out: dict[str, Any] = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


# --- configuration -------------------------------------------------------------------
class ConfigError(ManagerError):
    code = "config_invalid"
    http_status = 400


class ConfigUnknownKey(ConfigError):
    code = "config_unknown_key"


class ConfigUnreadable(ConfigError):
    code = "config_unreadable"
    http_status = 500


# --- paths and files -----------------------------------------------------------------
class PathEscape(ManagerError):
    code = "path_escape"
    http_status = 400
    default_hint = "Names and paths must stay inside the ComfyUI tree; remove '..', absolute parts and links."


class InvalidName(ManagerError):
    code = "invalid_name"
    http_status = 400


class LockBusy(ManagerError):
    code = "lock_busy"
    http_status = 409
    default_hint = "Another Manager operation (server or cm-cli) is running; wait for it to finish and retry."


# --- network -------------------------------------------------------------------------
class NetworkBlocked(ManagerError):
    """The gate refused a URL before any socket was opened."""

    code = "network_blocked"
    http_status = 403


class OfflineModeEnabled(NetworkBlocked, ConnectionError):
    """Offline mode: no socket is ever opened. Also a ``ConnectionError`` for generic callers."""

    code = "offline_mode"
    default_hint = (
        "network_mode is 'offline'. Use a local source (file:// channel, wheelhouse, bundle) "
        "or set network_mode = public/private in config.ini."
    )


class NetworkUnreachable(ManagerError):
    code = "network_unreachable"
    http_status = 502


class HttpStatusError(ManagerError):
    code = "http_status"
    http_status = 502


class DownloadIncomplete(ManagerError):
    code = "download_incomplete"
    http_status = 502


class ChecksumMismatch(ManagerError):
    code = "checksum_mismatch"
    http_status = 502


class ResponseTooLarge(ManagerError):
    """A response exceeded the size cap the caller set (a channel file that is not one)."""

    code = "response_too_large"
    http_status = 502


# --- channels, cache, catalog ----------------------------------------------------------
class ChannelInvalid(ManagerError):
    code = "channel_invalid"
    http_status = 400


class ChannelNotAllowed(ManagerError):
    code = "channel_not_allowed"
    http_status = 403


class CacheMissing(ManagerError):
    code = "cache_missing"
    http_status = 503
    default_hint = (
        "No cached copy exists. On a machine with network run `cm-cli.py update-cache`, "
        "or import an offline bundle."
    )


class CacheCorrupt(ManagerError):
    code = "cache_corrupt"
    http_status = 503


class ChannelDataInvalid(ManagerError):
    code = "channel_data_invalid"
    http_status = 502


class NotFound(ManagerError):
    code = "not_found"
    http_status = 404


class RegistryError(ManagerError):
    code = "registry_error"
    http_status = 502


# --- git -----------------------------------------------------------------------------
class GitUnavailable(ManagerError):
    code = "git_unavailable"
    http_status = 503
    default_hint = "Install git, or set git_exe in config.ini to the full path of a working git executable."


class GitError(ManagerError):
    """A git command failed; ``details`` holds the command (credentials hidden) and its output tail."""

    code = "git_failed"
    http_status = 502


class GitLocalChanges(ManagerError):
    code = "git_local_changes"
    http_status = 409
    default_hint = "Commit, stash or discard the local changes in the pack folder (git status), then retry."


class GitDiverged(ManagerError):
    code = "git_diverged"
    http_status = 409
    default_hint = ("The local branch and the remote have both moved; merge or reset the pack folder by hand "
                    "(git -C <pack> status), or reinstall the pack.")


class GitDetachedHead(ManagerError):
    code = "git_detached_head"
    http_status = 409
    default_hint = "The pack is pinned to a commit or tag; switch it to a branch (nightly) before updating."


class InvalidGitUrl(ManagerError):
    code = "git_url_invalid"
    http_status = 400
    default_hint = "Use an https://, http://, ssh://, git:// or file:// URL, or a local folder path."


class InvalidGitRef(ManagerError):
    code = "git_ref_invalid"
    http_status = 400
    default_hint = "Give a branch, tag or commit hash (letters, digits, '.', '_', '-', '/'; not starting with '-')."


# --- archives ------------------------------------------------------------------------
class ArchiveInvalid(ManagerError):
    code = "archive_invalid"
    http_status = 400
    default_hint = "The archive is damaged or not a zip/tar file; download it again or check the source URL."


class ArchiveUnsafe(ManagerError):
    """An entry would land outside the target (traversal, absolute path, escaping link) or is a link/device."""

    code = "archive_unsafe"
    http_status = 400
    default_hint = "The archive is refused as a whole; report it to the pack author. Nothing was extracted."


class ArchiveTooLarge(ManagerError):
    code = "archive_too_large"
    http_status = 413
    default_hint = "The archive exceeds the extraction limits (size, entry count or compression ratio); nothing was extracted."


# --- task queue ----------------------------------------------------------------------
class TaskInvalid(ManagerError):
    """A task was refused at enqueue: unknown kind, empty target, params not JSON, duplicate id."""

    code = "task_invalid"
    http_status = 400


class InternalError(ManagerError):
    """An unexpected exception inside an operation; the traceback is logged, never swallowed."""

    code = "internal_error"
    http_status = 500
    default_hint = ("This is a bug in the Manager: the full traceback is in the server or cm-cli log; "
                    "report it with that log.")


def _walk(cls: type[ManagerError]) -> list[type[ManagerError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_walk(sub))
    return out


def error_codes() -> dict[str, type[ManagerError]]:
    """Every error class by its code, including subclasses defined in other modules."""
    table: dict[str, type[ManagerError]] = {}
    for cls in _walk(ManagerError):
        if cls.code in table and table[cls.code] is not cls:
            raise RuntimeError(f"error code {cls.code!r} used by two classes")
        table[cls.code] = cls
    return table
