"""A stand-in for the Comfy Registry (api.comfy.org) served by ``LoopbackServer``.

Shapes follow the registry's published OpenAPI document (field names as the real API sends
them):

- ``GET /nodes?page=N&limit=M`` -> ``{"total", "nodes": [Node], "page", "limit", "totalPages"}``
  (``limit`` defaults to 10 and ``page`` to 1, as on the real service).
- ``GET /nodes/{id}/versions[?statuses=S&statuses=T]`` -> ``[NodeVersion]`` (a bare list).
- ``GET /nodes/{id}/install[?version=X.Y.Z]`` -> one ``NodeVersion``; 404 with the registry's
  ``{"error", "message"}`` body when the version does not exist.

``Node``: id, name, description, author, license, icon, repository, tags, category, latest_version
(a NodeVersion, absent for packs that never published one), rating, downloads, github_stars,
publisher {id, name, ...}, status, status_detail, created_at.
``NodeVersion``: id (uuid), node_id, version, createdAt, changelog, dependencies, downloadUrl,
deprecated, status, status_reason, supported_comfyui_version, supported_comfyui_frontend_version,
supported_os, supported_accelerators.

Routes are registered per known node id (the loopback server matches exact paths); an unknown id
falls through to the server's plain 404, which real clients must handle too.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from typing import Any

from aiohttp import web

from .http_server import LoopbackServer

ACTIVE = "NodeVersionStatusActive"
PENDING = "NodeVersionStatusPending"
FLAGGED = "NodeVersionStatusFlagged"
BANNED = "NodeVersionStatusBanned"


def _uid(*parts: str) -> str:
    # Stable uuids so recorded answers are identical between runs.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


def make_version(
    node_id: str,
    publisher_id: str,
    version: str,
    *,
    created_at: str,
    changelog: str = "",
    dependencies: list[str] | None = None,
    deprecated: bool = False,
    status: str = ACTIVE,
    download_base: str = "https://cdn.comfy.org",
    supported_comfyui_version: str = "",
    supported_os: list[str] | None = None,
    supported_accelerators: list[str] | None = None,
) -> dict[str, Any]:
    """One NodeVersion object in the registry's field names."""
    return {
        "id": _uid(node_id, version),
        "node_id": node_id,
        "version": version,
        "createdAt": created_at,
        "changelog": changelog,
        "dependencies": list(dependencies or []),
        "downloadUrl": f"{download_base}/{publisher_id}/{node_id}/{version}/node.zip",
        "deprecated": deprecated,
        "status": status,
        "status_reason": "",
        "supported_comfyui_version": supported_comfyui_version,
        "supported_comfyui_frontend_version": "",
        "supported_os": list(supported_os or []),
        "supported_accelerators": list(supported_accelerators or []),
        "comfy_node_extract_status": "success",
    }


def make_node(
    node_id: str,
    *,
    name: str,
    publisher_id: str,
    publisher_name: str,
    repository: str,
    description: str = "",
    tags: list[str] | None = None,
    downloads: int = 0,
    github_stars: int = 0,
    versions: list[dict[str, Any]] | None = None,
    license_: str = "LICENSE",
    icon: str = "",
    category: str = "",
) -> dict[str, Any]:
    """One Node object; ``latest_version`` is the newest listed version, omitted when none."""
    node: dict[str, Any] = {
        "id": node_id,
        "name": name,
        "description": description,
        "author": publisher_name,
        "license": license_,
        "icon": icon,
        "repository": repository,
        "tags": list(tags or []),
        "category": category,
        "rating": 0,
        "downloads": downloads,
        "github_stars": github_stars,
        "publisher": {
            "id": publisher_id,
            "name": publisher_name,
            "description": "",
            "website": "",
            "support": "",
            "source_code_repo": "",
            "logo": "",
            "createdAt": "2024-06-01T00:00:00Z",
            "members": [],
            "status": "PublisherStatusActive",
        },
        "status": "NodeStatusActive",
        "status_detail": "",
        "created_at": "2024-06-15T10:00:00Z",
    }
    if versions:
        node["latest_version"] = dict(versions[0])
    return node


def sample_data(download_base: str = "https://cdn.comfy.org") -> tuple[list[dict], dict[str, list[dict]]]:
    """A handful of realistic packs: (nodes, versions by node id, newest first)."""
    specs = [
        (
            "comfyui-impact-pack",
            "ComfyUI Impact Pack",
            "drltdata",
            "Dr.Lt.Data",
            "https://github.com/ltdrdata/ComfyUI-Impact-Pack",
            "Detector, detailer, upscaler, pipe and more.",
            ["detailer", "segmentation"],
            1_900_000,
            2500,
            [
                ("8.8.1", "2025-03-10T08:00:00Z", ["segment-anything", "scikit-image", "piexif"], False),
                ("8.8.0", "2025-02-20T08:00:00Z", ["segment-anything", "scikit-image"], False),
                ("7.0.0", "2024-08-01T08:00:00Z", ["segment-anything"], True),
            ],
        ),
        (
            "comfyui-kjnodes",
            "KJNodes for ComfyUI",
            "kijai",
            "kijai",
            "https://github.com/kijai/ComfyUI-KJNodes",
            "Various quality of life and masking related nodes.",
            ["utility", "mask"],
            1_200_000,
            1400,
            [
                ("1.0.8", "2025-04-02T12:00:00Z", ["pillow>=10.3.0", "scipy", "color-matcher"], False),
                ("1.0.7", "2025-03-01T12:00:00Z", ["pillow>=10.3.0", "scipy"], False),
            ],
        ),
        (
            "rgthree-comfy",
            "rgthree's ComfyUI Nodes",
            "rgthree",
            "rgthree",
            "https://github.com/rgthree/rgthree-comfy",
            "Making ComfyUI more comfortable.",
            ["ui", "workflow"],
            1_500_000,
            2000,
            [("1.0.0", "2025-01-15T09:30:00Z", [], False)],
        ),
        (
            "comfyui-videohelpersuite",
            "ComfyUI-VideoHelperSuite",
            "kosinkadink",
            "Kosinkadink",
            "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite",
            "Nodes related to video workflows.",
            ["video"],
            1_100_000,
            900,
            [
                ("1.5.2", "2025-03-28T16:00:00Z", ["opencv-python", "imageio-ffmpeg"], False),
                ("1.5.3", "2025-04-05T16:00:00Z", ["opencv-python", "imageio-ffmpeg"], False, PENDING),
            ],
        ),
        # A pack that never published a release: the real API omits latest_version.
        (
            "comfyui-unreleased-pack",
            "Unreleased Pack",
            "someone",
            "Unclaimed",
            "https://github.com/someone/comfyui-unreleased-pack",
            "No release yet.",
            [],
            10,
            3,
            [],
        ),
    ]
    nodes: list[dict] = []
    versions: dict[str, list[dict]] = {}
    for node_id, name, pub_id, pub_name, repo, desc, tags, downloads, stars, vers in specs:
        built = []
        for spec in vers:
            ver, created, deps, deprecated = spec[:4]
            status = spec[4] if len(spec) > 4 else ACTIVE
            built.append(
                make_version(
                    node_id,
                    pub_id,
                    ver,
                    created_at=created,
                    dependencies=deps,
                    deprecated=deprecated,
                    status=status,
                    download_base=download_base,
                    changelog=f"Release {ver}",
                    supported_comfyui_version=">=0.3.0",
                    supported_os=["OS Independent"],
                )
            )
        active = [v for v in built if v["status"] == ACTIVE]
        nodes.append(
            make_node(
                node_id,
                name=name,
                publisher_id=pub_id,
                publisher_name=pub_name,
                repository=repo,
                description=desc,
                tags=tags,
                downloads=downloads,
                github_stars=stars,
                versions=active,
            )
        )
        versions[node_id] = built
    return nodes, versions


def synthetic_nodes(
    count: int, *, download_base: str = "https://cdn.comfy.org"
) -> tuple[list[dict], dict[str, list[dict]]]:
    """``count`` small packs ``pack-0000`` ... for paging tests."""
    nodes, versions = [], {}
    for i in range(count):
        node_id = f"pack-{i:04d}"
        ver = make_version(
            node_id, "bulk", f"1.{i % 7}.0", created_at="2025-01-01T00:00:00Z", download_base=download_base
        )
        nodes.append(
            make_node(
                node_id,
                name=f"Pack {i}",
                publisher_id="bulk",
                publisher_name="Bulk",
                repository=f"https://github.com/bulk/{node_id}",
                versions=[ver],
                downloads=count - i,
            )
        )
        versions[node_id] = [ver]
    return nodes, versions


class FakeRegistry:
    """Recorded-shape registry handlers; ``install(srv)`` mounts them on a ``LoopbackServer``.

    Knobs for failure tests: ``mode`` = ``"ok"`` | ``"not_json"`` | ``"wrong_shape"`` |
    ``"error_500"`` applies to every answer. ``calls`` counts requests per endpoint kind
    (``nodes``, ``versions``, ``install``); ``pages`` lists the page numbers asked for;
    ``seen_statuses`` the ``statuses`` filters received.
    """

    def __init__(
        self, nodes: list[dict] | None = None, versions: dict[str, list[dict]] | None = None, *, prefix: str = ""
    ) -> None:
        if nodes is None:
            nodes, default_versions = sample_data()
            versions = default_versions if versions is None else versions
        self.nodes = nodes
        self.versions = versions or {}
        self.prefix = prefix.rstrip("/")
        self.mode = "ok"
        self.calls: Counter[str] = Counter()
        self.pages: list[int] = []
        self.seen_statuses: list[list[str]] = []

    # -- mounting ---------------------------------------------------------------------------
    def install(self, srv: LoopbackServer) -> FakeRegistry:
        srv.route("GET", f"{self.prefix}/nodes", self._list)
        ids = {n.get("id") for n in self.nodes if isinstance(n, dict) and isinstance(n.get("id"), str)}
        for node_id in ids | set(self.versions):
            srv.route("GET", f"{self.prefix}/nodes/{node_id}/versions", self._make_versions(node_id))
            srv.route("GET", f"{self.prefix}/nodes/{node_id}/install", self._make_install(node_id))
        return self

    def base_url(self, srv: LoopbackServer) -> str:
        return srv.url(self.prefix)

    # -- answers ----------------------------------------------------------------------------
    def _answer(self, payload: Any, status: int = 200) -> web.Response:
        if self.mode == "not_json":
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if self.mode == "wrong_shape":
            return web.json_response({"unexpected": True, "items": "nope"})
        if self.mode == "error_500":
            return web.json_response({"error": "internal", "message": "boom"}, status=500)
        return web.Response(text=json.dumps(payload), status=status, content_type="application/json")

    async def _list(self, request: web.Request) -> web.Response:
        self.calls["nodes"] += 1
        try:
            page = max(1, int(request.query.get("page", "1")))
            limit = max(1, int(request.query.get("limit", "10")))
        except ValueError:
            return web.json_response({"error": "bad_request", "message": "page and limit must be integers"}, status=400)
        self.pages.append(page)
        total = len(self.nodes)
        chunk = self.nodes[(page - 1) * limit : page * limit]
        return self._answer(
            {"total": total, "nodes": chunk, "page": page, "limit": limit, "totalPages": math.ceil(total / limit)}
        )

    def _make_versions(self, node_id: str):
        async def handler(request: web.Request) -> web.Response:
            self.calls["versions"] += 1
            statuses = request.query.getall("statuses", [])
            self.seen_statuses.append(list(statuses))
            found = self.versions.get(node_id, [])
            if statuses:
                found = [v for v in found if v.get("status") in statuses]
            return self._answer(found)

        return handler

    def _make_install(self, node_id: str):
        async def handler(request: web.Request) -> web.Response:
            self.calls["install"] += 1
            wanted = request.query.get("version")
            candidates = [v for v in self.versions.get(node_id, []) if v.get("status") == ACTIVE]
            if wanted is not None:
                candidates = [v for v in candidates if v.get("version") == wanted]
            if not candidates:
                what = f"{node_id}@{wanted}" if wanted else node_id
                return self._answer({"error": "not_found", "message": f"Node version not found: {what}"}, status=404)
            return self._answer(candidates[0])

        return handler
