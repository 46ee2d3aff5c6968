"""The panel's per-character search index (built at idle time) must not change a single result:
over the real 5.9k catalog, every keystroke of one-char and longer queries, for every filter and
sort, gives the same rows in the same order with the index built as with the plain scan."""

from __future__ import annotations

from typing import Any

import pytest

from support.standin_host import StandInComfy

pytestmark = pytest.mark.browser

CHECK = """async ([base, queries]) => {
    const { PackIndex, normalisePack, FILTERS, SORTS } = await import(base + 'panel/search.js');
    const res = await fetch('/api/offline-manager/v1/packs');
    const body = await res.json();
    const packs = body.data.packs.map((p, k) => normalisePack(p, k));
    packs[3] = { ...packs[3], state: 'enabled', installed: true, updateAvailable: true };
    packs[7] = { ...packs[7], state: 'disabled', installed: true };
    packs[11] = { ...packs[11], state: 'enabled', installed: true, importFailed: true };
    const plain = new PackIndex(packs);
    const indexed = new PackIndex(packs);
    // Build in small slices as the view does, to check the resumable build too.
    let slices = 0;
    while (!indexed.warmStep(performance.now() + 1)) slices++;
    const mismatches = [];
    let checked = 0, nonEmpty = 0;
    for (const [sort] of SORTS) {
        for (const [filter] of FILTERS) {
            for (const query of queries) {
                for (let n = 0; n <= query.length; n++) {
                    const text = query.slice(0, n);
                    const a = Array.from(plain.query({ text, filter, sort }));
                    const b = Array.from(indexed.query({ text, filter, sort }));
                    checked++;
                    if (b.length) nonEmpty++;
                    if (a.length !== b.length || a.some((v, k) => v !== b[k]))
                        mismatches.push([sort, filter, text, a.length, b.length]);
                }
                // Jumping straight to a one-char query (no refine from a previous one).
                for (const text of ['x', 'q z', '7', 'é']) {
                    plain.touched(); indexed.touched();
                    const a = Array.from(plain.query({ text, filter, sort }));
                    const b = Array.from(indexed.query({ text, filter, sort }));
                    checked++;
                    if (a.length !== b.length || a.some((v, k) => v !== b[k]))
                        mismatches.push([sort, filter, text, a.length, b.length]);
                }
            }
        }
    }
    return { total: packs.length, checked, nonEmpty, slices, built: indexed._chars !== null,
             plainBuilt: plain._chars !== null, mismatches: mismatches.slice(0, 5) };
}"""


def test_char_index_gives_the_same_rows_as_the_scan(page: Any, comfy: StandInComfy) -> None:
    page.goto(comfy.url("/api/offline-manager/v1/status"))
    base = f"/extensions/{comfy.extension_name}/"
    out = page.evaluate(CHECK, [base, ["a", "i", "impact pack", "k w", "a b c", "ControlNet", "z", "-_"]])
    assert out["total"] >= 5800
    assert out["built"] is True and out["plainBuilt"] is False
    assert out["slices"] > 0  # the build really ran in slices
    assert out["checked"] > 900 and out["nonEmpty"] > 300
    assert out["mismatches"] == []
