"""The real-host tier: the real ComfyUI (0.8.0 and 0.3.64) with this project installed as the
README says, run inside the loopback-only network namespace scripts/test.sh creates.

Every test here carries the ``realhost`` marker; the run's last line counts them, or says in
capitals that the tier did not run and why (no host sources, environment not built, not in a
network namespace). Hosts are module-scoped: each start costs ComfyUI's ~8 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser.conftest import browser_context, page, playwright_driver  # noqa: F401  (fixtures)
from realhost.helpers import channel_host, need_host

from support import realhost
from support.realhost_env import HOST_VERSIONS

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).is_relative_to(HERE):
            item.add_marker(pytest.mark.realhost)


@pytest.fixture(scope="module", params=HOST_VERSIONS)
def real_comfy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, channel_db: Path
) -> Iterator[realhost.RealComfyUI]:
    """A started real ComfyUI per version, offline, with a file:// channel and local pack repos."""
    version = request.param
    need_host(version)
    label = f"{request.module.__name__.rsplit('.', 1)[-1]}-{version}"
    with channel_host(tmp_path_factory.mktemp(f"real-{version}"), channel_db, version, label) as host:
        yield host


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
