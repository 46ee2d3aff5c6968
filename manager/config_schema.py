"""The declared table of every config.ini setting (the value parsers live in config_values.py).

One place lists every key: its section, default, type, allowed values and help. The loader
(``config.py``), the shipped ``config.ini`` and ``docs/config.md`` are all checked against
this table by tests, so a setting cannot exist in one and be missing from another.

Keys marked ``classic`` are read by the classic ComfyUI-Manager too and keep its meaning
and default, so an existing classic ``config.ini`` works unchanged.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .config_values import (
    REWRITE_ARROW,
    ConfigValue,
    ValueInvalid,
    allowed_text,
    coerce,
    format_value,
    parse_rewrite,
    parse_text,
    redact,
    redact_text,
)

__all__ = [
    "TYPES",
    "SECTIONS",
    "ENV_PREFIX",
    "Setting",
    "DEFAULT_CHANNEL_URL",
    "DEFAULT_REGISTRY_URL",
    "MIRROR_FAMILIES",
    "REWRITE_ARROW",
    "read_sections",
    "SETTINGS",
    "SETTINGS_BY_KEY",
    "RETIRED_KEYS",
    "FOREIGN_KEYS",
    "ValueInvalid",
    "allowed_text",
    "parse_rewrite",
    "parse_text",
    "format_value",
    "coerce",
    "redact",
    "redact_text",
    "suggest_keys",
    "ConfigValue",
]

TYPES = ("str", "bool", "int", "float", "choice", "list", "url", "url-list")
SECTIONS = ("default", "security", "mirrors")
ENV_PREFIX = "CM_"


@dataclass(frozen=True)
class Setting:
    """One declared setting. ``env`` defaults to ``CM_<KEY_UPPER>``."""

    key: str
    section: str
    default: Any
    type: str
    help: str
    choices: tuple[str, ...] = ()
    classic: bool = False
    secret: bool = False
    env: str = ""
    # Case-fold values before matching choices (the classic manager lower-cases these).
    lower: bool = False
    # Inclusive lower bound for int/float settings.
    minimum: float | None = None
    # Extra line for docs: what the classic manager does differently, if anything.
    note: str = ""
    # A classic environment variable read below ``env`` (GITHUB_ENDPOINT, HF_ENDPOINT).
    classic_env: str = ""

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"setting {self.key}: unknown section {self.section!r}")
        if self.type not in TYPES:
            raise ValueError(f"setting {self.key}: unknown type {self.type!r}")
        if (self.type == "choice") != bool(self.choices):
            raise ValueError(f"setting {self.key}: choices go with type 'choice' only")
        if not self.env:
            object.__setattr__(self, "env", ENV_PREFIX + self.key.upper())


def _s(key: str, section: str, default: Any, type_: str, help_: str, **kw: Any) -> Setting:
    return Setting(key=key, section=section, default=default, type=type_, help=help_, **kw)


DEFAULT_CHANNEL_URL = "https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main"
DEFAULT_REGISTRY_URL = "https://api.comfy.org"

_D, _S, _M = "default", "security", "mirrors"

# The endpoint families a [mirrors] key rewrites: key -> the public URL prefix it replaces.
MIRROR_FAMILIES: Mapping[str, str] = MappingProxyType(
    {
        "github": "https://github.com",
        "raw_github": "https://raw.githubusercontent.com",
        "registry": DEFAULT_REGISTRY_URL,
        "pypi": "https://pypi.org/simple",
        "huggingface": "https://huggingface.co",
    }
)


def read_sections(setting: Setting) -> tuple[str, ...]:
    """The sections a setting is read from: [default] and [security] keys in either (classic
    files keep security keys in [default]); [mirrors] keys only in [mirrors]."""
    return (_M,) if setting.section == _M else (_D, _S)


def _mirror(key: str, what: str, example: str, **kw: Any) -> Setting:
    return _s(
        key,
        _M,
        "",
        "url",
        f"Mirror of {what} ({MIRROR_FAMILIES[key]}): every URL under that prefix is fetched from this "
        f"URL prefix instead, the rest of the URL kept (e.g. {example}). Empty = no rewrite.",
        secret=True,
        **kw,
    )


SETTINGS: tuple[Setting, ...] = (
    # --- network ------------------------------------------------------------------------
    _s(
        "network_mode",
        _D,
        "public",
        "choice",
        "public: fetch with short timeouts and fall back to the cache; private: reach only the "
        "configured mirrors (private_mirrors, pip_index_url); offline: never open a socket.",
        choices=("public", "private", "offline"),
        classic=True,
        lower=True,
    ),
    _s(
        "channel_url",
        _D,
        DEFAULT_CHANNEL_URL,
        "url",
        "Base URL of the active channel (the folder holding custom-node-list.json, "
        "model-list.json, ...). http(s):// or file://.",
        classic=True,
    ),
    _s(
        "default_cache_as_channel_url",
        _D,
        False,
        "bool",
        "true: every URL of the shipped default channel (the 'default' line of channels.list) is "
        "read from channel_url instead, as a mirror rewrite (the classic meaning: the default "
        "catalog cache comes from channel_url). No effect while channel_url is the default.",
        classic=True,
    ),
    _s(
        "cache_ttl",
        _D,
        86400,
        "int",
        "Seconds a cached channel file counts as fresh; older copies are still used but flagged "
        "stale. 0 = always revalidate when the network is allowed.",
        minimum=0,
    ),
    _s(
        "db_mode",
        _D,
        "cache",
        "choice",
        "Default data source of the panel: cache (cached copy, refreshed when stale), local "
        "(files bundled with the Manager) or remote (always refetch).",
        choices=("cache", "local", "remote"),
        classic=True,
    ),
    _s(
        "registry_url",
        _D,
        DEFAULT_REGISTRY_URL,
        "url",
        "Base URL of the Comfy Registry API (point it at a mirror in private mode).",
    ),
    _s(
        "private_mirrors",
        _D,
        (),
        "url-list",
        "URL prefixes that private mode may reach (channel hosts, registry, git and model "
        "mirrors). Comma- or newline-separated.",
        secret=True,
    ),
    _s(
        "http_timeout",
        _D,
        30.0,
        "float",
        "Seconds an HTTP request may wait for data before it is abandoned.",
        minimum=0.1,
    ),
    _s(
        "http_connect_timeout",
        _D,
        10.0,
        "float",
        "Seconds to wait for an HTTP connection to be established.",
        minimum=0.1,
    ),
    _s(
        "bypass_ssl",
        _D,
        False,
        "bool",
        "Do not verify TLS certificates (only for a company proxy that intercepts TLS; prefer "
        "installing its CA certificate).",
        classic=True,
    ),
    # --- installs -----------------------------------------------------------------------
    _s(
        "use_uv",
        _D,
        False,
        "bool",
        "true: install Python packages with `uv pip`; false: with `python -m pip`. Left unset, "
        "uv is used when running it works, else pip (uv is still used when pip is missing).",
        classic=True,
        note="The classic manager defaults to true when no config.ini exists and uv is importable (not on Windows).",
    ),
    _s(
        "python_executable",
        _D,
        "",
        "str",
        "Python used for dependency installs; empty = the interpreter running ComfyUI.",
    ),
    _s(
        "pip_index_url",
        _D,
        "",
        "url",
        "Package index used for installs (required for pip in private mode); empty = the installer's default.",
        secret=True,
    ),
    _s(
        "wheelhouse_dirs",
        _D,
        (),
        "list",
        "Extra folders of .whl files searched before any index (offline mode uses only these and "
        "the Manager's own wheelhouse). Comma- or newline-separated.",
    ),
    _s(
        "node_pack_preference",
        _D,
        (),
        "list",
        "Packs preferred, in order, when several packs provide a node type a workflow is missing: "
        "pack ids or authors (first match wins). Without a match the type is left for the user to "
        "choose. Comma- or newline-separated.",
    ),
    _s("git_exe", _D, "", "str", "Path to the git executable; empty = `git` from PATH.", classic=True),
    _s(
        "always_lazy_install",
        _D,
        False,
        "bool",
        "Defer every dependency install to the next ComfyUI start.",
        classic=True,
    ),
    _s(
        "downgrade_blacklist",
        _D,
        (),
        "list",
        "Pip packages never downgraded, added to the built-in set (torch family, transformers, "
        "safetensors, kornia). Comma-separated.",
        classic=True,
    ),
    _s(
        "model_download_by_agent",
        _D,
        False,
        "bool",
        "Download models with a plain HTTP client and a browser user agent.",
        classic=True,
    ),
    _s(
        "model_store",
        _D,
        (),
        "list",
        "Local model store: folders, file:// or http(s):// URL prefixes holding model files as "
        "<folder>/<subfolder>/<file>, <file> or sha256/<hex>. Tried before the model's own URL; "
        "in offline mode the only source (folders and file:// only). An http(s) store is "
        "reachable in private mode too. Comma- or newline-separated.",
    ),
    _s(
        "snapshot_retention",
        _D,
        20,
        "int",
        "How many auto-snapshots (taken before every update-all and restore) to keep; older ones "
        "are deleted. Snapshots saved by hand are never deleted. 0 = keep every one.",
        minimum=0,
    ),
    # --- security level -----------------------------------------------------------------
    _s(
        "security_level",
        _D,
        "normal",
        "choice",
        "strong: read-only plus ComfyUI update; normal: catalog installs; normal-: also "
        "risky installs when listening on loopback; weak: everything.",
        choices=("strong", "normal", "normal-", "weak"),
        classic=True,
        lower=True,
    ),
    # --- ComfyUI and front-end behaviour --------------------------------------------------
    _s(
        "file_logging",
        _D,
        True,
        "bool",
        "Copy console output to a log file in the ComfyUI user folder.",
        classic=True,
        note="The classic manager reads a missing key as false; here a missing key is true.",
    ),
    _s(
        "preview_method",
        _D,
        "none",
        "choice",
        "Latent preview method applied at start when ComfyUI was launched without "
        "--preview-method and has no per-queue preview setting.",
        choices=("auto", "latent2rgb", "taesd", "none"),
        classic=True,
    ),
    _s(
        "share_option",
        _D,
        "all",
        "choice",
        "Which share targets the Share button offers.",
        choices=("none", "openart", "youml", "matrix", "comfyworkflows", "copus", "all"),
        classic=True,
    ),
    _s(
        "component_policy",
        _D,
        "workflow",
        "choice",
        "Which copy wins when a workflow brings a component that already exists: workflow, higher (version) or mine.",
        choices=("workflow", "higher", "mine"),
        classic=True,
    ),
    _s(
        "update_policy",
        _D,
        "stable-comfyui",
        "choice",
        "What updating ComfyUI moves to: the latest stable tag or the nightly branch.",
        choices=("stable-comfyui", "nightly-comfyui"),
        classic=True,
    ),
    _s(
        "windows_selector_event_loop_policy",
        _D,
        False,
        "bool",
        "Windows only: use the selector event loop (works around some socket errors).",
        classic=True,
    ),
    # --- [security] ---------------------------------------------------------------------
    _s(
        "allow_git_url_install",
        _S,
        False,
        "bool",
        "Allow installing a node pack from an arbitrary git URL (only on a loopback listener).",
        classic=True,
        note="Classic files keep it in [default]; it is read there too.",
    ),
    _s(
        "allow_pip_install",
        _S,
        False,
        "bool",
        "Allow installing an arbitrary pip package by name (only on a loopback listener).",
        classic=True,
        note="Classic files keep it in [default]; it is read there too.",
    ),
    _s(
        "allow_external_pip",
        _S,
        False,
        "bool",
        "Allow pack requirements that point outside the configured indexes (direct URLs, "
        "git+ specs, --index-url lines).",
    ),
    _s(
        "allow_remote_channel",
        _S,
        False,
        "bool",
        "Allow selecting a channel URL that is in neither channels.list nor allowed_channels.",
    ),
    _s(
        "allowed_channels",
        _S,
        (),
        "url-list",
        "Channel URLs allowed besides the default channel and channels.list. Comma- or newline-separated.",
    ),
    _s(
        "allowed_pip_sources",
        _S,
        (),
        "url-list",
        "Package index URL prefixes pip may use besides pip_index_url. Comma- or newline-separated.",
        secret=True,
    ),
    _s(
        "allowed_hosts",
        _S,
        (),
        "list",
        "Extra host names (optionally name:port) a loopback listener answers to and whose pages may "
        "drive it, e.g. behind a reverse proxy; loopback names and addresses always work. "
        "Comma- or newline-separated.",
    ),
    _s(
        "trusted_networks",
        _S,
        (),
        "list",
        "Networks (CIDR, e.g. 192.168.1.0/24, fd00::/8, 10.0.0.7/32) whose peers may run risky "
        "operations (installs, updates, removals, settings) when the server listens on a non-loopback "
        "address; the security level and flags still apply. Empty: a non-loopback listener refuses them "
        "to every peer. Loopback listeners and the CLI ignore it. Comma- or newline-separated.",
    ),
    _s(
        "allowed_http_hosts",
        _S,
        (),
        "list",
        "Hosts (name or name:port) that public mode may reach over plain http:// for models, "
        "registry archives, pack archives and channel files; elsewhere only https:// is used. "
        "Comma- or newline-separated.",
    ),
    _s(
        "allowed_download_hosts",
        _S,
        (),
        "list",
        "Extra hosts a download may be redirected to in public mode (besides the first URL's host, "
        "the configured channel, registry, store and mirror hosts, and the known CDNs of Hugging "
        "Face, GitHub, the Comfy Registry and Civitai); '*.example.com' covers sub-domains. "
        "Comma- or newline-separated.",
    ),
    _s(
        "bundle_allowed_signers",
        _S,
        "",
        "str",
        "OpenSSH allowed_signers file (ssh-keygen -Y verify) naming the keys whose signatures bundle "
        "verify/import accept (docs/bundles.md). Empty: a signature is reported, not checked.",
    ),
    _s(
        "require_signed_bundles",
        _S,
        False,
        "bool",
        "Refuse to import an offline bundle that carries no signature valid against bundle_allowed_signers.",
    ),
    _s(
        "http_channel_enabled",
        _S,
        False,
        "bool",
        "Allow plain http:// channel URLs (otherwise only https:// and file://).",
        classic=True,
        note="Classic files keep it in [default]; it is read there too.",
    ),
    _s(
        "audit_logging",
        _S,
        True,
        "bool",
        "Append one JSON line per state-changing request and per operation result (time, "
        "address, route, operation, target, decision, result, duration) to "
        "<manager dir>/logs/audit.jsonl, rotated at 5 MiB.",
    ),
    _s(
        "log_level",
        _S,
        "info",
        "choice",
        "Verbosity of the Manager's own log.",
        choices=("debug", "info", "warning", "error"),
        lower=True,
    ),
    # --- [mirrors]: prefix rewrites applied by the network gate before the mode check ---------
    _mirror(
        "github",
        "GitHub: git remotes, releases and archives",
        "https://git.corp/mirror/github",
        classic_env="GITHUB_ENDPOINT",
        note="The classic GITHUB_ENDPOINT environment variable sets it too (below CM_GITHUB).",
    ),
    _mirror("raw_github", "raw GitHub files (channel data)", "https://git.corp/mirror/raw"),
    _mirror("registry", "the Comfy Registry API", "https://registry.corp"),
    _mirror("pypi", "the Python package index", "https://nexus.corp/repository/pypi/simple"),
    _mirror(
        "huggingface",
        "Hugging Face model downloads",
        "https://hf.corp",
        classic_env="HF_ENDPOINT",
        note="The classic HF_ENDPOINT environment variable sets it too (below CM_HUGGINGFACE).",
    ),
    _s(
        "rewrites",
        _M,
        (),
        "list",
        "Extra ordered prefix rewrites, one 'FROM -> TO' per line (FROM an http(s):// prefix, TO an "
        "http(s):// or file:// prefix), tried before the families above; the first match wins. "
        "Comma- or newline-separated.",
        secret=True,
    ),
)

SETTINGS_BY_KEY: Mapping[str, Setting] = MappingProxyType({s.key: s for s in SETTINGS})

# Keys older classic releases wrote into every config.ini. They no longer mean anything;
# they are accepted (not an unknown-key error) and left untouched on save.
RETIRED_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "badge_mode": "node badge display of old classic releases, now a ComfyUI front-end setting",
        "default_ui": "start page of old classic releases",
        "double_click_policy": "node double-click action of old classic releases",
        "skip_migration_check": "migration prompt of old classic releases",
    }
)

# Keys the packaged ComfyUI-Manager 4.x writes into a shared config.ini that mean nothing here.
# Accepted (not an unknown-key error) and never written, so that manager keeps reading them.
FOREIGN_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "use_unified_resolver": "ComfyUI-Manager 4.x: its dependency resolver",
        "verbose": "ComfyUI-Manager 4.x: its log verbosity",
        "allow_flagged_nodepack_install": "ComfyUI-Manager 4.x: installs of packs the registry flagged",
    }
)


def suggest_keys(name: str, *, limit: int = 3) -> list[str]:
    """Declared keys close to ``name`` (typos, dashes for underscores)."""
    probe = name.strip().lower().replace("-", "_")
    return difflib.get_close_matches(probe, list(SETTINGS_BY_KEY), n=limit, cutoff=0.6)
