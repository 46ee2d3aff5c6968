"""The security policy: a pure function from settings, operation and source risk to a decision.

``decide(settings, operation, risk, source=...)`` reads nothing and writes nothing: the API and
the CLI build ``SecuritySettings`` from the config and the listen address, ask, and hand the
resulting ``PolicyDecision`` to the operation (or raise it with ``enforce``). Levels keep the
classic meanings (reference: classic-api.md section 3):

- ``middle`` operations (catalog installs, uninstall, update, fix, restore, reboot, ...) need a
  level other than ``strong``;
- ``high`` risks (a model file that is not ``.safetensors`` from outside the default channel)
  need ``weak``, or ``normal-`` with a loopback listener;
- installs from an arbitrary git URL or pip spec need their ``[security]`` flag *and* a
  loopback listener whatever the level, and a channel outside ``channels.list`` and
  ``allowed_channels`` needs ``allow_remote_channel`` and a loopback listener.

On a non-loopback listener every operation that is not always allowed (reads, queue control,
snapshot saves, cache refreshes, the user's own data, going towards offline) also needs a peer
inside ``trusted_networks`` (``[security]``, CIDR list, empty by default: nobody); inside it, the
rules above apply as before. The peer is part of ``SecuritySettings``: ``None`` is a caller on
this machine without a network peer (the CLI), any text is the address a request came from.

Denials carry code ``security_denied`` and a hint naming the exact key, level or ``--listen``
value that would allow the operation, and the config.ini in effect. The hint depends on the door
(``SecuritySettings.door``): the CLI is never told to restart a server or to use ``--listen``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import SecurityDenied

if TYPE_CHECKING:  # records are imported on the first decision (hosts mount routes before that)
    from .records import PolicyDecision

__all__ = [
    "LEVELS",
    "OPERATIONS",
    "RISKS",
    "SecuritySettings",
    "decide",
    "enforce",
    "is_loopback_listen",
    "peer_in_networks",
    "pip_spec_risk",
]

LEVELS = ("strong", "normal", "normal-", "weak")

# --- operations ------------------------------------------------------------------------------
READ = "read"  # every GET: always allowed
QUEUE_CONTROL = "queue_control"  # start, reset, cancel: classic leaves them ungated
SNAPSHOT_SAVE = "snapshot_save"  # classic: CSRF guard only
CACHE_REFRESH = "cache_refresh"  # the network gate still decides every URL
USER_DATA_WRITE = "user_data_write"  # components, share keys: the user's own data, no code (classic: ungated)
INSTALL = "install"
REINSTALL = "reinstall"
UNINSTALL = "uninstall"
UPDATE = "update"
UPDATE_ALL = "update_all"
FIX = "fix"
DISABLE = "disable"
ENABLE = "enable"
SWITCH_VERSION = "switch_version"
INSTALL_MODEL = "install_model"
SNAPSHOT_RESTORE = "snapshot_restore"
SNAPSHOT_REMOVE = "snapshot_remove"
RESTORE_TRASH = "restore_trash"  # puts a trashed pack back (code that was installed before)
EMPTY_TRASH = "empty_trash"  # deletes trash entries for good
REBOOT = "reboot"
CONFIG_WRITE = "config_write"  # db_mode, update/component policy and other plain settings
CHANNEL_SELECT = "channel_select"
NETWORK_MODE = "network_mode"
INSTALL_GIT_URL = "install_git_url"  # /customnode/install/git_url: the dedicated flag route
INSTALL_PIP = "install_pip"  # /customnode/install/pip
SECURITY_WRITE = "security_write"  # security_level and [security] keys: never through a door
UNDO = "undo"  # puts back a task's earlier package set and pack state
BUNDLE_IMPORT = "bundle_import"  # fills the offline stores from a bundle file (brings code, like a local path)

# Operations that change the tree or the settings and need a level other than ``strong``.
_MIDDLE = frozenset(
    {
        INSTALL,
        REINSTALL,
        UNINSTALL,
        UPDATE,
        UPDATE_ALL,
        FIX,
        DISABLE,
        ENABLE,
        SWITCH_VERSION,
        INSTALL_MODEL,
        SNAPSHOT_RESTORE,
        SNAPSHOT_REMOVE,
        REBOOT,
        RESTORE_TRASH,
        EMPTY_TRASH,
        UNDO,
        CONFIG_WRITE,
        CHANNEL_SELECT,
    }
)
_ALWAYS = frozenset({READ, QUEUE_CONTROL, SNAPSHOT_SAVE, CACHE_REFRESH, USER_DATA_WRITE})
OPERATIONS = tuple(
    sorted(_MIDDLE | _ALWAYS | {NETWORK_MODE, INSTALL_GIT_URL, INSTALL_PIP, SECURITY_WRITE, BUNDLE_IMPORT})
)

# --- risks (what the source of an operation is) ------------------------------------------------
RISK_NONE = ""
RISK_REGISTRY = "registry"  # a registry version (classic "low")
RISK_CATALOG = "catalog"  # a pack or URL listed in the channel catalog ("middle")
RISK_GIT_URL = "git_url"  # a git URL no catalog lists ("high")
RISK_LOCAL_PATH = "local_path"  # a local folder or file:// repository no catalog lists
RISK_MODEL_CATALOG = "model_catalog"  # a model of the catalog
RISK_MODEL_URL = "model_url"  # a non-.safetensors model file outside the default channel
RISK_CHANNEL_LISTED = "channel_listed"
RISK_CHANNEL_LOCAL = "channel_local"
RISK_CHANNEL_REMOTE = "channel_remote"  # a remote channel that channels.list does not list
RISK_PIP_PACKAGE = "pip_package"  # plain requirement specs (name, version bounds)
RISK_PIP_EXTERNAL = "pip_external"  # direct URLs, git+ specs, local paths, index options
RISK_NET_TIGHTEN = "tighten"  # towards offline
RISK_NET_LOOSEN = "loosen"  # towards public
RISKS = (
    RISK_NONE,
    RISK_REGISTRY,
    RISK_CATALOG,
    RISK_GIT_URL,
    RISK_LOCAL_PATH,
    RISK_MODEL_CATALOG,
    RISK_MODEL_URL,
    RISK_CHANNEL_LISTED,
    RISK_CHANNEL_LOCAL,
    RISK_CHANNEL_REMOTE,
    RISK_PIP_PACKAGE,
    RISK_PIP_EXTERNAL,
    RISK_NET_TIGHTEN,
    RISK_NET_LOOSEN,
)

_LOOPBACK_NAMES = ("localhost", "ip6-localhost", "localhost.localdomain")


def is_loopback_listen(listen: str) -> bool:
    """True when every address of a (comma-separated) ``--listen`` value is a loopback address.

    Unlike the classic check, ``127.0.0.1,::1`` counts as loopback and ``localhost`` too; an
    empty or unparsable value does not (``0.0.0.0,::`` is ComfyUI's bare ``--listen``).
    """
    parts = [p.strip().strip("[]") for p in str(listen or "").split(",")]
    if not parts or any(not p for p in parts):
        return False
    for part in parts:
        if part.lower() in _LOOPBACK_NAMES:
            continue
        try:
            if not ipaddress.ip_address(part.split("%", 1)[0]).is_loopback:
                return False
        except ValueError:
            return False
    return True


def peer_in_networks(peer: str, networks: Sequence[str]) -> bool:
    """True when the address ``peer`` lies inside one of ``networks`` (CIDR; a bare address is one
    host). An unparsable peer or entry matches nothing; an IPv4-mapped IPv6 peer counts as IPv4."""
    try:
        addr = ipaddress.ip_address(str(peer).strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    if mapped is not None:
        addr = mapped
    for entry in networks:
        try:
            net = ipaddress.ip_network(str(entry).strip(), strict=False)
        except ValueError:
            continue
        if addr.version == net.version and addr in net:
            return True
    return False


def _under(url: str, prefixes: Sequence[str]) -> bool:
    u = url.strip().rstrip("/").lower()
    for prefix in prefixes:
        p = prefix.strip().rstrip("/").lower()
        if p and (u == p or u.startswith(p + "/") or u.startswith(p + "?")):
            return True
    return False


def pip_spec_risk(specs: Sequence[str]) -> str:
    """``pip_external`` when any spec is a URL, VCS spec, local path or option; else ``pip_package``."""
    for raw in specs:
        spec = raw.strip()
        low = spec.lower()
        if (
            spec.startswith(("-", ".", "/", "~", "\\"))
            or "://" in spec
            or " @ " in spec
            or "@" in spec.split(";")[0]
            or low.startswith(("git+", "hg+", "svn+", "bzr+", "file:"))
            or low.endswith((".whl", ".zip", ".tar.gz"))
            or (len(spec) > 1 and spec[1] == ":")
        ):
            return RISK_PIP_EXTERNAL
    return RISK_PIP_PACKAGE


@dataclass(frozen=True)
class SecuritySettings:
    """Everything the policy looks at; build it with ``from_config`` (or directly in tests)."""

    level: str = "normal"
    listen: str = "127.0.0.1"
    allow_git_url_install: bool = False
    allow_pip_install: bool = False
    allow_external_pip: bool = False
    allow_remote_channel: bool = False
    allowed_channels: tuple[str, ...] = ()
    allowed_pip_sources: tuple[str, ...] = ()
    config_path: str = ""
    trusted_networks: tuple[str, ...] = ()
    # who asks: None = a caller on this machine with no network peer (the CLI); else the address
    # the request came from ("" when the server could not tell: trusted by no network)
    peer: str | None = None
    # which door asks ("cli", "standalone", "comfyui"; "" = any HTTP server): shapes the hints only
    door: str = ""

    @classmethod
    def from_config(cls, config: Any, listen: str, *, peer: str | None = None, door: str = "") -> SecuritySettings:
        """From a ``Config`` (anything with ``[key]`` and ``.path``), the listen address, the peer
        (None: no network peer, the CLI) and the door's name."""
        try:
            trusted = tuple(config["trusted_networks"])
        except KeyError:  # a config table without the key (older callers): trust nobody
            trusted = ()
        return cls(
            level=str(config["security_level"]),
            listen=listen,
            allow_git_url_install=bool(config["allow_git_url_install"]),
            allow_pip_install=bool(config["allow_pip_install"]),
            allow_external_pip=bool(config["allow_external_pip"]),
            allow_remote_channel=bool(config["allow_remote_channel"]),
            allowed_channels=tuple(config["allowed_channels"]),
            allowed_pip_sources=tuple(config["allowed_pip_sources"]),
            config_path=str(getattr(config, "path", "") or ""),
            trusted_networks=trusted,
            peer=peer,
            door=door,
        )

    @property
    def loopback(self) -> bool:
        return is_loopback_listen(self.listen)

    @property
    def cli(self) -> bool:
        """The shell asks: hints never mention a server restart or ``--listen``."""
        return self.door == "cli"

    @property
    def peer_trusted(self) -> bool:
        """Whether the peer may run risky operations: always on a loopback listener and for a
        caller without a network peer; on any other listener only inside ``trusted_networks``."""
        return self.loopback or self.peer is None or peer_in_networks(self.peer, self.trusted_networks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "security_level": self.level,
            "listen": self.listen,
            "loopback": self.loopback,
            "allow_git_url_install": self.allow_git_url_install,
            "allow_pip_install": self.allow_pip_install,
            "allow_external_pip": self.allow_external_pip,
            "allow_remote_channel": self.allow_remote_channel,
            "allowed_channels": list(self.allowed_channels),
            "allowed_pip_sources": list(self.allowed_pip_sources),
            "config_path": self.config_path,
            "trusted_networks": list(self.trusted_networks),
            "peer": self.peer,
            "peer_trusted": self.peer_trusted,
            "door": self.door,
        }


# --- the decision ------------------------------------------------------------------------------
class _Deny(Exception):
    def __init__(self, reason: str, hint: str):
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def _where(s: SecuritySettings) -> str:
    return f" in {s.config_path}" if s.config_path else " in config.ini"


def _restart(s: SecuritySettings) -> str:
    if s.cli:  # each cm-cli.py run reads the file afresh (_where names it): no server to restart
        return ""
    server = "ComfyUI" if s.door == "comfyui" else "the server"
    return (
        f" (config.ini in effect: {s.config_path}; restart {server} after editing it)"
        if s.config_path
        else f" (restart {server} after editing config.ini)"
    )


def _loopback_only(s: SecuritySettings) -> str:
    """The tail of a flag's hint: where the flag takes effect (nothing to add in the shell)."""
    return "" if s.cli else "; it only takes effect with a loopback listener (--listen 127.0.0.1)"


def _need_middle(s: SecuritySettings, what: str) -> None:
    if s.level in ("weak", "normal", "normal-"):
        return
    shown = s.level if s.level in LEVELS else f"{s.level!r} (unknown, treated as strong)"
    raise _Deny(
        f"{what} is not allowed at security_level {shown}",
        f"Set security_level = normal (or normal-, weak) in the [default] section{_where(s)}{_restart(s)}.",
    )


def _need_loopback(s: SecuritySettings, what: str) -> None:
    if s.loopback:
        return
    raise _Deny(
        f"{what} is only allowed when the server listens on loopback; it listens on {s.listen!r}",
        "Start ComfyUI with --listen 127.0.0.1 (or cm-cli.py serve --host 127.0.0.1), or run the "
        f"operation from cm-cli.py on the server itself{_restart(s)}.",
    )


def _need_trusted_peer(s: SecuritySettings, what: str) -> None:
    """A non-loopback listener: risky operations only for a peer inside trusted_networks."""
    if s.peer_trusted:
        return
    peer = s.peer or "an unknown address"
    listed = ", ".join(s.trusted_networks) if s.trusted_networks else "empty"
    example = f"{s.peer}/32" if s.peer and ":" not in s.peer else (f"{s.peer}/128" if s.peer else "192.168.1.0/24")
    raise _Deny(
        f"{what} is refused to {peer}: the server listens on {s.listen!r} (not loopback) and the peer "
        f"is not inside trusted_networks ({listed})",
        f"Add the peer's network (e.g. {example}) to trusted_networks in the [security] section{_where(s)}, "
        "or listen on 127.0.0.1 only (--listen 127.0.0.1) and use the panel or cm-cli.py on the server "
        f"itself{_restart(s)}.",
    )


def _need_flag(s: SecuritySettings, flag: str, what: str) -> None:
    if getattr(s, flag):
        return
    raise _Deny(
        f"{what} needs {flag} = true",
        f"Set {flag} = true in the [security] section{_where(s)}{_loopback_only(s)}{_restart(s)}.",
    )


def _need_high(s: SecuritySettings, what: str) -> None:
    # classic "high": weak anywhere, normal- on a loopback listener
    if s.level == "weak" or (s.level == "normal-" and s.loopback):
        return
    if s.level == "normal-":
        _need_loopback(s, what)
    listen = "" if s.cli else " and listen on 127.0.0.1 (--listen 127.0.0.1)"
    raise _Deny(
        f"{what} needs security_level weak, or normal- with a loopback listener (now {s.level!r})",
        f"Set security_level = normal- in the [default] section{_where(s)}{listen}, or use weak{_restart(s)}.",
    )


def _check_install(s: SecuritySettings, risk: str, what: str) -> None:
    _need_middle(s, what)  # the classic entry gate
    if risk in (RISK_GIT_URL, RISK_LOCAL_PATH):
        _need_flag(s, "allow_git_url_install", what)
        _need_loopback(s, what)


def _check_pip(s: SecuritySettings, risk: str, source: str, what: str) -> None:
    _need_flag(s, "allow_pip_install", what)
    _need_loopback(s, what)
    if risk == RISK_PIP_EXTERNAL:
        _need_flag(s, "allow_external_pip", what + " from a URL, VCS spec or path")
    if source and not s.allow_external_pip and not _under(source, s.allowed_pip_sources):
        raise _Deny(
            f"package index {source!r} is not in allowed_pip_sources",
            f"Add {source} to allowed_pip_sources in the [security] section{_where(s)}, or set "
            f"allow_external_pip = true there{_restart(s)}.",
        )


def _check_channel(s: SecuritySettings, risk: str, source: str, what: str) -> None:
    _need_middle(s, what)
    if (
        risk != RISK_CHANNEL_REMOTE
        or (source and _under(source, s.allowed_channels))
        or (source and source.strip() in s.allowed_channels)
    ):
        return
    if not s.allow_remote_channel:
        raise _Deny(
            f"{what}: the channel {source or '(unnamed)'} is in neither channels.list nor allowed_channels",
            f"Add it to allowed_channels in the [security] section{_where(s)} (or a 'name::url' line to "
            "channels.list), or set allow_remote_channel = true there"
            f"{'' if s.cli else ' (loopback listener only)'}{_restart(s)}.",
        )
    _need_loopback(s, what)


def _check(s: SecuritySettings, operation: str, risk: str, source: str) -> None:
    if operation in _ALWAYS or (operation == NETWORK_MODE and risk == RISK_NET_TIGHTEN):
        return  # going towards offline is always allowed
    _rules(s, operation, risk, source)
    # last: a hint names trusted_networks only when the level and flags would allow the operation
    _need_trusted_peer(s, operation.replace("_", " "))


def _rules(s: SecuritySettings, operation: str, risk: str, source: str) -> None:
    what = operation.replace("_", " ")
    if operation == SECURITY_WRITE:
        raise _Deny(
            "security settings cannot be changed through the API",
            f"Edit security_level and the [security] keys by hand{_where(s)}"
            + ("." if s.cli else " with the server stopped."),
        )
    if operation in (INSTALL, REINSTALL):
        _check_install(s, risk, what)
        return
    if operation == INSTALL_MODEL:
        _need_middle(s, what)
        if risk == RISK_MODEL_URL:
            _need_high(s, "installing a model file that is not .safetensors from outside the default channel")
        return
    if operation == CHANNEL_SELECT:
        _check_channel(s, risk, source, what)
        return
    if operation == NETWORK_MODE:  # towards public (towards offline never gets here)
        _need_middle(s, "opening the network mode")
        _need_loopback(s, "opening the network mode")
        return
    if operation == INSTALL_GIT_URL:  # classic: the flag replaces the level
        _need_flag(s, "allow_git_url_install", "installing from a git URL")
        _need_loopback(s, "installing from a git URL")
        return
    if operation == INSTALL_PIP:
        _check_pip(s, risk or RISK_PIP_PACKAGE, source, "installing pip packages")
        return
    if operation == BUNDLE_IMPORT:  # code from a file, like a local-path install; its checksums are checked
        _need_middle(s, "importing an offline bundle")
        _need_loopback(s, "importing an offline bundle")
        return
    if operation in _MIDDLE:
        _need_middle(s, what)
        return
    raise _Deny(
        f"unknown operation {operation!r}",
        "This is a bug in the caller: the operation is not declared in manager/security.py; nothing was done.",
    )


def decide(settings: SecuritySettings, operation: str, risk: str = RISK_NONE, *, source: str = "") -> PolicyDecision:
    """Allow or deny ``operation`` on a source of ``risk`` (``source`` = its URL, when one matters).

    Pure: the answer depends only on the arguments. A denial has code ``security_denied``.
    """
    from .records import PolicyDecision

    try:
        _check(settings, operation, risk, source)
    except _Deny as deny:
        return PolicyDecision(False, operation, risk, SecurityDenied.code, deny.reason, deny.hint)
    where = "" if settings.loopback else f" (non-loopback listener, peer {settings.peer or 'on this machine'})"
    return PolicyDecision.allow(operation, risk, f"allowed at security_level {settings.level}{where}")


def enforce(decision: PolicyDecision, details: Mapping[str, Any] | None = None) -> PolicyDecision:
    """Return an allowing decision; raise ``SecurityDenied`` (403, with the hint) for a denial."""
    if decision.allowed:
        return decision
    raise SecurityDenied(
        decision.reason,
        hint=decision.hint,
        details={"operation": decision.operation, "risk": decision.risk, **(details or {})},
    )
