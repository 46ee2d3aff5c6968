"""The end-of-run summary line and the offline_suite marker (tests/support/session_report.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.session_report import SessionReport, outcome_of

REPO = Path(__file__).resolve().parents[1]


class _Rep:
    def __init__(self, when: str, outcome: str, xfail: bool = False) -> None:
        self.when = when
        self.passed, self.failed, self.skipped = outcome == "passed", outcome == "failed", outcome == "skipped"
        if xfail:
            self.wasxfail = "reason"


def test_phases_fold_into_one_outcome_per_test() -> None:
    rep = SessionReport()
    for phase in (_Rep("setup", "passed"), _Rep("call", "passed"), _Rep("teardown", "passed")):
        rep.record_phase("t::ok", {"hostile"}, outcome_of(phase))
    for phase in (_Rep("setup", "passed"), _Rep("call", "passed"), _Rep("teardown", "failed")):
        rep.record_phase("t::teardown-error", {"fault"}, outcome_of(phase))
    rep.record_phase("t::xfail", {"fault"}, outcome_of(_Rep("call", "skipped", xfail=True)))
    rep.record_phase("t::plain", set(), outcome_of(_Rep("call", "failed")))
    rep.record_sockets("t::net", 2, ["socket.connect to ('10.0.0.1', 80) (outside loopback)"])
    rep.note("load", "8 clients: 200 req/s")
    line = rep.summary_line()
    assert line.startswith("quality: ") and "\n" not in line
    assert "faults 2 (1 error, 1 xfailed)" in line
    assert "hostile inputs 1 (1 passed)" in line
    assert "loads 0" in line and "8 clients: 200 req/s" not in line  # a note without a case is not shown
    assert "outside-loopback connects: 1 test(s): t::net" in line


def test_hostile_cases_are_counted_per_class() -> None:
    rep = SessionReport()
    passed = outcome_of(_Rep("call", "passed"))
    for i in range(3):
        rep.record_phase(f"t::host{i}", {"hostile"}, passed, "host-header")
    rep.record_phase("t::plain", {"hostile"}, passed)  # names no class: other
    rep.record_phase("t::chan", {"hostile"}, outcome_of(_Rep("call", "failed")), "channel-path")
    rep.record_phase("t::fault", {"fault"}, passed, "ignored")  # only hostile cases have classes
    line = rep.summary_line()
    assert "hostile inputs 5 (4 passed, 1 failed; channel-path 1, host-header 3, other 1) | " in line, line
    assert "faults 1 (1 passed) | " in line
    only_other = SessionReport()
    only_other.record_phase("t::x", {"hostile"}, passed)
    assert "hostile inputs 1 (1 passed) | " in only_other.summary_line()  # no class named: no class part


CONFTEST = """
import pytest
from support import socket_audit
from support.session_report import MARKER_HELP, QualityReportPlugin

AUDIT = socket_audit.install()

@pytest.fixture(autouse=True)
def _reset():
    AUDIT.reset()
    yield

def pytest_configure(config):
    for name, text in MARKER_HELP.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.pluginmanager.register(QualityReportPlugin(AUDIT), "cm-quality-report")
"""

TESTS = """
import socket
import pytest

def _loopback_connect():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0)); srv.listen(1)
    cli = socket.create_connection(srv.getsockname())
    cli.close(); srv.close()

@pytest.mark.offline_suite
def test_offline_but_connects():
    _loopback_connect()

@pytest.mark.offline_suite
@pytest.mark.hostile
def test_offline_quiet():
    assert True

@pytest.mark.fault
def test_fault_case():
    _loopback_connect()      # loopback is fine outside offline suites

@pytest.mark.hostile("channel-path")
def test_hostile_with_a_class():
    assert True

@pytest.mark.load
@pytest.mark.xfail(strict=True, reason="demo")
def test_load_xfail():
    assert False

def test_outside_loopback():
    with pytest.raises(Exception):
        socket.create_connection(("10.255.255.1", 9), timeout=0.01)
"""


CLASSED_MODULE = """
import pytest

pytestmark = pytest.mark.hostile("config-file")

def test_from_the_module_marker():
    assert True

@pytest.mark.hostile("duplicate-keys")
def test_the_closest_marker_names_the_class():
    assert True
"""


def test_plugin_prints_one_line_and_guards_offline_suites(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(TESTS)
    (tmp_path / "test_classed.py").write_text(CLASSED_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            os.devnull,
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert "FAILED test_sample.py::test_offline_but_connects" in text, text
    assert "offline_suite test made 1 socket connect(s)" in text, text
    lines = [line for line in text.splitlines() if line.startswith("quality: ")]
    assert lines == [
        "quality: faults 1 (1 passed) | "
        "hostile inputs 4 (4 passed; channel-path 1, config-file 1, duplicate-keys 1, other 1) | loads 1 (1 xfailed) | "
        "outside-loopback connects: 1 test(s): test_sample.py::test_outside_loopback | "
        "REAL-HOST TIER DID NOT RUN: no real-host test was selected"
    ], text


def test_the_summary_counts_real_host_cases_or_says_the_tier_did_not_run():
    rep = SessionReport()
    rep.record_realhost("t1", "skipped", "real-host tier did not run: no source for ComfyUI 0.8.0")
    assert rep.summary_line().endswith("REAL-HOST TIER DID NOT RUN: no source for ComfyUI 0.8.0")
    rep.record_realhost("t2", "passed")
    rep.record_realhost("t3", "passed")
    rep.record_realhost("t3", "error")  # a teardown error after a pass counts as the error
    assert rep.summary_line().endswith(
        "real-host 3 (1 passed, 1 error, 1 skipped) (skipped: no source for ComfyUI 0.8.0)"
    )


def test_a_run_without_host_sources_says_so_on_its_last_line(tmp_path):
    """The real pytest run, with no host source anywhere: its last line says it in capitals."""
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_DIR"}
    env["OFFLINE_MANAGER_HOSTS"] = str(tmp_path)  # an empty folder: no tarballs
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/realhost/test_start.py",
            "-k",
            "ready_line",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = out.stdout.strip().splitlines()[-1]
    assert (
        last.startswith("quality: ")
        and "REAL-HOST TIER DID NOT RUN: no source for ComfyUI" in last
        and "no source for ComfyUI 0.8.0" in last
    ), out.stdout[-1500:]


def test_the_summary_lists_what_did_not_run_outside_the_real_host_tier():
    rep = SessionReport()
    assert "did not run" not in rep.summary_line()  # everything ran: no part at all
    rep.record_skip("t::linux", "Skipped: parent-death signal is Linux-only")
    rep.record_skip("t::linux2", "parent-death signal is Linux-only")
    rep.record_skip("t_mod.py", "could not import 'x'")
    rep.record_realhost("t::host", "skipped", "real-host tier did not run: no source")
    line = rep.summary_line()
    assert " | did not run: 3 (could not import 'x': 1; parent-death signal is Linux-only: 2) | " in line
    assert line.endswith("REAL-HOST TIER DID NOT RUN: no source")  # the real-host part stays last


SKIPPING = """
import sys
import pytest

@pytest.mark.skipif(sys.platform != "no-such-platform", reason="needs no-such-platform")
def test_platform_only():
    pass

def test_skips_inside():
    pytest.skip("decided at run time")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

@pytest.mark.realhost
def test_host_case():
    pytest.skip("real-host tier did not run: no host here")

def test_runs():
    pass
"""


def test_a_real_run_names_its_skips_on_its_last_line(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    (tmp_path / "test_whole_module.py").write_text(
        "import pytest\npytest.skip('module needs a thing', allow_module_level=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            os.devnull,
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = out.stdout.strip().splitlines()[-1]
    assert last == (
        "quality: faults 0 | hostile inputs 0 | loads 0 | outside-loopback connects: none | "
        "did not run: 3 (decided at run time: 1; module needs a thing: 1; needs no-such-platform: 1) | "
        "REAL-HOST TIER DID NOT RUN: no host here"
    ), out.stdout[-1500:]
