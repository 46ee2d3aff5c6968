"""How often one install task runs ComfyUI's python (issue 21 item 4: one probe per run).

The counter is real: ComfyUI's python is a shell script that logs its arguments and then runs a
real venv's interpreter. An install with requirements runs it for the package set before (the
same run tells the installer the environment: markers, site folders), for the package set after
(the undo record), and uv queries it itself; nothing else. The undo record stays exact.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from manager.records import PolicyDecision
from support.ops_fixtures import build_zip, make_env
from support.wheels import build_wheel, installed_version, make_venv

ALLOW_LOCAL = PolicyDecision.allow("install", "local_path", "test").to_dict()


def _counting_python(tmp_path: Path, real: Path) -> tuple[Path, Path]:
    log = tmp_path / "python-calls.log"
    log.write_text("")
    wrapper = tmp_path / "counted" / "bin" / "python"
    wrapper.parent.mkdir(parents=True)
    # one line per run: the first 40 characters of the arguments (a -c script starts on line 2)
    wrapper.write_text(f'#!/bin/sh\nprintf "%.40s\\n" "$*" | head -n 1 >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


def _ours(log: Path) -> list[str]:
    """Our own runs of the python (uv's interpreter query runs it with ``-I -B -c import sys``)."""
    return [line for line in log.read_text().splitlines() if line.startswith("-I -c")]


def test_an_install_runs_comfyuis_python_twice_and_keeps_the_undo_record(tmp_path: Path, uv_bin: str, own_caches):
    real = make_venv(tmp_path / "venv", uv=uv_bin)
    python, log = _counting_python(tmp_path, real)
    env = make_env(tmp_path, python=str(python), deps=False, use_uv="true")
    try:
        wheelhouse = env.manager.layout.wheelhouse_dir
        for name in ("cntpkg-a", "cntpkg-b", "cntpkg-c"):
            build_wheel(wheelhouse, name, "1.0")
        first = build_zip(
            tmp_path / "first.zip", {"__init__.py": "X = 1\n", "requirements.txt": "cntpkg-a\ncntpkg-b\n"}, top="first"
        )
        second = build_zip(
            tmp_path / "second.zip", {"__init__.py": "X = 2\n", "requirements.txt": "cntpkg-c>=1\n"}, top="second"
        )
        for archive, added, present in ((first, ["cntpkg-a", "cntpkg-b"], []), (second, ["cntpkg-c"], ["cntpkg-a"])):
            log.write_text("")
            task = env.run("install", str(archive), policy=ALLOW_LOCAL)
            assert task.state.value == "done", task.error
            assert task.result["deps"]["ran"] is True
            calls = log.read_text().splitlines()
            # before (+ the environment, one run) and after; the rest is uv's own interpreter query
            assert len(_ours(log)) == 2, calls
            assert len(calls) - 2 <= 1 and all("-B" in c for c in calls if not c.startswith("-I -c")), calls
            record = json.loads((env.manager.layout.logs_dir / "undo" / f"{task.id}.json").read_text())
            before = {p["name"] for p in record["before"]}
            after = {p["name"] for p in record["after"]}
            assert after - before == set(added) and set(present) <= before
            for name in added:
                assert installed_version(real, name.replace("-", "_")) == "1.0"
        # a task without the deps step: the two record probes only
        log.write_text("")
        task = env.run("uninstall", "second")
        assert task.state.value == "done", task.error
        assert len(_ours(log)) == 2 and len(log.read_text().splitlines()) == 2
    finally:
        env.close()


_REFERENCE = r"""
import importlib.metadata as m, json, re
out = {}
for d in m.distributions():
    name = d.metadata["Name"]
    key = re.sub(r"[-_.]+", "-", name).lower()
    if name and key not in out:
        out[key] = [key, d.version]
print(json.dumps(sorted(out.values())))
"""


def test_the_package_probe_reads_what_the_metadata_parser_reads(tmp_path: Path, uv_bin: str, own_caches):
    """The probe reads Name and Version off the header block by hand (fast); the email parser of
    importlib.metadata must agree, for wheels, a local file install and a legacy egg-info."""
    import subprocess

    from manager.deps.environment import probe_packages

    python = make_venv(tmp_path / "venv", uv=uv_bin)
    wheels = [build_wheel(tmp_path / "wh", name, "2.0.1") for name in ("Mixed.Case_Name", "plain-pkg")]
    subprocess.run(
        [uv_bin, "pip", "install", "--python", str(python), "--offline", "--no-index", *map(str, wheels)],
        check=True,
        capture_output=True,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    egg = site / "Legacy_Pkg-0.9.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.0\nname: Legacy_Pkg\nVERSION: 0.9\nSummary: x\n\nbody: 1\n")
    probed = probe_packages(str(python))
    reference = json.loads(
        subprocess.run([str(python), "-I", "-c", _REFERENCE], capture_output=True, text=True, check=True).stdout
    )
    assert sorted([p["name"], p["version"]] for p in probed) == reference
    by_name = {p["name"]: p for p in probed}
    assert by_name["mixed-case-name"]["version"] == "2.0.1" and by_name["legacy-pkg"]["version"] == "0.9"
    assert by_name["plain-pkg"]["source"] == "local" and by_name["plain-pkg"]["url"].startswith("file:")


def test_a_restore_runs_comfyuis_python_once(tmp_path: Path, uv_bin: str, own_caches):
    """An offline restore of pinned packages (auto-snapshot on, as by default) probes ComfyUI's
    python once: the capture for the plan and the auto-snapshot, the offline wheel check and the
    pip step share the restore's dependency installer (its probe, and each wheel's metadata read
    once). uv's own interpreter query is not ours."""
    from manager.snapshots.model import PythonPackage, Snapshot
    from manager.snapshots.restore import restore

    real = make_venv(tmp_path / "venv", uv=uv_bin)
    python, log = _counting_python(tmp_path, real)
    env = make_env(tmp_path, python=str(python), deps=False, use_uv="true")
    try:
        wheelhouse = env.manager.layout.wheelhouse_dir
        for name in ("rstpkg-a", "rstpkg-b"):
            build_wheel(wheelhouse, name, "1.0")
        snapshot = Snapshot(
            created_at="2026-12-01T00:00:00Z",
            python=tuple(PythonPackage(name=n, version="1.0") for n in ("rstpkg-a", "rstpkg-b")),
        )
        log.write_text("")
        opened: list[str] = []
        reading = [True]

        def audit(event: str, args: tuple) -> None:  # a real audit hook: our code runs unpatched
            if reading[0] and event == "open" and str(args[0]).endswith(".whl"):
                opened.append(Path(str(args[0])).name)

        sys.addaudithook(audit)
        try:
            result = restore(env.manager, snapshot, where="probe-count")
        finally:
            reading[0] = False
        assert sorted(set(opened)) == sorted(opened), opened  # each wheel's metadata read once at most
        assert result.ok and [s.step.kind for s in result.done] == ["pip_install"], result.to_dict()
        calls = log.read_text().splitlines()
        assert len(_ours(log)) == 1, calls
        assert all("-B" in c for c in calls if not c.startswith("-I -c")), calls
        for name in ("rstpkg_a", "rstpkg_b"):
            assert installed_version(real, name) == "1.0"
        assert result.auto_snapshot  # the capture that found the packages missing was stored
        # as a task: the undo record's probe (before) serves the restore, then the record's after
        from manager.snapshots.store import SnapshotStore

        build_wheel(wheelhouse, "rstpkg-c", "1.0")
        more = Snapshot(
            created_at="2026-12-01T00:00:01Z",
            python=(*snapshot.python, PythonPackage(name="rstpkg-c", version="1.0")),
        )
        SnapshotStore(env.manager.layout.snapshots_dir).save(more, "with-c")
        log.write_text("")
        task = env.run("snapshot_restore", "with-c")
        assert task.state.value == "done", task.error
        assert len(_ours(log)) == 2, log.read_text().splitlines()
        assert installed_version(real, "rstpkg_c") == "1.0"
    finally:
        env.close()
