"""The classic panel's requests against the real ComfyUI (0.8.0 and 0.3.64) with us mounted.

The way the classic JS sends them (ComfyUI's fetchApi: JSON as text/plain), the settings it
reads and writes, and what a DNS-rebinding page gets: the real host's own middlewares run first.
"""

from __future__ import annotations

import json

from support import realhost


def _same_origin(host: realhost.RealComfyUI) -> dict[str, str]:
    return {"Origin": host.base_url, "Sec-Fetch-Site": "same-origin", "Content-Type": "text/plain;charset=UTF-8"}


def test_classic_posts_sent_as_text_plain_are_served(real_comfy: realhost.RealComfyUI) -> None:
    page = _same_origin(real_comfy)
    status, _, body = real_comfy.request(
        "POST", "/api/manager/db_mode", json.dumps({"value": "local"}).encode(), headers=page
    )
    assert status == 200, body[:300]
    assert real_comfy.request("GET", "/api/manager/db_mode")[2] == b"local"
    status, _, body = real_comfy.request(
        "POST",
        "/api/manager/component/save",
        json.dumps({"name": "real", "workflow": {"nodes": []}}).encode(),
        headers=page,
    )
    assert status == 200 and body.decode().endswith("real.json"), body[:300]
    status, _, body = real_comfy.request(
        "POST", "/api/manager/component/loads", headers={"Origin": real_comfy.base_url}
    )
    assert status == 200 and "real" in json.loads(body)
    for path, want in (("/api/manager/share_option", b"all"), ("/manager/get_openart_auth", b'{"openart_key":""}')):
        status, _, body = real_comfy.request("GET", path)
        assert (status, body) == (200, want)
    status, _, body = real_comfy.request("GET", "/api/manager/queue/start", headers={"Sec-Fetch-Site": "same-origin"})
    assert status in (200, 201), body[:300]


def test_preview_method_follows_the_real_comfyui(real_comfy: realhost.RealComfyUI) -> None:
    status, _, body = real_comfy.request("GET", "/api/manager/preview_method")
    assert status == 200
    page = _same_origin(real_comfy)
    answer = real_comfy.request(
        "POST", "/api/manager/preview_method", json.dumps({"value": "taesd"}).encode(), headers=page
    )
    if real_comfy.version == "0.8.0":  # ComfyUI's own per-queue preview setting: ours does nothing
        assert body == b"DISABLED"
        assert answer[0] == 403 and json.loads(answer[2])["error"]["code"] == "not_implemented"
    else:  # 0.3.64: the Manager's setting is applied to the running host
        assert body == b"none"
        assert answer[0] == 200 and json.loads(answer[2])["data"] == {"preview_method": "taesd", "applied": True}
        assert real_comfy.request("GET", "/api/manager/preview_method")[2] == b"taesd"


def test_a_rebound_host_name_is_refused_by_our_routes(real_comfy: realhost.RealComfyUI) -> None:
    rebound = {"Host": f"evil.example:{real_comfy.port}", "Origin": f"http://evil.example:{real_comfy.port}"}
    for method, path in (
        ("GET", "/api/offline-manager/v1/config"),
        ("GET", "/customnode/installed"),
        ("POST", "/api/manager/queue/reset"),
    ):
        status, _, body = real_comfy.request(method, path, headers=rebound)
        assert status == 403 and json.loads(body)["error"]["code"] == "host_not_allowed", (path, body[:300])
    # a foreign page on the loopback name: ComfyUI's own origin check or ours, never served
    status, _, _ = real_comfy.request("POST", "/api/manager/queue/reset", headers={"Origin": "http://evil.example"})
    assert status == 403
