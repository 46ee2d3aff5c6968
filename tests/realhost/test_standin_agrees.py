"""The stand-in host (tests/support/standin_host.py) and the real ComfyUI serve our route table alike.

The fast browser tests run against the stand-in; it is only worth trusting where it behaves
like the real host. Every route of the table is asked for under the bare path and ``/api``
on both, and must get the same answer:

- GET routes: the same status, and a JSON (or our text) answer, never the host's own 404 page;
- other methods: sent as a cross-site request (``Sec-Fetch-Site: cross-site``, no body), which
  our guard refuses with a coded 403 before any handler runs, so nothing changes either tree;
  a path the host does not route answers its static files' 405 instead.
"""

from __future__ import annotations

import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from realhost.helpers import channel_env, need_host

from manager.api.routes import ROUTES
from support import realhost
from support.standin_host import StandInComfy

SAMPLE = {"id": "panel-test-pack", "name": "panel-test-pack", "node_name": "panel-test-pack"}


def _path(template: str) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: SAMPLE.get(m.group(1), "x"), template)


def _ask(base: str, method: str, path: str) -> tuple[int, str]:
    """(status, what answered): "json" for our envelope or a JSON body, else the content type."""
    headers = {} if method == "GET" else {"Sec-Fetch-Site": "cross-site"}
    request = urllib.request.Request(base + path, method=method, headers=headers, data=None)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, _kind(resp.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as err:
        return err.code, _kind(err.headers.get("Content-Type", ""))


def _kind(content_type: str) -> str:
    return "json" if content_type.startswith("application/json") else content_type.split(";")[0]


@pytest.fixture(scope="module")
def both_hosts(tmp_path_factory: pytest.TempPathFactory, channel_db: Path) -> Iterator[tuple[str, str]]:
    need_host("0.8.0")
    workdir = tmp_path_factory.mktemp("agree")
    env = channel_env(workdir, channel_db)
    real = realhost.start_comfyui(workdir, "0.8.0", config=env.settings)
    standin_root = workdir / "standin" / "ComfyUI"
    for sub in ("custom_nodes", "models/checkpoints", "user", "input", "output", "temp"):
        (standin_root / sub).mkdir(parents=True)
    realhost.write_config(standin_root / "user" / "__manager", env.settings)
    shutil.copytree(real.root / "user" / "default", standin_root / "user" / "default")
    try:
        with StandInComfy(standin_root) as standin:
            yield real.base_url, standin.url("")
    finally:
        real.stop()


ASKED = sorted({(r.method, _path(r.path)) for r in ROUTES})


def test_every_route_of_the_table_is_served_alike(both_hosts: tuple[str, str]) -> None:
    real, standin = both_hosts
    differences = []
    for method, path in ASKED:
        for prefix in ("", "/api"):
            got_real, got_standin = _ask(real, method, prefix + path), _ask(standin, method, prefix + path)
            if got_real != got_standin:
                differences.append(f"{method} {prefix}{path}: real {got_real}, stand-in {got_standin}")
            status, kind = got_real
            if method == "GET" and status in (404, 405) and kind != "json":
                differences.append(f"GET {prefix}{path} is not routed by the real host ({status} {kind})")
            if method != "GET" and (status, kind) != (403, "json"):
                differences.append(
                    f"{method} {prefix}{path}: a cross-site request was not refused by our "
                    f"guard in the real host ({status} {kind})"
                )
    assert not differences, "\n".join(differences)
