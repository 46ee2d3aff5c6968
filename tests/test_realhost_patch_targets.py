"""The real-host tier injects faults by text patches of our installed copy: every patch target must
still be in the file it patches (a reformat once broke two of them unseen where the tier did not run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from realhost import test_start

REPO = Path(__file__).resolve().parents[1]
PATCHES = {
    **{f"injected-{where}": patch for where, patch in test_start.INJECTED.items()},
    "web-get-in-table": test_start.WEB_GET_IN_TABLE,
    "raw-route-on-comfyui": test_start.RAW_ROUTE_ON_COMFYUI,
}


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_each_patch_target_is_in_its_file(name: str) -> None:
    for rel, (old, _new) in PATCHES[name].items():
        text = (REPO / rel).read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{name}: {old!r} is not exactly once in {rel}"
