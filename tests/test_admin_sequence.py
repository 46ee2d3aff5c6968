"""The README's "Air-gapped box" walkthrough and its cron example, run line by line on real parts.

The online box is a ComfyUI tree in public mode whose whole "internet" is loopback: its channel
files and a registry stand-in on a loopback aiohttp server, a PEP 503 index of wheels built here
(``pip_index_url``), packs in real git repositories served over smart HTTP (``git http-backend``),
and ComfyUI's python a venv made here; it makes one bundle file. The offline box is a second tree
(``network_mode = offline``, an empty venv of its own); each of its lines runs inside a network
namespace with only loopback (``unshare -n``) under ``strace -f -e trace=connect``, and no
connect() to an AF_INET/AF_INET6 address may happen at all. The online lines and the cron job run
under the same strace and may connect to loopback only. Every line must exit 0; the effects are
checked on disk: the packs at the snapshot's commits (upstream has moved on), the python packages
pinned back to the snapshot's versions from the bundle's wheels (an indirect one included, while
the index has newer ones), the pack carried along installed offline from the bundle's channel and
git mirror, cleanup-cache's report, doctor with no failing check; then the cron job is silent on
success and mails "exit 3" with the summary line when a channel file goes missing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from support import tools
from support.fake_registry import FakeRegistry
from support.gitrepos import git, make_repo, serve_smart_http
from support.ops_fixtures import catalog_entry
from support.wheels import Pkg, build_wheels, installed_names, make_venv, serve_simple_index

REPO = Path(__file__).resolve().parents[1]
CM = REPO / "cm-cli.py"
CHANNEL_FILES = ("custom-node-list.json", "extension-node-map.json", "model-list.json", "alter-list.json")


# --- the README blocks -----------------------------------------------------------------------
def _block_after(heading: str, fence: str) -> list[str]:
    """The lines of the first ``fence`` code block after ``heading`` in README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(heading)
    body = text[text.index(fence + "\n", start) + len(fence) + 1 :]
    return body[: body.index("```")].splitlines()


def walkthrough() -> list[str]:
    """The command lines of the walkthrough (comments and blank lines left out)."""
    lines = _block_after("## Air-gapped box", "```bash")
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def cron_job() -> tuple[dict[str, str], str]:
    """(the crontab's variable lines, the command of its schedule line)."""
    names: dict[str, str] = {}
    command = ""
    for line in _block_after("### Cron", "```crontab"):
        if not line.strip() or line.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            key, _, value = line.partition("=")
            names[key] = value
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not a crontab schedule line: {line}"
        command = fields[5]
    assert command, "the cron block has no schedule line"
    return names, command


def as_run(line: str) -> str:
    """The README line with its ``python`` replaced by this interpreter (the Manager's python)."""
    return re.sub(r"^python(?=\s)", shlex.quote(sys.executable), line)


# --- tools -------------------------------------------------------------------------------------
def require_netns_tools() -> None:
    """unshare, strace and ip present and a loopback-only namespace can be made; else FAIL."""
    for name in ("unshare", "strace", "ip"):
        tools.require(name)
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.fail(
            "unshare -n cannot make a network namespace here (run the tests as root): " + probe.stderr.strip(),
            pytrace=False,
        )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_") and k != "COMFYUI_PATH"}
    env.update(extra)
    return env


def inet_connects(trace: Path) -> list[str]:
    """Every connect() to an AF_INET/AF_INET6 address in an strace log."""
    if not trace.exists():
        return []
    return [
        line.strip()
        for line in trace.read_text(encoding="utf-8", errors="replace").splitlines()
        if "connect(" in line and ("AF_INET" in line)  # AF_INET6 contains AF_INET
    ]


def outside_loopback(connects: list[str]) -> list[str]:
    def local(line: str) -> bool:
        return bool(re.search(r'inet_addr\("127\.', line) or re.search(r'inet_pton\(AF_INET6, "::1"', line))

    return [line for line in connects if not local(line)]


def run_traced(
    line: str, cwd: Path, env: dict[str, str], trace: Path, *, shell: str = "bash"
) -> subprocess.CompletedProcess:
    """``line`` with ``shell -c`` under ``strace -f -e trace=connect`` (the log in ``trace``)."""
    return subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace), shell, "-c", line],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_offline(line: str, cwd: Path, env: dict[str, str], trace: Path) -> subprocess.CompletedProcess:
    """``line`` with bash inside a fresh network namespace (loopback only) under strace."""
    inner = 'ip link set lo up && exec strace -f -qq -e trace=connect -o "$1" bash -c "$2"'
    return subprocess.run(
        ["unshare", "-n", "sh", "-c", inner, "sh", str(trace), line],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# --- the two boxes ---------------------------------------------------------------------------
def channel_packs(repos: dict[str, str]) -> list[dict]:
    return [catalog_entry(pack_id, url) for pack_id, url in repos.items()]


def serve_channel(srv, packs: list[dict]) -> str:
    bodies = {
        "custom-node-list.json": {"custom_nodes": packs},
        "extension-node-map.json": {p["reference"]: [[f"{p['id']}Node"], {"title_aux": p["id"]}] for p in packs},
        "model-list.json": {"models": []},
        "alter-list.json": {"items": []},
    }
    for name in CHANNEL_FILES:
        srv.static(f"/channel/{name}", json.dumps(bodies[name]), etag=f'"{name}-1"')
    srv.static("/channel/github-stats.json", "{}", etag='"stats-1"')
    return srv.url("/channel")


def make_tree(root: Path, *, channel: str, registry: str, mode: str, python: Path, index: str = "") -> Path:
    for sub in ("custom_nodes", "models", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text("# ComfyUI stand-in\n")
    manager = root / "user" / "__manager"
    (manager / "channels.list").write_text(f"default::{channel}\n")
    lines = [
        "[default]",
        f"network_mode = {mode}",
        f"channel_url = {channel}",
        f"registry_url = {registry}",
        "http_channel_enabled = true",
        f"python_executable = {python}",
        "allow_pip_install = true",
    ]
    if index:
        lines.append(f"pip_index_url = {index}")
    lines += ["[security]", "allow_remote_channel = true"]
    (manager / "config.ini").write_text("\n".join(lines) + "\n")
    return root


def cli(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CM), "--comfyui", str(root), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def pack_head(pack: Path) -> str:
    return git(pack, "rev-parse", "HEAD")


def test_readme_air_gapped_walkthrough_and_cron_run_line_by_line(
    tmp_path, http_server, git_bin, uv_bin, own_caches
) -> None:
    require_netns_tools()
    lines = walkthrough()
    online_lines = [line for line in lines if "$ONLINE" in line]
    offline_lines = [line for line in lines if "$OFFLINE" in line]
    assert online_lines and offline_lines and len(online_lines) + len(offline_lines) == len(lines), lines

    # the "internet": channel files, the registry, a package index; packs in file:// git repos
    sources = tmp_path / "git"
    repos = {}
    for pack_id, req in (("pack-a", "alpha-lib>=1\n"), ("pack-b", "beta-lib\n"), ("pack-c", "alpha-lib\n")):
        info = make_repo(sources / pack_id, name=pack_id)
        info.commit("requirements", {"requirements.txt": req})
        repos[pack_id] = info
    urls = {pack_id: serve_smart_http(http_server, sources, pack_id) for pack_id in repos}
    channel = serve_channel(http_server, channel_packs(urls))
    FakeRegistry(prefix="/api").install(http_server)
    dist = tmp_path / "dist"
    wheels = build_wheels(
        dist, [Pkg("alpha-lib", "1.0"), Pkg("alpha-lib", "2.0"), Pkg("beta-lib", "1.0", ("delta-lib>=1",))]
    )
    wheels += build_wheels(dist, [Pkg("delta-lib", "1.0")])
    index = serve_simple_index(http_server, wheels)

    online_py = make_venv(tmp_path / "online-venv")
    offline_py = make_venv(tmp_path / "offline-venv")
    online = make_tree(
        tmp_path / "online" / "ComfyUI",
        channel=channel,
        registry=http_server.url("/api"),
        mode="public",
        python=online_py,
        index=index,
    )
    offline_root = tmp_path / "offline" / "ComfyUI"
    offline = make_tree(
        offline_root,
        channel=(offline_root / "user" / "__manager" / "local-channel").as_uri(),  # what the import writes
        registry=http_server.url("/api"),
        mode="offline",
        python=offline_py,
    )
    env = clean_env()

    # the online box as it runs today: two packs installed, one package pinned by the admin
    for args in (("install", "pack-a", "pack-b"), ("install-pip", "alpha-lib==1.0")):
        out = cli(online, *args, env=env)
        assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
    assert installed_names(online_py) == {"alpha-lib": "1.0", "beta-lib": "1.0", "delta-lib": "1.0"}
    # the index moves on: newer versions of a direct and of an indirect requirement
    later = build_wheels(dist, [Pkg("beta-lib", "1.5", ("delta-lib>=1",)), Pkg("delta-lib", "1.1")])
    assert serve_simple_index(http_server, wheels + later) == index
    online_commits = {p: pack_head(online / "custom_nodes" / p) for p in ("pack-a", "pack-b")}
    for info in repos.values():  # upstream moves on: the offline box must get the snapshot's commits
        info.commit("later", {"nodes.py": "VERSION = 99\n"})
    # the offline box had a newer alpha-lib: the restore must pin it back
    subprocess.run(
        [uv_bin, "pip", "install", "--python", str(offline_py), "--offline", "--no-index", str(wheels[1])],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert installed_names(offline_py) == {"alpha-lib": "2.0"}

    work = tmp_path / "work"
    work.mkdir()
    run_env = clean_env(ONLINE=str(online), OFFLINE=str(offline), CM=str(CM), PACK="pack-c")
    outputs: dict[str, str] = {}

    traces = tmp_path / "traces"
    traces.mkdir()
    online_outside: dict[str, list[str]] = {}
    for number, line in enumerate(online_lines, start=1):  # its "internet" is loopback: nothing else
        trace = traces / f"online-{number}.strace"
        out = run_traced(as_run(line), work, run_env, trace)
        outputs[line] = out.stdout + out.stderr
        assert out.returncode == 0, f"online box: {line}\nexit {out.returncode}\n{out.stdout}\n{out.stderr}"
        if outside_loopback(inet_connects(trace)):
            online_outside[line] = outside_loopback(inet_connects(trace))
    assert not online_outside, "the online box connected outside loopback:\n" + json.dumps(online_outside, indent=1)

    with tarfile.open(work / "site.bundle.tar") as tar:
        names = tar.getnames()
        snapshot = json.loads(tar.extractfile("snapshot.json").read())  # type: ignore[union-attr]
    assert names[0] == "manifest.json", names
    assert sorted(n for n in names if n.startswith("wheels/")) == [
        "wheels/alpha_lib-1.0-py3-none-any.whl",
        "wheels/beta_lib-1.0-py3-none-any.whl",
        "wheels/delta_lib-1.0-py3-none-any.whl",
    ]
    assert len([n for n in names if n.startswith("git/")]) == 3, names  # pack-c carried along
    pinned = {p["name"]: p["version"] for p in snapshot["python"]["packages"]}
    assert pinned == {"alpha-lib": "1.0", "beta-lib": "1.0", "delta-lib": "1.0"}, pinned
    assert {p["name"]: p["commit"] for p in snapshot["packs"]} == online_commits

    # the counter is not blind: a connect to a TEST-NET address inside the namespace is seen
    probe = "import socket; socket.socket().connect_ex(('192.0.2.1', 9))"
    run_offline(f"{shlex.quote(sys.executable)} -c {shlex.quote(probe)}", work, run_env, traces / "probe.strace")
    assert outside_loopback(inet_connects(traces / "probe.strace")), (traces / "probe.strace").read_text()
    found: dict[str, list[str]] = {}
    for number, line in enumerate(offline_lines, start=1):
        trace = traces / f"offline-{number}.strace"
        out = run_offline(as_run(line), work, run_env, trace)
        outputs[line] = out.stdout + out.stderr
        assert out.returncode == 0, f"offline box: {line}\nexit {out.returncode}\n{out.stdout}\n{out.stderr}"
        connects = inet_connects(trace)
        if connects:
            found[line] = connects
    outside = {line: outside_loopback(c) for line, c in found.items() if outside_loopback(c)}
    assert not outside, "the offline box connected outside loopback:\n" + json.dumps(outside, indent=1)
    assert not found, "the offline box opened inet sockets (even to loopback):\n" + json.dumps(found, indent=1)

    for line, text in outputs.items():
        print(f"$ {line}\n{text}")
    # the effects, on disk
    nodes = offline / "custom_nodes"
    for pack_id, commit in online_commits.items():
        assert pack_head(nodes / pack_id) == commit, pack_id
        assert (nodes / pack_id / "nodes.py").read_text() != "VERSION = 99\n"
    assert pack_head(nodes / "pack-c") == repos["pack-c"].commits[-1]  # carried along at its newest
    assert installed_names(offline_py) == {"alpha-lib": "1.0", "beta-lib": "1.0", "delta-lib": "1.0"}
    show = next(text for line, text in outputs.items() if "show snapshot-list" in line)
    restore = next(text for line, text in outputs.items() if "bundle import" in line)
    stored = [p.stem for p in (offline / "user" / "__manager" / "snapshots").glob("*.json")]
    assert any(n.startswith("bundle-") for n in stored) and all(name in show for name in stored), (stored, show)
    assert "restored" in restore and "cm-cli.py bundle: ok (exit 0)" in restore, restore
    cleanup = next(text for line, text in outputs.items() if "cleanup-cache" in line)
    assert re.search(r"^cleanup-cache freed \d+", cleanup, re.M), cleanup
    doctor = next(text for line, text in outputs.items() if line.rstrip().endswith("doctor"))
    assert re.search(r"^\d+ checks: \d+ pass, \d+ warn, 0 fail$", doctor, re.M), doctor
    assert re.search(r"^pass +Wheelhouse coverage", doctor, re.M), doctor

    # the cron job, on the online box: silent with exit 0, then says "exit 3" when a file fails
    names, command = cron_job()
    assert {"ONLINE", "CM"} <= set(names), names
    cron_env = clean_env(ONLINE=str(online), CM=str(CM), SHELL="/bin/sh")
    out = run_traced(as_run(command), work, cron_env, traces / "cron.strace", shell="sh")
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out.stdout + out.stderr
    assert inet_connects(traces / "cron.strace"), "the cron job fetched nothing"
    assert not outside_loopback(inet_connects(traces / "cron.strace")), (traces / "cron.strace").read_text()
    log = online / "user" / "__manager" / "cache-refresh.log"
    said = log.read_text()
    assert re.search(r"^update-cache ok: (\d+) of \1 file\(s\) in place .*revalidated", said, re.M), said
    assert said.strip().splitlines()[-1] == "cm-cli.py update-cache: ok (exit 0)", said

    http_server.static("/channel/alter-list.json", "gone", status=404)
    out = run_traced(as_run(command), work, cron_env, traces / "cron-partial.strace", shell="sh")
    assert out.stdout.startswith("cache refresh exit 3: cm-cli.py update-cache: partial (exit 3)"), out.stdout
