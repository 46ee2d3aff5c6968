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


class WorkingFolderLink(ManagerError):
    """A symbolic link (or a folder resolving elsewhere) where one of our working folders belongs."""

    code = "working_folder_link"
    http_status = 409
    default_hint = (
        "Remove the link (rm <path>; never rm -r through it) so the Manager can recreate a real folder there, "
        "then retry. Nothing was written or moved."
    )


class LockBusy(ManagerError):
    code = "lock_busy"
    http_status = 409
    default_hint = "Another Manager operation (server or cm-cli) is running; wait for it to finish and retry."


# --- network -------------------------------------------------------------------------
class NetworkBlocked(ManagerError):
    """The gate refused a URL before any socket was opened."""

    code = "network_blocked"
    http_status = 403


class HttpsRequired(NetworkBlocked):
    """Public mode: a plain http:// URL for a model, a registry archive, a channel file or a pack
    archive, on a host the admin did not allow (``allowed_http_hosts``)."""

    code = "https_required"
    http_status = 403


class RedirectRefused(NetworkBlocked):
    """A redirect hop the gate refused: a host off the allow-list, a scheme other than http(s),
    a downgrade to http, a loop, or too many hops. ``details.reason`` says which."""

    code = "redirect_refused"
    http_status = 403


class OfflineModeEnabled(NetworkBlocked, ConnectionError):
    """Offline mode: no socket is ever opened. Also a ``ConnectionError`` for generic callers."""

    code = "offline_mode"
    default_hint = (
        "network_mode is 'offline'. Use a local source (a file:// channel, the wheelhouse, the model store, "
        "a [mirrors] rewrite to a file:// folder) or set network_mode = public/private in config.ini."
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
        "No cached copy exists. On a machine with network run `cm-cli.py update-cache` and copy its "
        "user/__manager/cache folder to the same place here, or select a file:// channel."
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
    default_hint = (
        "The local branch and the remote have both moved; merge or reset the pack folder by hand "
        "(git -C <pack> status), or reinstall the pack."
    )


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
    default_hint = (
        "The archive exceeds the extraction limits (size, entry count or compression ratio); nothing was extracted."
    )


class ArchiveContentRefused(ManagerError):
    """A pack holds native libraries, pickled files or executables that ``security_level`` does
    not allow for its source (docs/security.md); nothing was moved into place."""

    code = "archive_content_refused"
    http_status = 403


class PackCompromised(ManagerError):
    """The pack id, repository URL or a file's sha256 is on a known-compromise list."""

    code = "pack_compromised"
    http_status = 403


class CompromiseListInvalid(ManagerError):
    """The admin's local known-compromise list cannot be read; installs stay refused until fixed."""

    code = "compromise_list_invalid"
    http_status = 500


# --- task queue ----------------------------------------------------------------------
class TaskInvalid(ManagerError):
    """A task was refused at enqueue: unknown kind, empty target, params not JSON, duplicate id."""

    code = "task_invalid"
    http_status = 400


class InternalError(ManagerError):
    """An unexpected exception inside an operation; the traceback is logged, never swallowed."""

    code = "internal_error"
    http_status = 500
    default_hint = (
        "This is a bug in the Manager: the full traceback is in the server or cm-cli log; report it with that log."
    )


# --- node pack operations (manager/operations) ---------------------------------------
class PackExists(ManagerError):
    """The install destination in custom_nodes/ is taken; nothing was changed."""

    code = "pack_exists"
    http_status = 409
    default_hint = (
        "The pack is already installed: use update, reinstall or switch_version, or install "
        "under another folder name (the `name` parameter)."
    )


class PackConflict(ManagerError):
    """A move would overwrite another copy (enabled/disabled/trash); nothing was overwritten."""

    code = "pack_conflict"
    http_status = 409


class PackAmbiguous(ManagerError):
    """A pack key names several installed entries; the caller must pick one."""

    code = "pack_ambiguous"
    http_status = 409


class PolicyDenied(ManagerError):
    """A risky source (raw git URL, local path) without an allowed security decision."""

    code = "policy_denied"
    http_status = 403
    default_hint = (
        "Installing from a raw git URL or a local path needs the security policy's approval: "
        "raise security_level (weak, or normal- on a loopback listener) or allow_git_url_install "
        "in config.ini, or install the pack from the catalog/registry instead."
    )


class InstallUnsupported(ManagerError):
    """The source cannot be installed (unknown install_type, a copy entry that is not a .py file, ...)."""

    code = "install_unsupported"
    http_status = 400


class InstallScriptFailed(ManagerError):
    """A pack's install.py exited non-zero or timed out; the staged copy was removed."""

    code = "install_script_failed"
    http_status = 500


class InstallStepFailed(ManagerError):
    """An install step failed with an OS-level error; ``details`` name the step and output tail."""

    code = "install_step_failed"
    http_status = 500


class UpdateAllIncomplete(ManagerError):
    """A step of an update-all plan failed; ``details`` list the steps done, failed and not done."""

    code = "update_all_incomplete"
    http_status = 500


class TrashEntryInvalid(ManagerError):
    """A trash entry has no readable manifest or no payload; it cannot be restored."""

    code = "trash_entry_invalid"
    http_status = 500


class WorkflowInvalid(ManagerError):
    """A workflow document is neither the UI format (nodes[].type) nor the API format ({id: {class_type}})."""

    code = "workflow_invalid"
    http_status = 400


# --- models (manager/models) --------------------------------------------------------
class ModelPathInvalid(ManagerError):
    """A model's save_path or filename is not a safe, portable name; nothing was written."""

    code = "model_path_invalid"
    http_status = 400
    default_hint = (
        "The channel entry names an unsafe file or folder (control or bidi characters, a "
        "Windows-reserved name, a trailing dot or space, a reserved character); fix the "
        "entry in model-list.json or report it to the channel owner."
    )


class ModelFolderUnknown(ManagerError):
    """A catalog model's type maps to no ComfyUI model folder and it names no save_path."""

    code = "model_folder_unknown"
    http_status = 422
    default_hint = (
        "Give the entry an explicit save_path in model-list.json, or place the file by hand "
        "in the folder the node that uses it expects."
    )


class ModelSourceUnsupported(ManagerError):
    """The model's source cannot be downloaded as one file (a repository snapshot, a bad URL)."""

    code = "model_source_unsupported"
    http_status = 422
    default_hint = (
        "Download the model by hand and place it in the folder named in the message, "
        "or put it in the model store (model_store in config.ini)."
    )


class ModelNotInStore(ManagerError):
    """Offline mode and the model store does not hold the file: nothing was fetched."""

    code = "model_not_in_store"
    http_status = 503
    default_hint = (
        "Copy the file into the model store (model_store in config.ini) or straight into "
        "the model folder named in the message, then retry."
    )


# --- snapshots (manager/snapshots) ----------------------------------------------------
class SnapshotInvalid(ManagerError):
    """A snapshot document is not valid JSON/YAML or breaks the format; ``details.field`` names where."""

    code = "snapshot_invalid"
    http_status = 400


class SnapshotExists(ManagerError):
    """A snapshot of that name is already stored; nothing was overwritten."""

    code = "snapshot_exists"
    http_status = 409
    default_hint = "Choose another name, or remove the stored snapshot first (cm-cli.py snapshot remove NAME)."


class SnapshotSourcesMissing(ManagerError):
    """An offline restore lacks local sources (repos, archives, wheels); nothing was changed."""

    code = "snapshot_sources_missing"
    http_status = 409


class SnapshotRestoreFailed(ManagerError):
    """A restore step failed; the plan stopped and ``details`` list the steps done, failed and not done."""

    code = "snapshot_restore_failed"
    http_status = 500


# --- API doors and security policy ------------------------------------------------------
class SecurityDenied(ManagerError):
    """The security policy refused an operation; the hint names the setting that would allow it."""

    code = "security_denied"
    http_status = 403


class RequestInvalid(ManagerError):
    """A request's body, query or path parameter is missing, malformed or out of range."""

    code = "request_invalid"
    http_status = 400


class RequestTooLarge(ManagerError):
    code = "request_too_large"
    http_status = 413


class ContentTypeRefused(ManagerError):
    """A route that reads JSON got form fields (urlencoded or multipart) instead of JSON text."""

    code = "content_type_refused"
    http_status = 400
    default_hint = (
        "This route reads a JSON body: send the JSON text itself (Content-Type application/json; "
        "text/plain or a urlencoded label also work when the body is JSON), not form fields."
    )


class CrossOriginDenied(ManagerError):
    """A state-changing request came from a page of another origin (Origin/Host mismatch)."""

    code = "cross_origin_denied"
    http_status = 403
    default_hint = (
        "Open the Manager from the same address as the server (the ComfyUI page itself); "
        "pages of other sites may not drive it."
    )


class HostNotAllowed(ManagerError):
    """A request named a Host this loopback listener does not answer (DNS rebinding guard)."""

    code = "host_not_allowed"
    http_status = 403
    default_hint = (
        "Open the Manager as http://127.0.0.1:<port>/ or http://localhost:<port>/. To reach it under "
        "another name (a reverse proxy, a hosts-file alias), add that name to allowed_hosts in the "
        "[security] section of config.ini and restart the server."
    )


class QueueBusy(ManagerError):
    code = "queue_busy"
    http_status = 409
    default_hint = "Wait until the running tasks finish (GET the queue status), then retry."


class PendingInvalid(ManagerError):
    """An operation scheduled for the next start (startup/pending.json) is malformed or unsafe."""

    code = "pending_invalid"
    http_status = 400


class NotImplementedYet(ManagerError):
    """A declared route or feature that this build or this host does not provide yet."""

    code = "not_implemented"
    http_status = 501


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
