"""Suite-wide fixtures: the loopback-only socket guard and shared fixture builders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import channel_data, socket_audit, tools
from support.http_server import LoopbackServer

# Fixture modules shared by several test modules: registered once here, never imported by name
# into a test module (a test's parameter would shadow the import).
pytest_plugins = ["support.api_tree", "support.wheels", "support.comfy_entry"]

AUDIT = socket_audit.install()

REPO_ROOT = Path(__file__).resolve().parents[1]


def _find_channel_db() -> Path:
    """``$CM_CHANNEL_DB``, else the dated copy shipped in tests/data/ (unpacked once into a cache)."""
    try:
        return channel_data.channel_db()
    except channel_data.ChannelDataError as exc:
        raise pytest.UsageError(str(exc)) from None


CHANNEL_DB = _find_channel_db()


@pytest.fixture(autouse=True)
def _guard_sockets(request: pytest.FixtureRequest):
    """Fail any test that tried to reach beyond 127.0.0.0/8 and ::1."""
    AUDIT.reset()
    yield
    if AUDIT.violations:
        violations = list(AUDIT.violations)
        AUDIT.reset()
        pytest.fail("test reached outside loopback: " + "; ".join(violations), pytrace=False)


@pytest.fixture
def socket_audit_log() -> socket_audit.SocketAudit:
    """The live audit record: ``.inet_connects()`` lists every connect made so far in this test."""
    return AUDIT


@pytest.fixture
def http_server():
    """A real aiohttp server on 127.0.0.1 in a background thread."""
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def channel_db() -> Path:
    """The real public channel DB: the shipped copy (tests/data/) or ``$CM_CHANNEL_DB``.

    Read-only by convention: copy what a test writes to (``local_channel`` does).
    """
    return CHANNEL_DB


@pytest.fixture(scope="session")
def git_bin() -> str:
    """The git on PATH; missing, the test FAILS with the install command (never a silent skip)."""
    return tools.require("git")


@pytest.fixture
def comfy_tree(tmp_path: Path) -> Path:
    """An empty ComfyUI-shaped tree: custom_nodes/, models/, user/."""
    root = tmp_path / "ComfyUI"
    for sub in ("custom_nodes", "models/checkpoints", "user"):
        (root / sub).mkdir(parents=True)
    return root


@pytest.fixture
def local_channel(tmp_path: Path, channel_db: Path) -> Path:
    """A writable copy of the real default channel, usable as a file:// channel."""
    dest = tmp_path / "channel"
    shutil.copytree(channel_db / "default", dest)
    return dest


# --- quality harnesses (issue 11): markers, one-line summary, offline_suite guard --------------
def pytest_configure(config: pytest.Config) -> None:
    """Register the quality markers and the plugin that prints the end-of-run summary line."""
    from support.session_report import MARKER_HELP, QualityReportPlugin

    for name, text in MARKER_HELP.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if not config.pluginmanager.has_plugin("cm-quality-report"):
        config.pluginmanager.register(QualityReportPlugin(AUDIT), "cm-quality-report")
