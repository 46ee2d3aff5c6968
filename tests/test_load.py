"""Load: concurrent clients against the real standalone server while installs run.

Small and quick here (8 clients, 2 seconds); ``python -m bench --only load`` runs the bigger
variant. Asserts no request error, every install done, and reports the figures in the summary.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_load import demo_tree, run_load
from manager.tasks import TaskState

pytestmark = pytest.mark.load


def test_concurrent_clients_while_installs_run(
    tmp_path: Path, request: pytest.FixtureRequest, socket_audit_log
) -> None:
    root = demo_tree(tmp_path / "demo")
    report, installs = run_load(root, clients=8, duration=2.0)
    plugin = request.config.pluginmanager.get_plugin("cm-quality-report")
    if plugin is not None:
        plugin.report.note("load", report.summary())
    assert not report.errors, report.errors[:5]
    assert report.requests >= 50, report.summary()
    assert set(report.latencies) >= {"list", "status", "queue", "enqueue"}, report.latencies.keys()
    assert len(installs) == report.installs_queued == 5
    assert all(t["state"] == TaskState.DONE.value for t in installs), [(t["target"], t["error"]) for t in installs]
    assert {p.name for p in (root / "custom_nodes").iterdir() if not p.name.startswith(".")} >= {
        t["target"] for t in installs
    }
    # every connect went to the loopback server
    assert all(addr[0] == "127.0.0.1" for addr in socket_audit_log.inet_connects())
