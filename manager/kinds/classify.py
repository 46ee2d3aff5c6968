"""Risk classifiers: what a request's source is, read exactly the way the operation will read it.

The policy decides on (operation, risk, source); these functions supply the risk and source of a
pack or model request. A URL or path is ``catalog`` risk only when the channel lists it; the
client's own file lists and URLs are never trusted for a download.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import security as sec
from ..errors import NotFound

if TYPE_CHECKING:
    from ..context import CatalogView
    from ..records import ModelEntry

SEMVER_RE = re.compile(r"^v?\d+(\.\d+)*([-+][0-9A-Za-z.\-]+)?$")


@dataclass(frozen=True)
class Classified:
    """A request as the policy sees it: the canonical target, its risk and source URL."""

    target: str
    risk: str = sec.RISK_NONE
    source: str = ""


def strip_ref(url: str) -> str:
    """``https://host/repo@<commit>`` -> ``https://host/repo`` (the classic git_url form)."""
    base, sep, ref = url.rpartition("@")
    if sep and base and "/" not in ref and ":" not in ref and "/" in base:
        return base
    return url


def url_params(url: str) -> dict[str, Any]:
    """Task params of a URL install: the URL, and ``ref`` when it ends in ``@<commit or tag>``."""
    base = strip_ref(url)
    return {"url": base, "ref": url[len(base) + 1 :]} if base != url else {"url": url}


def spec_kind(text: str) -> str:
    """``id``, ``url`` or ``path``: how the install operation will read ``text`` (its own parser)."""
    from ..operations.sources import parse_spec

    return parse_spec(strip_ref(text)).kind


def classify_install(view: CatalogView | None, target: str, params: Mapping[str, Any]) -> Classified:
    """A catalog pack, a registry id, or a URL/path no catalog lists (``git_url``/``local_path``).

    Read with the operations' own spec parser, so the policy classifies exactly what the install
    will fetch. Without a catalog (``view`` None) nothing is listed.
    """
    from ..operations.sources import parse_spec

    url = params.get("url")
    raw = url.strip() if isinstance(url, str) and url.strip() else target.strip()
    spec = parse_spec(strip_ref(raw))
    if spec.kind in ("url", "path"):
        pack = view.catalog.by_reference(strip_ref(raw)) if view else None
        if pack is not None:
            return Classified(pack.id, sec.RISK_CATALOG, raw)
        return Classified(strip_ref(raw), sec.RISK_LOCAL_PATH if spec.kind == "path" else sec.RISK_GIT_URL, raw)
    pack = view.catalog.get(spec.id) if view else None
    version = str(params.get("version") or spec.version or "latest")
    if pack is None or pack.install_type == "cnr" or (pack.cnr_id and SEMVER_RE.match(version)):
        return Classified(raw, sec.RISK_REGISTRY, "")
    return Classified(pack.id + (f"@{spec.version}" if spec.version else ""), sec.RISK_CATALOG, pack.reference)


def find_model(view: CatalogView, target: str, params: Mapping[str, Any]) -> ModelEntry:
    """The catalog model a request names: by id (save_path/filename), name, URL or file name, or
    by the classic body (url + filename, or filename + save_path/base). The client's URL is
    only used to look the entry up, never to download."""
    models = view.catalog.models
    url, filename = str(params.get("url") or ""), str(params.get("filename") or "")
    if url and filename:
        for m in models:
            if m.url == url and m.filename == filename:
                return m
    if filename:
        hits = [
            m
            for m in models
            if m.filename == filename
            and params.get("save_path") in (None, "", m.save_path)
            and params.get("base") in (None, "", m.base)
        ]
        if len(hits) == 1:
            return hits[0]
    from ..models import model_id

    for key in (model_id, lambda m: m.name, lambda m: m.url, lambda m: m.filename):
        hits = [m for m in models if target and key(m) == target]
        if len(hits) == 1:
            return hits[0]
    raise NotFound(
        f"model {target or filename or url!r} is not (or not uniquely) in the model list of channel "
        f"{view.channel.name!r}",
        hint="Only models listed in the channel's model-list.json can be installed; use the model id "
        "(save_path/filename) that `cm-cli.py models` or GET /offline-manager/v1/models shows.",
        details={"target": target, "filename": filename},
    )


def model_risk(view: CatalogView, model: ModelEntry) -> str:
    """Classic rule: a file that is not .safetensors must come from the default channel's list."""
    if model.filename.lower().endswith(".safetensors") or view.channel.name == "default":
        return sec.RISK_MODEL_CATALOG
    return sec.RISK_MODEL_URL
