"""``doctor``: the pre-deploy checklist, as data.

``run_checks(manager, online=..., listen=...)`` returns a ``DoctorReport`` of frozen ``Check``
records (``id``, ``status`` pass/warn/fail, ``title``, ``detail``, ``fix``). The doors only render
it: ``cm-cli.py doctor [--json]`` (non-zero exit when a check fails), ``GET
/offline-manager/v1/doctor`` and the panel's settings view.

Nothing here opens a socket unless ``online`` is asked *and* the network mode allows the URL
(every probe goes through the network gate, which refuses before any socket in offline mode).
Local programs are run (ComfyUI's python with ``--version`` and ``-m pip --version``, git, uv).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .channels import ChannelSet, check_channel_folder, parse_channels_list
from .config_share import old_config_locations
from .errors import ManagerError
from .import_failures import load_report
from .network import NetworkGate, run_sync
from .security import is_loopback_listen

if TYPE_CHECKING:
    from .context import Manager

PASS, WARN, FAIL = "pass", "warn", "fail"
STATUSES = (PASS, WARN, FAIL)
GB = 1024**3
MIN_DISK = 10 * GB
MIN_MEMORY = 4 * GB

NETWORK_MEANING = {
    "public": "anything, with short timeouts; failures fall back to the cache",
    "private": "only the configured mirrors (private_mirrors, allowed_channels, allowed_pip_sources, "
    "pip_index_url, model_store, channel_url/registry_url when set); everything else is refused before a socket",
    "offline": "nothing: no socket is ever opened; file:// channels, the cache, the wheelhouse and the model "
    "store still work",
}
SECURITY_FORBIDS = {
    "strong": "forbids every install, update, removal and restore (read-only plus ComfyUI update)",
    "normal": "forbids risky sources (git URLs, pip specs, non-safetensors models outside the channel) "
    "unless their [security] flag allows them on a loopback listener",
    "normal-": "forbids git-URL and pip installs without their [security] flag; risky models only on loopback",
    "weak": "forbids nothing beyond the [security] flags: any pack or model may be installed",
}


@dataclass(frozen=True)
class Check:
    id: str
    status: str  # pass | warn | fail
    title: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "status": self.status, "title": self.title, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]
    comfyui_root: str = ""
    config_path: str = ""
    online: bool = False
    generated_at: float = field(default_factory=time.time)
    endpoints: tuple[dict[str, object], ...] = ()  # mirrors.endpoint_report: family, upstream, effective, rule

    def count(self, status: str) -> int:
        return sum(1 for c in self.checks if c.status == status)

    @property
    def status(self) -> str:
        """The worst status of any check."""
        return FAIL if self.count(FAIL) else WARN if self.count(WARN) else PASS

    @property
    def ok(self) -> bool:
        return self.count(FAIL) == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ok": self.ok,
            "counts": {s: self.count(s) for s in STATUSES},
            "comfyui_root": self.comfyui_root,
            "config_path": self.config_path,
            "online": self.online,
            "generated_at": self.generated_at,
            "checks": [c.to_dict() for c in self.checks],
            "endpoints": [dict(e) for e in self.endpoints],
        }


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


def _run_version(cmd: list[str]) -> tuple[str | None, str]:
    from .deps.backends.detect import probe_tool

    return probe_tool(cmd, timeout=20)


# --- the checks -----------------------------------------------------------------------------------
def check_python(python: str) -> Check:
    version, why = _run_version([python])
    if version is None:
        return Check(
            "python",
            FAIL,
            "ComfyUI's python",
            f"{python} does not run: {why}",
            "Set python_executable in config.ini to the python that runs ComfyUI.",
        )
    parts = version.replace("Python", "").strip().split(".")
    try:
        major_minor = (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        major_minor = (0, 0)
    detail = f"{python}: {version}"
    if major_minor >= (3, 10):
        return Check("python", PASS, "ComfyUI's python", detail)
    if major_minor >= (3, 9):
        return Check("python", WARN, "ComfyUI's python", detail + " (ComfyUI wants 3.10 or newer)", "Use python 3.10+.")
    return Check("python", FAIL, "ComfyUI's python", detail + " is too old", "Run ComfyUI with python 3.10 or newer.")


def check_disk(root: Path) -> Check:
    try:
        free = shutil.disk_usage(root).free
    except OSError as exc:
        return Check("disk", WARN, "Free disk", f"cannot read the free space of {root}: {exc}", "Check the folder.")
    detail = f"{_gb(free)} free under {root}"
    if free >= MIN_DISK:
        return Check("disk", PASS, "Free disk", detail)
    status = FAIL if free < GB else WARN
    fix = "Free space (models and wheels need several GB): cm-cli.py trash empty, or move models to another disk."
    return Check("disk", status, "Free disk", detail + " (want more than 10 GB)", fix)


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(read: Callable[[], int | None] = _memory_bytes) -> Check:
    total = read()
    if total is None:
        return Check("memory", WARN, "Memory", "the total memory cannot be read on this system", "Check it by hand.")
    if total >= MIN_MEMORY:
        return Check("memory", PASS, "Memory", f"{_gb(total)} in total")
    return Check(
        "memory", WARN, "Memory", f"{_gb(total)} in total (want more than 4 GB)", "Give the machine more memory."
    )


def check_network(m: Manager) -> Check:
    mode = str(m.config["network_mode"])
    detail = f"network_mode = {mode} (from {m.config.origin('network_mode')}): may reach {NETWORK_MEANING[mode]}"
    if mode == "private" and not (m.gate.policy.private_mirrors or m.gate.policy.allowed_prefixes):
        return Check(
            "network_mode",
            WARN,
            "Network mode",
            detail + "; no mirror is configured, so nothing is reachable",
            "Set private_mirrors (and pip_index_url) in config.ini, or use network_mode = offline.",
        )
    return Check("network_mode", PASS, "Network mode", detail)


def _probe(gate: NetworkGate, url: str) -> str:
    """'' when ``url`` answered (any bytes), else why not. Through the gate: nothing is opened
    for a URL the mode refuses."""
    from .errors import ResponseTooLarge
    from .fetch import gated_get

    try:
        run_sync(gated_get(gate, url, purpose="channel", headers={"Range": "bytes=0-1023"}, max_bytes=65536))
    except ResponseTooLarge:
        return ""  # it answered
    except ManagerError as exc:
        return f"[{exc.code}] {exc.message}"
    return ""


def check_channels(m: Manager, *, online: bool) -> list[Check]:
    source = m.layout.channels_file
    if source.is_file():
        try:
            channels = ChannelSet(
                parse_channels_list(source.read_text(encoding="utf-8"), source=str(source)), source=str(source)
            )
        except (ManagerError, OSError, UnicodeDecodeError) as exc:
            text = exc.message if isinstance(exc, ManagerError) else str(exc)
            return [
                Check(
                    "channels",
                    FAIL,
                    "channels.list",
                    f"{source} cannot be parsed: {text}",
                    f"Fix {source}: one 'name::url' per line.",
                )
            ]
    else:
        channels = m.channels
    if not len(channels):
        return [Check("channels", WARN, "channels.list", "no channel is listed", f"Add 'name::url' lines to {source}.")]
    out = [Check("channels", PASS, "channels.list", f"{len(channels)} channel(s) parsed from {channels.source}")]
    mode = str(m.config["network_mode"])
    for channel in channels:
        cid, title = f"channel:{channel.name}", f"Channel {channel.name}"
        if NetworkGate.is_local(channel.url):
            try:
                folder = check_channel_folder(channel)
            except ManagerError as exc:
                out.append(Check(cid, FAIL, title, exc.message, exc.hint or f"Fix the line of {channel.name}."))
                continue
            out.append(Check(cid, PASS, title, f"{channel.url}: local folder {folder} holds a channel"))
            continue
        if not online or mode == "offline":
            why = "offline mode opens no socket" if mode == "offline" else "run cm-cli.py doctor --online to probe it"
            out.append(Check(cid, PASS, title, f"{channel.url}: remote, not probed ({why})"))
            continue
        try:
            m.gate.decide(channel.url, "channel")
        except ManagerError as exc:
            out.append(Check(cid, WARN, title, f"{channel.url}: refused in {mode} mode: {exc.message}", exc.hint))
            continue
        problem = _probe(m.gate, m.channels.file_url(channel, "custom-node-list.json"))
        if problem:
            out.append(Check(cid, FAIL, title, f"{channel.url}: {problem}", "Check the URL, the proxy or the mirror."))
        else:
            out.append(Check(cid, PASS, title, f"{channel.url}: reachable"))
    return out


ENDPOINT_TITLES = {
    "github": "GitHub (git clones)",
    "raw_github": "raw GitHub (channel files)",
    "registry": "Comfy Registry",
    "pypi": "package index (pip)",
    "huggingface": "Hugging Face (models)",
    "channel": "active channel",
    "default_channel": "default channel",
}
_ENDPOINT_PURPOSE = {"github": "git", "pypi": "pip", "huggingface": "model", "registry": "registry"}


def check_endpoints(m: Manager) -> list[Check]:
    """The effective URL of each endpoint family after the ``[mirrors]`` rewrites (``mirrors.endpoint_report``),
    and whether the network mode lets the gate reach it. A family the mode refuses is only a note,
    except the active channel in private mode (the catalog cannot be refreshed then): a warning."""
    from .mirrors import endpoint_report

    mode = str(m.config["network_mode"])
    out = []
    for end in endpoint_report(m.config):
        shown = end.to_dict()
        detail = str(shown["effective"])
        detail += f" (rewritten from {shown['upstream']} by {end.rule})" if end.rewritten else " (no [mirrors] rule)"
        status, fix = PASS, ""
        if NetworkGate.is_local(end.effective):
            detail += "; a local path: works in every network mode"
        else:
            try:
                m.gate.decide(end.upstream, _ENDPOINT_PURPOSE.get(end.family, "channel"))
            except ManagerError as exc:
                detail += f"; refused in {mode} mode ({exc.code})"
                if end.family == "channel" and mode == "private":
                    status = WARN
                    fix = "Add a [mirrors] rule or list the channel in allowed_channels / private_mirrors."
            else:
                detail += f"; allowed in {mode} mode"
        title = f"Endpoint: {ENDPOINT_TITLES.get(end.family, end.family)}"
        out.append(Check(f"endpoint:{end.family}", status, title, detail, fix))
    return out


def check_cache(m: Manager) -> Check:
    from .channel_cache import format_age

    rows = m.cache.health()
    active = m.active_channel()
    if not rows:
        if NetworkGate.is_local(active.url):
            return Check("cache", PASS, "Channel cache", f"empty; the active channel {active.name} is a local folder")
        status = FAIL if m.config["network_mode"] == "offline" else WARN
        return Check(
            "cache",
            status,
            "Channel cache",
            f"the cache at {m.cache.cache_dir} is empty and the active channel {active.name} is remote",
            "On a machine with network run cm-cli.py update-cache and copy user/__manager/cache here, "
            "or select a file:// channel.",
        )
    corrupt = [r for r in rows if r["state"] == "corrupt"]
    stale = [r for r in rows if r["state"] == "stale"]
    ages = [float(r["age_seconds"]) for r in rows if r.get("age_seconds") is not None]
    detail = f"{len(rows)} file(s), oldest {format_age(max(ages)) if ages else '?'}, {len(stale)} stale"
    if corrupt:
        names = ", ".join(str(r["file"]) for r in corrupt[:3])
        return Check(
            "cache", FAIL, "Channel cache", f"{detail}; {len(corrupt)} corrupt: {names}", "cm-cli.py update-cache"
        )
    if stale:
        return Check(
            "cache",
            WARN,
            "Channel cache",
            f"{detail} (older than cache_ttl = {m.config['cache_ttl']} s)",
            "cm-cli.py update-cache (on a box with network; offline boxes use stale copies as they are)",
        )
    return Check("cache", PASS, "Channel cache", detail)


def check_tools(m: Manager, python: str) -> list[Check]:
    from .deps.backends.detect import uv_candidates

    out = []
    git = str(m.config["git_exe"] or "git")
    version, why = _run_version([git])
    out.append(
        Check("git", PASS, "git", f"{git}: {version}")
        if version
        else Check("git", FAIL, "git", f"{git} does not run: {why}", "Install git, or set git_exe in config.ini.")
    )
    pip, pip_why = _run_version([python, "-m", "pip"])
    uv = None
    uv_why = "not found"
    for cand in uv_candidates(python):
        uv, uv_why = _run_version(list(cand))
        if uv:
            uv_cmd = " ".join(cand)
            break
    if pip:
        out.append(Check("pip", PASS, "pip", f"{python} -m pip: {pip}"))
    else:
        out.append(
            Check(
                "pip",
                WARN if uv else FAIL,
                "pip",
                f"{python} -m pip does not run: {pip_why}",
                f"{python} -m ensurepip, or install uv" if not uv else "uv is used instead",
            )
        )
    if uv:
        out.append(Check("uv", PASS, "uv", f"{uv_cmd}: {uv}"))
    else:
        out.append(Check("uv", PASS if pip else FAIL, "uv", f"not found ({uv_why}); pip is used"))
    return out


def check_security(m: Manager) -> Check:
    level = str(m.config["security_level"])
    flags = [
        k
        for k in ("allow_git_url_install", "allow_pip_install", "allow_external_pip", "allow_remote_channel")
        if m.config[k]
    ]
    detail = f"security_level = {level} (from {m.config.origin('security_level')}): {SECURITY_FORBIDS[level]}"
    detail += f"; flags on: {', '.join(flags)}" if flags else "; no [security] flag is on"
    if level == "weak":
        return Check("security", WARN, "Security level", detail, "Use security_level = normal unless you need weak.")
    return Check("security", PASS, "Security level", detail)


def check_ssl(m: Manager) -> Check:
    if m.config["bypass_ssl"]:
        return Check(
            "ssl",
            WARN,
            "TLS verification",
            "bypass_ssl = true: certificates are not verified",
            "Install the proxy's CA certificate and set bypass_ssl = false.",
        )
    return Check("ssl", PASS, "TLS verification", "certificates are verified (bypass_ssl = false)")


def check_listener(m: Manager, listen: str) -> Check:
    nets = list(m.config["trusted_networks"])
    broad = []
    for text in nets:
        try:
            net = ipaddress.ip_network(str(text), strict=False)
        except ValueError:
            continue
        if net.prefixlen < (8 if net.version == 4 else 16):
            broad.append(str(net))
    where = f"listener {listen}" if listen else "the CLI (no listener)"
    trusted = ", ".join(nets) if nets else "none"
    if listen and not is_loopback_listen(listen):
        detail = f"{where} is reachable from the network; trusted_networks: {trusted}"
        if broad:
            return Check(
                "listener",
                FAIL,
                "Listener and trusted networks",
                detail + f" ({', '.join(broad)} trusts almost everyone)",
                "Narrow trusted_networks to the admin LAN (e.g. 192.168.1.0/24).",
            )
        if not nets:
            detail += " (risky operations are refused to every peer)"
        return Check("listener", PASS, "Listener and trusted networks", detail)
    detail = f"{where} (loopback); trusted_networks: {trusted} (used only on a non-loopback listener)"
    if broad:
        return Check(
            "listener",
            WARN,
            "Listener and trusted networks",
            detail + f"; {', '.join(broad)} would trust almost everyone",
            "Narrow trusted_networks.",
        )
    return Check("listener", PASS, "Listener and trusted networks", detail)


def check_config_files(m: Manager) -> list[Check]:
    cfg = m.config
    in_effect = f"in effect: {cfg.path} ({'exists' if cfg.path and cfg.path.is_file() else 'not created yet'})"
    if cfg.under is not None:
        in_effect += f", read on top of {cfg.under}"
    found = {f.path: f for f in cfg.old_files}
    places = []
    for path, what in old_config_locations(m.layout):
        if path in found:
            places.append(f"{path} ({what}): found")
        elif path.is_file():
            places.append(f"{path} ({what}): found, sets nothing")
    out = [
        Check("config", PASS, "Config files", in_effect + ("; old locations: " + "; ".join(places) if places else ""))
    ]
    for record in cfg.old_files:
        if record.error:
            out.append(
                Check(
                    "config_old",
                    WARN,
                    "Old config file",
                    f"{record.path} cannot be read: {record.error}",
                    f"Fix or delete {record.path}.",
                )
            )
        elif record.differs:
            parts = [
                f"{s.key} = {s.value} (stricter than {s.in_effect}: used)"
                if s.stricter_wins
                else f"{s.key} = {s.value} (in effect: {s.in_effect or '(empty)'}; ignored)"
                for s in record.differs
            ]
            out.append(
                Check(
                    "config_old",
                    WARN,
                    "Old config file differs",
                    f"{record.path}: " + "; ".join(parts),
                    f"cm-cli.py migrate (copies it into the file in effect, keeps a backup), or delete {record.path}",
                )
            )
    other = [p for p in cfg.problems if p.code != "config_conflict"]
    if other:
        out.append(
            Check(
                "config_problems",
                WARN,
                "Config problems",
                " | ".join(p.message for p in other[:5]),
                other[0].hint or "cm-cli.py config",
            )
        )
    return out


def check_import_failures(m: Manager) -> Check:
    report = load_report(m.layout)
    if not report.available:
        note = report.notes[0] if report.notes else "nothing recorded"
        return Check("import_failures", PASS, "Packs that failed to import", f"unknown: {note}")
    if not report.failures:
        return Check("import_failures", PASS, "Packs that failed to import", f"none at {report.recorded_at}")
    names = ", ".join(f.name for f in report.failures[:8])
    first = report.failures[0].name.removesuffix(".py")
    return Check(
        "import_failures",
        FAIL,
        "Packs that failed to import",
        f"{len(report.failures)} at the last ComfyUI start ({report.recorded_at}): {names}",
        f"cm-cli.py fix {first} (reinstalls its requirements), or cm-cli.py disable {first}",
    )


def check_wheelhouse(m: Manager) -> Check:
    from .deps.installer import installer_for

    title = "Wheelhouse coverage"
    packs = [p for p in m.inventory(with_catalog=False).packs if p.enabled and p.has_requirements]
    if not packs:
        return Check("wheelhouse", PASS, title, "no installed pack has a requirements.txt")
    try:
        installer = installer_for(m)
        plan = installer.plan_for([(p.name, Path(p.path)) for p in packs])
        env = installer.environment
        wanted = [(item.requirement, ", ".join(item.packs)) for item in plan.merged if item.requirement is not None]
        missing = installer.wheelhouse().missing(wanted, env, dict(env.installed()))
    except ManagerError as exc:
        return Check("wheelhouse", WARN, title, f"cannot be computed: {exc.message}", exc.hint)
    folders = ", ".join(str(f) for f in installer.policy.wheelhouse_dirs)
    if not missing:
        return Check(
            "wheelhouse",
            PASS,
            title,
            f"every requirement of {len(packs)} pack(s) is installed or in the wheelhouse ({folders})",
        )
    listed = ", ".join(f"{x.requirement} ({x.needed_by})" for x in missing[:6])
    offline = m.config["network_mode"] == "offline"
    return Check(
        "wheelhouse",
        FAIL if offline else WARN,
        title,
        f"{len(missing)} requirement(s) neither installed nor in {folders}: {listed}",
        "On a box with network: cm-cli.py export-deps, then cm-cli.py download-deps requirements-offline.txt, "
        "and copy the wheelhouse here",
    )


def check_bundles(m: Manager) -> Check:
    from .bundles.coverage import doctor_summary

    state, detail, fix = doctor_summary(m)
    return Check("bundles", PASS if state == "pass" else WARN, "Offline bundles", detail, fix)


def run_checks(manager: Manager, *, online: bool = False, listen: str = "") -> DoctorReport:
    """Every check, in checklist order. ``listen``: the server's listen address ('' for the CLI)."""
    python = str(manager.config["python_executable"] or manager.host.python_executable or sys.executable)
    checks: list[Check] = [
        check_python(python),
        check_disk(manager.layout.comfyui_root),
        check_memory(),
        check_network(manager),
    ]
    steps: list[Callable[[], Check | list[Check]]] = [
        lambda: check_channels(manager, online=online),
        lambda: check_endpoints(manager),
        lambda: check_cache(manager),
        lambda: check_tools(manager, python),
        lambda: check_security(manager),
        lambda: check_ssl(manager),
        lambda: check_listener(manager, listen),
        lambda: check_config_files(manager),
        lambda: check_import_failures(manager),
        lambda: check_wheelhouse(manager),
        lambda: check_bundles(manager),
    ]
    for step in steps:
        try:
            got = step()
        except (ManagerError, OSError) as exc:  # one broken check never hides the others
            text = exc.message if isinstance(exc, ManagerError) else str(exc)
            got = Check("doctor", WARN, "A check could not run", text, "Rerun with CM_DEBUG=1 and report it.")
        checks.extend(got if isinstance(got, list) else [got])
    try:
        from .mirrors import endpoint_report

        endpoints = tuple(e.to_dict() for e in endpoint_report(manager.config))
    except ManagerError:  # the check above already said why
        endpoints = ()
    return DoctorReport(
        tuple(checks),
        comfyui_root=str(manager.layout.comfyui_root),
        config_path=str(manager.config.path),
        online=online,
        endpoints=endpoints,
    )
