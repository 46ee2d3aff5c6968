"""Offline bundles through the HTTP door, on a real aiohttp server over the demo tree: a real bundle
(a git pack's `git bundle` and a registry zip, made by ``create_bundle`` on an offline creator tree)
is checked (``POST /v1/bundles/verify``), previewed per store (``/preview``), imported through the
queue as the ``bundle_import`` kind (dry run first), then listed (``GET /v1/bundles``). Paths that
are not a plain readable file (relative, a link, a folder, a FIFO, missing) are refused with
``bundle_path_invalid`` before anything opens them, at the routes and at the queue; a tampered
bundle is reported naming the member and refused by the preview; the policy gates the reads like
the import (level and listener)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from manager.api.routes import PREFIX
from manager.bundles import Selection, create_bundle
from manager.context import Manager
from support import tools
from support.bundles import make_creator, rewrite
from support.treesum import listing

GIT_MEMBER = "git/example.invalid/test/pack-a.bundle"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tools.require("git")
    base = tmp_path_factory.mktemp("api-bundle")
    creator = make_creator(base)
    manager = Manager.standalone(creator.root, env={})
    result = create_bundle(manager, Selection(snapshot=str(creator.snapshot)), base / "site.bundle.tar")
    return Path(result.path)


async def _data(resp, status: int = 200):
    body = await resp.json()
    assert resp.status == status, body
    return body["data"] if status < 400 else body["error"]


async def test_verify_preview_import_and_list(aiohttp_client, api_app, bundle: Path) -> None:
    app, api, root = api_app()
    client = await aiohttp_client(app)
    assert (await _data(await client.get(PREFIX + "/bundles")))["bundles"] == []

    report = await _data(await client.post(PREFIX + "/bundles/verify", json={"path": str(bundle)}))
    assert report["ok"] is True and report["problems"] == [], report
    assert report["signature"]["state"] == "unsigned"
    assert report["policy"] == {"require_signed_bundles": False, "allowed_signers": ""}
    manifest = report["manifest"]
    assert manifest["creator"]["host"] and manifest["created_at"] == report["created_at"]
    assert {p["id"] for p in manifest["packs"]} == {"pack-a", "reg-pack"}
    assert report["sizes"]["git"] > 0 and report["sizes"]["cnr"] > 0
    assert report["size"] == await asyncio.to_thread(os.path.getsize, bundle)

    before = listing(root, skip=("user/__manager/logs", "user/__manager/locks"))
    preview = await _data(await client.post(PREFIX + "/bundles/preview", json={"path": str(bundle)}))
    assert preview["stores"]["git"] == {"add": 1, "replace": 0, "same": 0}
    assert preview["stores"]["cnr"]["add"] == 1 and preview["adds"] >= 3
    assert preview["base_present"] is True and preview["bundle"]["ok"] is True
    assert {p["name"] for p in preview["plan"]["packs"]["added"]} == {"pack-a", "reg-pack"}
    # the dry run of the queued kind answers the same plan, and neither changed the tree
    plans = await _data(
        await client.post(PREFIX + "/queue", json={"kind": "bundle_import", "target": str(bundle), "dry_run": True})
    )
    (plan,) = plans["plans"]
    assert plan["kind"] == "bundle_import" and plan["blockers"] == []
    assert {p["name"] for p in plan["packs"]["added"]} == {"pack-a", "reg-pack"}
    assert listing(root, skip=("user/__manager/logs", "user/__manager/locks")) == before

    queued = await _data(
        await client.post(PREFIX + "/queue", json={"kind": "bundle_import", "target": str(bundle)}), 202
    )
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 120)
    task = api.manager.queue.get(queued["tasks"][0]["id"]).to_dict()
    assert task["state"] == "done", task
    assert task["result"]["manifest_sha256"] == report["manifest_sha256"] and task["result"]["added"] >= 3
    mirror = root / "user" / "__manager" / "git-mirror" / "example.invalid" / "test" / "pack-a.bundle"
    assert mirror.is_file()  # the git bundle, kept as it came (git clones from it)
    listed = await _data(await client.get(PREFIX + "/bundles"))
    assert listed["count"] == 1
    (entry,) = listed["bundles"]
    assert entry["manifest_sha256"] == report["manifest_sha256"] and set(entry["packs"]) == {"pack-a", "reg-pack"}
    again = await _data(await client.post(PREFIX + "/bundles/preview", json={"path": str(bundle)}))
    assert again["adds"] == 0 and again["stores"]["cnr"] == {"add": 0, "replace": 0, "same": 1}, again["stores"]


async def test_paths_that_are_not_a_plain_file_are_refused(aiohttp_client, api_app, bundle: Path, tmp_path) -> None:
    app, api, root = api_app()
    client = await aiohttp_client(app)
    link = tmp_path / "link.tar"
    link.symlink_to(bundle)
    fifo = tmp_path / "fifo.tar"
    os.mkfifo(fifo)
    cases = {
        "": "empty",
        "site.bundle.tar": "not an absolute path",
        str(tmp_path / "nope.tar"): "no such file",
        str(link): "symbolic link",
        str(tmp_path): "a folder",
        str(fifo): "not a regular file",
        "/dev/zero": "not a regular file",
    }
    before = listing(root, skip=("user/__manager/logs", "user/__manager/locks"))
    for path, why in cases.items():
        for route in ("/bundles/verify", "/bundles/preview"):
            err = await _data(await client.post(PREFIX + route, json={"path": path}), 400)
            if path == "":  # an empty field is the body's problem
                assert err["code"] == "request_invalid" and err["details"]["field"] == "path", err
                continue
            assert err["code"] == "bundle_path_invalid" and why in err["details"]["problem"], (path, err)
            assert err["hint"] and err["details"]["path"] == path
        if path:
            for dry in (True, False):
                body = {"kind": "bundle_import", "target": path, "dry_run": dry}
                resp = await client.post(PREFIX + "/queue", json=body)
                got = await resp.json()
                if dry and resp.status == 200:  # a dry run reports a refusal as the plan's blocker
                    (plan,) = got["data"]["plans"]
                    assert plan["blockers"][0]["code"] == "bundle_path_invalid", plan
                else:
                    assert resp.status == 400 and got["error"]["code"] == "bundle_path_invalid", (path, dry, got)
    queue = await _data(await client.get(PREFIX + "/queue"))
    assert not queue["pending"] and not queue["history"] and not queue["running"], queue  # nothing was queued
    err = await _data(await client.post(PREFIX + "/bundles/verify", json={"path": str(bundle), "apply": True}), 400)
    assert err["code"] == "request_invalid" and err["details"]["field"] == "apply"
    assert listing(root, skip=("user/__manager/logs", "user/__manager/locks")) == before


async def test_tampered_bundle_is_named_and_refused(aiohttp_client, api_app, bundle: Path, tmp_path) -> None:
    app, api, root = api_app()
    client = await aiohttp_client(app)
    bad = rewrite(bundle, tmp_path / "bad.tar", lambda name, data: data[:-1] + b"X" if name == GIT_MEMBER else data)
    report = await _data(await client.post(PREFIX + "/bundles/verify", json={"path": str(bad)}))
    assert report["ok"] is False
    assert [(p["code"], p["member"]) for p in report["problems"]] == [("bundle_checksum_mismatch", GIT_MEMBER)]
    err = await _data(await client.post(PREFIX + "/bundles/preview", json={"path": str(bad)}), 400)
    assert err["code"] == "bundle_checksum_mismatch" and GIT_MEMBER in str(err["details"])


async def test_policy_gates_the_reads_like_the_import(aiohttp_client, api_app, bundle: Path) -> None:
    app, api, root = api_app(default="security_level = strong")
    client = await aiohttp_client(app)
    for route in ("/bundles/verify", "/bundles/preview"):
        err = await _data(await client.post(PREFIX + route, json={"path": str(bundle)}), 403)
        assert err["code"] == "security_denied" and "security_level" in err["hint"], err
    assert (await _data(await client.get(PREFIX + "/bundles")))["count"] == 0  # reading the list stays allowed


async def test_reads_need_a_loopback_listener(aiohttp_client, api_app, bundle: Path) -> None:
    app, api, root = api_app(listen="0.0.0.0")
    client = await aiohttp_client(app)
    err = await _data(await client.post(PREFIX + "/bundles/verify", json={"path": str(bundle)}), 403)
    assert err["code"] == "security_denied" and "loopback" in err["message"], err


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A bundle signed with a fresh ed25519 key, and an allowed_signers file naming that key."""
    import subprocess

    tools.require("git")
    tools.require("ssh-keygen")
    base = tmp_path_factory.mktemp("api-bundle-signed")
    key = base / "site-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "site", "-f", str(key)], check=True)
    signers = base / "allowed_signers"
    signers.write_text(f'builder@site namespaces="offline-manager-bundle" {key.with_suffix(".pub").read_text()}')
    creator = make_creator(base)
    manager = Manager.standalone(creator.root, env={})
    result = create_bundle(manager, Selection(snapshot=str(creator.snapshot)), base / "signed.tar", sign_key=key)
    assert result.signed
    return Path(result.path), signers


async def test_signature_status_and_required_signatures(
    aiohttp_client, api_app, bundle: Path, signed: tuple[Path, Path]
) -> None:
    signed_bundle, signers = signed
    app, api, root = api_app(security=f"require_signed_bundles = true\nbundle_allowed_signers = {signers}")
    client = await aiohttp_client(app)
    report = await _data(await client.post(PREFIX + "/bundles/verify", json={"path": str(signed_bundle)}))
    assert report["ok"] is True and report["signature"]["state"] == "valid", report
    assert report["signature"]["signer"] == "builder@site"
    assert report["policy"] == {"require_signed_bundles": True, "allowed_signers": str(signers)}
    preview = await _data(await client.post(PREFIX + "/bundles/preview", json={"path": str(signed_bundle)}))
    assert preview["bundle"]["signature"]["state"] == "valid" and preview["stores"]["git"]["add"] == 1

    # the unsigned bundle is reported (verify) and refused (preview, the queued import)
    report = await _data(await client.post(PREFIX + "/bundles/verify", json={"path": str(bundle)}))
    assert report["ok"] is False and report["signature"]["state"] == "unsigned"
    assert [(p["code"], p["member"]) for p in report["problems"]] == [("bundle_unsigned", "manifest.json.sig")]
    err = await _data(await client.post(PREFIX + "/bundles/preview", json={"path": str(bundle)}), 403)
    assert err["code"] == "bundle_unsigned" and "bundle create --sign" in err["hint"], err
    before = listing(root, skip=("user/__manager/logs", "user/__manager/locks"))
    queued = await _data(
        await client.post(PREFIX + "/queue", json={"kind": "bundle_import", "target": str(bundle)}), 202
    )
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 120)
    task = api.manager.queue.get(queued["tasks"][0]["id"]).to_dict()
    assert task["state"] == "failed" and task["error"]["code"] == "bundle_unsigned", task
    assert listing(root, skip=("user/__manager/logs", "user/__manager/locks")) == before
