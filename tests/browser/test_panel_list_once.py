"""Issue 21 item 2: the pack list crosses the wire once. The page preloads it in the background;
opening the panel shows that copy and revalidates it with its ETag, which answers 304 (no body,
nothing parsed again) while the server's list is unchanged. In the real frontend served by the
stand-in host, over the real channel DB.
"""

from __future__ import annotations

from typing import Any

import pytest
from browser.pages import ENTRY, VISIBLE_ROW

from support.standin_host import StandInComfy

pytestmark = pytest.mark.browser

PACKS = """() => performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/offline-manager/v1/packs'))
    .map((e) => ({ name: e.name, status: e.responseStatus, body: e.encodedBodySize, done: e.responseEnd > 0 }))"""


def test_a_preloaded_list_is_revalidated_not_transferred_again(page: Any, comfy: StandInComfy) -> None:
    page.goto(comfy.url("/"))
    page.wait_for_function(f"({PACKS})().some((e) => e.done)", timeout=60_000, polling=100)
    page.locator(ENTRY).first.click(timeout=60_000)
    page.wait_for_selector(VISIBLE_ROW, timeout=60_000)
    page.wait_for_function(f"({PACKS})().length >= 2 && ({PACKS})().every((e) => e.done)", timeout=60_000)
    page.wait_for_timeout(300)  # nothing else follows
    entries = page.evaluate(PACKS)
    assert len(entries) == 2, entries
    preload, again = entries
    assert "mode=local" in preload["name"] and preload["status"] == 200 and preload["body"] > 100_000, preload
    assert again["status"] == 304 and again["body"] == 0, again
    total = int(page.inner_text("[data-testid=pack-count]").split(" of ")[1].replace(",", ""))
    assert total >= 5800
