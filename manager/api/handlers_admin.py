"""Settings and health handlers: config, network mode, channels, cache, policy, status, reboot.

Writes go through ``HttpDoor.save_config`` (config.ini edited line by line, atomically, off the
loop) after the policy allowed them. Keys that widen what the Manager may run or reach
(executables, indexes, mirrors, every ``[security]`` key) are never writable through a door.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import __version__
from .. import security as sec
from ..errors import ChannelInvalid, NotImplementedYet, RequestInvalid
from .door import HttpDoor
from .envelope import field, ok, read_json

if TYPE_CHECKING:
    from ..records import Channel

# Plain preferences a door may change (policy: config_write). Every other declared key is
# security_write: git_exe/python_executable name executables, indexes and mirrors widen the network.
WRITABLE_KEYS = (
    "db_mode",
    "cache_ttl",
    "http_timeout",
    "http_connect_timeout",
    "use_uv",
    "always_lazy_install",
    "model_download_by_agent",
    "file_logging",
    "preview_method",
    "share_option",
    "component_policy",
    "update_policy",
    "windows_selector_event_loop_policy",
    "downgrade_blacklist",
)
_NET_ORDER = {"offline": 0, "private": 1, "public": 2}
RESTART_DELAY = 0.5


def config_operation(key: str) -> str:
    """The policy operation that governs writing ``key``."""
    if key == "network_mode":
        return sec.NETWORK_MODE
    if key == "channel_url":
        return sec.CHANNEL_SELECT
    if key in WRITABLE_KEYS:
        return sec.CONFIG_WRITE
    return sec.SECURITY_WRITE


async def get_config(api: HttpDoor, request: web.Request) -> web.Response:
    cfg = api.manager.config
    rows = []
    for item in cfg.explain():
        row = dict(item.__dict__)
        row["writable"] = config_operation(item.key) != sec.SECURITY_WRITE
        rows.append(row)
    return ok(
        {
            "path": str(cfg.path),
            "settings": rows,
            "problems": [p.to_dict() for p in cfg.problems],
            "notes": list(cfg.notes),
        }
    )


async def post_config(api: HttpDoor, request: web.Request) -> web.Response:
    """Body ``{"changes": {key: value}}``; each key is decided on its own, then all saved at once."""
    from ..config_schema import SETTINGS_BY_KEY

    body = await read_json(request)
    changes = field(body, "changes", dict)
    if not changes:
        raise RequestInvalid(
            "'changes' is empty",
            details={"field": "changes"},
            hint='Send {"changes": {"<key>": <value>}}; GET /offline-manager/v1/config lists the keys.',
        )
    for key, value in list(changes.items()):
        norm = str(key).strip().lower().replace("-", "_")
        api.note(target=norm)
        op = config_operation(norm)
        if op == sec.NETWORK_MODE:
            api.require(op, network_risk(api.manager.config["network_mode"], str(value)))
        elif op == sec.CHANNEL_SELECT:
            changes[key] = checked_channel(api, str(value)).url
        elif norm in SETTINGS_BY_KEY:
            api.require(op, details={"key": norm})
    new = await api.save_config(changes)
    return ok({"path": str(new.path), "saved": {k: new.get(k) for k in changes if k in new}})


# --- network mode ---------------------------------------------------------------------------------
def network_risk(current: str, wanted: str) -> str:
    if wanted not in _NET_ORDER:
        raise RequestInvalid(
            f"network mode {wanted!r} is not one of offline, private, public",
            hint='Send {"mode": "offline"}, "private" or "public".',
            details={"field": "mode"},
        )
    return sec.RISK_NET_TIGHTEN if _NET_ORDER[wanted] <= _NET_ORDER.get(current, 2) else sec.RISK_NET_LOOSEN


def _network_data(api: HttpDoor) -> dict[str, Any]:
    cfg = api.manager.config
    pol = api.manager.gate.policy
    return {
        "mode": cfg["network_mode"],
        "source": cfg.source("network_mode"),
        "origin": cfg.origin("network_mode"),
        "config_path": str(cfg.path),
        "private_mirrors": list(cfg.values()["private_mirrors"]),
        "gate_mode": pol.mode.value if hasattr(pol.mode, "value") else str(pol.mode),
        "http_timeout": pol.total_timeout,
        "http_connect_timeout": pol.connect_timeout,
    }


async def get_network(api: HttpDoor, request: web.Request) -> web.Response:
    return ok(_network_data(api))


async def post_network(api: HttpDoor, request: web.Request) -> web.Response:
    body = await read_json(request)
    wanted = field(body, "mode")
    api.note(target=f"network_mode={wanted}")
    cfg = api.manager.config
    api.require(sec.NETWORK_MODE, network_risk(cfg["network_mode"], wanted), details={"mode": wanted})
    if cfg.source("network_mode") in ("cli", "env"):
        # a command-line or environment value would win over the file anyway: say so, change nothing
        raise RequestInvalid(
            f"network_mode is set by the {cfg.origin('network_mode')} and would override config.ini",
            hint=f"Change or remove {cfg.origin('network_mode')} and restart.",
            details={"source": cfg.source("network_mode")},
        )
    await api.save_config({"network_mode": wanted})
    return ok(_network_data(api))


# --- channels --------------------------------------------------------------------------------------
def classify_channel(api: HttpDoor, wanted: str) -> tuple[Channel, str]:
    """The channel a name or URL means, and its risk.

    A channels.list line (by name or URL) is ``channel_listed`` (remote) or ``channel_local``.
    An unlisted local folder is ``channel_local`` when channels.list or ``allowed_channels``
    names it or a folder above it, else ``local_path``: it stands for a local-path install (its
    entries are cloned and their install scripts run), and ``checked_channel`` decides it so. An
    unlisted remote URL is ``channel_remote``.
    """
    from ..channels import channel_url_problem, is_local_url, local_channel_listed
    from ..records import Channel

    wanted = wanted.strip()
    channels = api.manager.channels
    found = channels.get(wanted)
    if found is not None:
        return found, sec.RISK_CHANNEL_LOCAL if found.is_local else sec.RISK_CHANNEL_LISTED
    if "://" not in wanted and not wanted.startswith("/"):
        raise ChannelInvalid(
            f"unknown channel {wanted!r}: not a name listed in {channels.source}",
            hint=f"Use one of: {', '.join(channels.names()) or '(none)'}, or give a URL.",
            details={"channel": wanted},
        )
    problem = channel_url_problem(wanted)
    if problem:
        raise ChannelInvalid(
            f"{wanted!r} cannot be a channel: {problem}",
            hint="Give a channel name from channels.list, an https:// URL or file:///absolute/path.",
            details={"channel": wanted, "problem": problem},
        )
    if "://" in wanted:  # the scheme in lower case: FILE:// is file://, never a remote URL
        scheme, rest = wanted.split("://", 1)
        wanted = scheme.lower() + "://" + rest
    channel = Channel(name="custom", url=wanted)
    if is_local_url(wanted):
        listed = local_channel_listed(channel, channels, api.manager.config["allowed_channels"])
        return channel, sec.RISK_CHANNEL_LOCAL if listed else sec.RISK_LOCAL_PATH
    return channel, sec.RISK_CHANNEL_REMOTE


def _channels_data(api: HttpDoor) -> dict[str, Any]:
    m = api.manager
    current = m.config["channel_url"]
    selected = m.channels.get(current)
    return {
        "selected": selected.name if selected else "custom",
        "channel_url": current,
        "channels": [
            {"name": c.name, "url": c.url, "active": selected is not None and c.name == selected.name}
            for c in m.channels
        ],
        "source": m.channels.source,
    }


async def get_channels(api: HttpDoor, request: web.Request) -> web.Response:
    return ok(_channels_data(api))


async def select_channel(api: HttpDoor, wanted: str) -> Channel:
    """Decide, check the channel rules and persist ``channel_url``."""
    channel = checked_channel(api, wanted)
    await api.save_config({"channel_url": channel.url})
    return channel


def checked_channel(api: HttpDoor, wanted: str) -> Channel:
    """The channel ``wanted`` names, once the policy and the channel rules (http://, allowed
    lists, an unlisted local folder decided like a local-path install, a local folder that holds
    a channel) admit it. Raises before anything is written."""
    from ..channels import check_allowed, check_channel_folder

    api.note(target=f"channel={wanted}")
    channel, risk = classify_channel(api, wanted)
    details = {"channel": wanted}
    if risk == sec.RISK_LOCAL_PATH:
        api.require(sec.CHANNEL_SELECT, sec.RISK_CHANNEL_LOCAL, source=channel.url, details=details)
        _require_local_path(api, channel)
    else:
        api.require(sec.CHANNEL_SELECT, risk, source=channel.url, details=details)
    cfg = api.manager.config
    check_allowed(
        channel,
        allow_remote_channel=True,  # the policy above already decided on listing
        allowed_channels=cfg["allowed_channels"],
        http_channel_enabled=cfg["http_channel_enabled"],
    )
    if channel.is_local:
        check_channel_folder(channel)
    return channel


def _require_local_path(api: HttpDoor, channel: Channel) -> None:
    """An unlisted local channel is decided as the install it stands for: a local path
    (allow_git_url_install and a loopback listener), with a reason that says why."""
    decision = api.decide(sec.INSTALL, sec.RISK_LOCAL_PATH, source=channel.url)
    if decision.allowed:
        return
    decision = dataclasses.replace(
        decision,
        reason=f"selecting the local channel {channel.url}, which neither channels.list nor "
        f"allowed_channels names, counts as installing from a local path: {decision.reason}",
        hint=f"{decision.hint} Or name the folder in channels.list ('name::{channel.url}') or in "
        "allowed_channels (the [security] section) if you trust what it lists.",
    )
    api.note(operation=decision.operation, decision="denied", reason=decision.reason)  # the audit line
    sec.enforce(decision, {"channel": channel.url})


async def post_channels(api: HttpDoor, request: web.Request) -> web.Response:
    body = await read_json(request)
    wanted = body.get("name") or body.get("url")
    if not isinstance(wanted, str) or not wanted.strip():
        raise RequestInvalid(
            "give the channel as 'name' (from channels.list) or 'url'",
            details={"field": "name"},
            hint="GET /offline-manager/v1/channels lists the names.",
        )
    await select_channel(api, wanted)
    return ok(_channels_data(api))


# --- cache -----------------------------------------------------------------------------------------
async def get_cache(api: HttpDoor, request: web.Request) -> web.Response:
    m = api.manager
    health = await asyncio.to_thread(m.cache.health)
    view = api.loaded_view
    return ok(
        {
            "cache_dir": str(m.cache.cache_dir),
            "ttl": m.cache.ttl,
            "files": health,
            "catalog": _view_summary(view) if view else None,
        }
    )


def _view_summary(view: Any) -> dict[str, Any]:
    return {
        "channel": view.channel.to_dict(),
        **dict(view.catalog.summary()),
        "sources": dict(view.sources),
        "age_seconds": view.oldest_age_seconds,
        "notices": [n.to_dict() for n in view.notices],
    }


async def refresh_cache(api: HttpDoor, request: web.Request) -> web.Response:
    """Revalidate the channel files through the gate (offline: the cache is reported, no socket)."""
    view = await api.view("remote")
    return ok(_view_summary(view))


# --- policy, status, version, reboot ----------------------------------------------------------------
# what is not a queued task: settings, channels, the network mode, snapshot removal, reboot
SETTING_ROWS = (
    ("snapshot_remove", sec.SNAPSHOT_REMOVE, ""),
    ("reboot", sec.REBOOT, ""),
    ("config_write", sec.CONFIG_WRITE, ""),
    ("channel_select", sec.CHANNEL_SELECT, sec.RISK_CHANNEL_LISTED),
    ("channel_select_remote", sec.CHANNEL_SELECT, sec.RISK_CHANNEL_REMOTE),
    ("network_tighten", sec.NETWORK_MODE, sec.RISK_NET_TIGHTEN),
    ("network_loosen", sec.NETWORK_MODE, sec.RISK_NET_LOOSEN),
)


def policy_rows() -> tuple[tuple[str, str, str], ...]:
    """(row, operation, risk) of GET /v1/policy: every task kind's cells (the task table), then settings."""
    from ..kinds import KINDS

    return tuple((row, k.operation, risk) for k in KINDS for row, risk in k.policy_rows) + SETTING_ROWS


async def get_policy(api: HttpDoor, request: web.Request) -> web.Response:
    s = api.settings_for(request.remote or "")  # the table as this caller sees it (a read opens no note)
    rows = {}
    for name, op, risk in policy_rows():
        d = sec.decide(s, op, risk)
        rows[name] = {"allowed": d.allowed, "operation": op, "risk": risk, "reason": d.reason, "hint": d.hint}
    return ok({"settings": s.to_dict(), "levels": list(sec.LEVELS), "operations": rows})


async def health(api: HttpDoor, request: web.Request) -> web.Response:
    """The liveness probe: answers as soon as the routes are mounted, without building the Manager."""
    return ok({"version": __version__, "comfyui_root": api.comfyui_root})


async def get_status(api: HttpDoor, request: web.Request) -> web.Response:
    m = api.manager
    view = api.loaded_view
    return ok(
        {
            "version": __version__,
            "door": api.door,
            "comfyui_root": str(m.layout.comfyui_root),
            "comfyui_version": m.host.comfyui_version() if api.door == "comfyui" else None,
            "config_path": str(m.config.path),
            "network_mode": m.config["network_mode"],
            "security_level": m.config["security_level"],
            "listen": api.listen,
            "loopback": api.settings.loopback,
            "channel_url": m.config["channel_url"],
            "catalog": _view_summary(view) if view else None,
            # the queue is built by the first queue request; status never pays for that
            "queue": api.queue.status() if api.queue_built else None,
            "task_kinds": list(api.kinds) if api.queue_built else None,
            "started_at": api.started_at,
            "can_restart": api.restart is not None,
            "route_owners": api.route_owners,
        }
    )


async def reboot(api: HttpDoor, request: web.Request) -> web.Response:
    """Answer first, then restart the host a moment later (the classic route never answered)."""
    if api.restart is None:
        raise NotImplementedYet(
            "this server cannot restart ComfyUI (standalone mode)",
            hint="Restart ComfyUI yourself; the standalone server serves files only.",
        )
    asyncio.get_running_loop().call_later(RESTART_DELAY, api.restart)
    return ok({"restarting": True, "in_seconds": RESTART_DELAY})


async def get_openapi(api: HttpDoor, request: web.Request) -> web.Response:
    from .openapi import build_document  # the document imports the route table, which imports us

    return web.json_response(build_document())
