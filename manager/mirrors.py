"""The mirror map: ordered URL prefix rewrites from the ``[mirrors]`` section of config.ini.

The network gate (``NetworkGate.decide``) applies these rules to every outbound URL *before*
the mode check, so a git remote, a pip index, a channel file, a registry call or a model
download for a public host goes to the company mirror instead; in private mode the rewritten
URL is judged (and the mirrors named here are allowed), and offline mode still refuses every
remote URL (a rule pointing at a ``file://`` folder then works offline).

Rules, first match wins:

1. ``rewrites``: explicit ``FROM -> TO`` lines, in the order written;
2. ``default_cache_as_channel_url = true``: the shipped default channel is read from
   ``channel_url`` (the classic meaning: the default catalog cache comes from channel_url);
3. the families: ``github``, ``raw_github``, ``registry``, ``pypi``, ``huggingface``, each the
   replacement of its public prefix (``MIRROR_FAMILIES``). ``GITHUB_ENDPOINT`` and
   ``HF_ENDPOINT`` set ``github`` and ``huggingface`` as in the classic manager.

``effective_endpoints(config)`` says where each endpoint family goes after the rewrites (for
``doctor``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config_schema import DEFAULT_CHANNEL_URL, MIRROR_FAMILIES, parse_rewrite

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "MIRROR_FAMILIES",
    "PYPI_SIMPLE",
    "Endpoint",
    "effective_endpoints",
    "endpoint_report",
    "mirror_rules",
    "rewrite_url",
    "under_prefix",
]

PYPI_SIMPLE = MIRROR_FAMILIES["pypi"]
Rule = tuple[str, str]


def _normalise(url: str) -> str:
    """Lower-case scheme and host so prefix checks are not fooled by case."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    netloc, sep, path = rest.partition("/")
    return f"{scheme.lower()}://{netloc.lower()}{sep}{path}"


def under_prefix(url: str, prefix: str) -> bool:
    """True when ``url`` equals ``prefix`` or continues it at a path boundary.

    ``https://mirror.corp`` must not admit ``https://mirror.corp.evil.com/`` nor ``:8080``.
    """
    if not prefix:
        return False
    u, p = _normalise(url), _normalise(prefix)
    if not u.startswith(p):
        return False
    if len(u) == len(p) or p.endswith(("/", "?", "#", "=", "&")):
        return True
    return u[len(p)] in "/?#"


def rewrite_url(url: str, rules: Sequence[Rule]) -> str:
    """Apply the first rule whose prefix matches ``url`` (prefix replaced, the rest kept)."""
    for prefix, replacement in rules:
        if under_prefix(url, prefix):
            rest = url[len(prefix) :]
            if prefix.endswith("/") and not replacement.endswith("/"):
                replacement += "/"
            if replacement.endswith("/") and rest.startswith("/"):
                rest = rest[1:]
            return replacement + rest
    return url


def public_url(url: str, rules: Sequence[Rule]) -> str:
    """``rewrite_url`` undone: the URL that the first rule whose replacement ``url`` continues
    was made from (its prefix put back); ``url`` itself when no rule's replacement holds it.
    A pack installed through a ``[mirrors]`` rule records the mirror's URL; this is its public one."""
    for prefix, replacement in rules:
        target = replacement.rstrip("/")
        if target and under_prefix(url, target):
            return prefix.rstrip("/") + url[len(target) :]
    return url


def _family_rules(config: Config) -> list[Rule]:
    return [(prefix, config[key]) for key, prefix in MIRROR_FAMILIES.items() if config[key]]


def mirror_rules(config: Config) -> tuple[Rule, ...]:
    """The ordered ``(prefix, replacement)`` rules of ``config`` (see the module doc)."""
    rules: list[Rule] = [parse_rewrite(item) for item in config["rewrites"]]
    family = _family_rules(config)
    channel = str(config["channel_url"])
    if config["default_cache_as_channel_url"] and channel.rstrip("/") != DEFAULT_CHANNEL_URL:
        # the channel itself goes through the other rules first (a raw_github mirror, say)
        rules.append((DEFAULT_CHANNEL_URL, rewrite_url(channel, rules + family)))
    return tuple(rules + family)


@dataclass(frozen=True)
class Endpoint:
    """One endpoint family: its upstream URL, where it goes after the rewrites, and why."""

    family: str
    upstream: str
    effective: str
    rule: str  # the setting that rewrote it ("" when not rewritten)

    @property
    def rewritten(self) -> bool:
        return self.effective != self.upstream

    def to_dict(self) -> dict[str, object]:
        return {
            "family": self.family,
            "upstream": _redact(self.upstream),
            "effective": _redact(self.effective),
            "rewritten": self.rewritten,
            "rule": self.rule,
        }


def _upstreams(config: Config) -> dict[str, str]:
    return {
        "github": MIRROR_FAMILIES["github"],
        "raw_github": MIRROR_FAMILIES["raw_github"],
        "registry": str(config["registry_url"]),
        "pypi": str(config["pip_index_url"] or PYPI_SIMPLE),
        "huggingface": MIRROR_FAMILIES["huggingface"],
        "channel": str(config["channel_url"]),
        "default_channel": DEFAULT_CHANNEL_URL,
    }


def _rule_name(config: Config, url: str) -> str:
    for item in config["rewrites"]:
        prefix, _ = parse_rewrite(item)
        if under_prefix(url, prefix):
            return f"rewrites ({_redact(prefix)})"
    if config["default_cache_as_channel_url"] and under_prefix(url, DEFAULT_CHANNEL_URL):
        if str(config["channel_url"]).rstrip("/") != DEFAULT_CHANNEL_URL:
            return "default_cache_as_channel_url"
    for key, prefix in MIRROR_FAMILIES.items():
        if config[key] and under_prefix(url, prefix):
            origin = config.origin(key)
            return key if config.source(key) == "file" else f"{key} ({origin})"
    return ""


def endpoint_report(config: Config) -> list[Endpoint]:
    """Every endpoint family with its upstream URL, its URL after the rewrites and the rule."""
    rules = mirror_rules(config)
    out = []
    for family, upstream in _upstreams(config).items():
        effective = rewrite_url(upstream, rules)
        out.append(Endpoint(family, upstream, effective, _rule_name(config, upstream) if effective != upstream else ""))
    return out


def effective_endpoints(config: Config) -> dict[str, str]:
    """Each endpoint family (github, raw_github, registry, pypi, huggingface, channel,
    default_channel) -> the URL the gate uses after the ``[mirrors]`` rewrites (credentials hidden)."""
    return {e.family: _redact(e.effective) for e in endpoint_report(config)}


def _redact(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
