"""The panel's search index over the real DB, in the browser: the fast path (refining the last
result as the query grows, typed-array buffers, tiers) must return exactly what a plain filter
of every pack returns, for every keystroke, filter and sort."""

from __future__ import annotations

from typing import Any

import pytest

from support.standin_host import StandInComfy

pytestmark = pytest.mark.browser

CHECK = """async ([base, queries]) => {
    const { PackIndex, normalisePack, splitTerms } = await import(base + 'panel/search.js');
    const res = await fetch('/api/offline-manager/v1/packs');
    const body = await res.json();
    const packs = body.data.packs.map((p, k) => normalisePack(p, k));
    // A few installed/disabled rows so the filters have something to find.
    packs[3] = { ...packs[3], state: 'enabled', installed: true, updateAvailable: true };
    packs[7] = { ...packs[7], state: 'disabled', installed: true };
    packs[11] = { ...packs[11], state: 'enabled', installed: true, importFailed: true };
    const index = new PackIndex(packs);
    const pass = { all: () => true, installed: (p) => p.installed, 'not-installed': (p) => !p.installed,
                   disabled: (p) => p.state === 'disabled', update: (p) => p.installed && p.updateAvailable,
                   'import-failed': (p) => p.importFailed };
    const mismatches = [];
    let checked = 0;
    for (const sort of ['stars', 'name', 'updated']) {
        const order = Array.from(index.order(sort));
        for (const filter of Object.keys(pass)) {
            for (const query of queries) {
                for (let n = 0; n <= query.length; n++) {          // every keystroke of the query
                    const text = query.slice(0, n);
                    const got = Array.from(index.query({ text, filter, sort }));
                    const terms = splitTerms(text);
                    const hit = (i) => pass[filter](packs[i]) && terms.every((t) =>
                        (packs[i].id + '\\n' + packs[i].title + '\\n' + packs[i].author + '\\n' + packs[i].description)
                            .toLowerCase().includes(t));
                    const head = (i) => terms.every((t) =>
                        (packs[i].id + '\\n' + packs[i].title).toLowerCase().includes(t));
                    const want = order.filter(hit);
                    const tiered = terms.length ? want.filter(head).concat(want.filter((i) => !head(i))) : want;
                    checked++;
                    if (got.length !== tiered.length || got.some((v, k) => v !== tiered[k]))
                        mismatches.push([sort, filter, text, got.length, tiered.length]);
                }
            }
        }
    }
    return { total: packs.length, checked, mismatches: mismatches.slice(0, 5) };
}"""


def test_search_matches_a_plain_filter_on_every_keystroke(page: Any, comfy: StandInComfy) -> None:
    page.goto(comfy.url("/api/offline-manager/v1/status"))
    base = f"/extensions/{comfy.extension_name}/"
    out = page.evaluate(CHECK, [base, ["impact pack", "ControlNet Aux", "kijai wan", "zz none", "a b"]])
    assert out["total"] >= 5800
    assert out["checked"] > 500
    assert out["mismatches"] == []
