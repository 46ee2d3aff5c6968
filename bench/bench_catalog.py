"""Catalog benchmarks on the real default channel DB (5,896 entries, 562 models)."""

from __future__ import annotations

import json
import statistics

from manager.catalog import Catalog, ChannelFiles, ParseCache
from manager.catalog_parse import CHANNEL_FILES
from manager.records import Channel

from .run import BenchContext, Benchmark, Figure, median_time, timed_ratio

# What people type into the panel's search box.
SEARCH_QUERIES = (
    "impact",
    "controlnet aux",
    "video helper suite",
    "upscale",
    "ipadapter plus",
    "face detailer",
    "kijai wan",
    "comfyui",
    "a",
)  # the last two match nearly every pack
# Class names from the real extension-node-map, plus one nobody provides (full pattern scan).
NODE_TYPES = (
    "ImpactWildcardProcessor",
    "VHS_VideoCombine",
    "IPAdapterAdvanced",
    "Image Comparer (rgthree)",
    "NoSuchNodeClassAnywhere",
)


def _read_default(ctx: BenchContext) -> dict[str, bytes]:
    folder = ctx.require_channel_db() / "default"
    return {name: (folder / name).read_bytes() for name in CHANNEL_FILES if (folder / name).is_file()}


def _sources(files: dict[str, bytes]) -> list[ChannelFiles]:
    return [ChannelFiles(Channel("default", "https://example.invalid/default"), files)]


def _catalog(ctx: BenchContext) -> Catalog:
    files = ctx.memo("catalog.default_files", lambda: _read_default(ctx))
    return ctx.memo("catalog.default", lambda: Catalog.build(_sources(files)))


def cold_load(ctx: BenchContext) -> Figure:
    """Read the files and build with an empty ParseCache: every file parsed and indexed."""
    _read_default(ctx)  # warm the OS page cache so the figure is ours, not the disk's
    box: list[Catalog] = []
    seconds = median_time(
        lambda: box.append(Catalog.build(_sources(_read_default(ctx)), parse_cache=ParseCache())), repeat=ctx.repeat
    )
    cat = box[-1]
    return Figure(seconds, f"{len(cat.packs)} packs, {len(cat.models)} models, {len(cat.issues)} issues")


def cold_load_vs_json(ctx: BenchContext) -> Figure:
    """Cold load divided by a plain read + json.loads of the same files, same run."""

    def baseline() -> None:
        for data in _read_default(ctx).values():
            json.loads(data)

    ratio, ours, base = timed_ratio(
        lambda: Catalog.build(_sources(_read_default(ctx)), parse_cache=ParseCache()), baseline, repeat=ctx.repeat
    )
    return Figure(ratio, f"build {ours * 1000:.0f} ms vs json.loads {base * 1000:.0f} ms")


def warm_build(ctx: BenchContext) -> Figure:
    """Rebuild from unchanged bytes: every file is a ParseCache hit (merge + index only)."""
    files = ctx.memo("catalog.default_files", lambda: _read_default(ctx))
    cache = ParseCache()
    Catalog.build(_sources(files), parse_cache=cache)
    seconds = median_time(lambda: Catalog.build(_sources(files), parse_cache=cache), repeat=ctx.repeat)
    return Figure(seconds, f"{cache.parses} parses, {cache.hits} cache hits")


def lookup_by_id(ctx: BenchContext) -> Figure:
    cat = _catalog(ctx)
    ids = [p.id for p in cat.packs] + [p.id.upper() for p in cat.packs[:500]]  # some case-insensitive
    per_call = median_time(lambda: [cat.get(i) for i in ids], repeat=ctx.repeat) / len(ids)
    return Figure(per_call * 1e6, f"{len(ids)} lookups per repetition")


def lookup_by_reference(ctx: BenchContext) -> Figure:
    cat = _catalog(ctx)
    urls = []
    for p in cat.packs[:1000]:
        urls += [p.reference, p.reference.rstrip("/") + ".git", p.reference.replace("https://", "http://www.")]
    per_call = median_time(lambda: [cat.by_reference(u) for u in urls], repeat=ctx.repeat) / len(urls)
    return Figure(per_call * 1e6, f"{len(urls)} URL variants per repetition")


def search(ctx: BenchContext) -> Figure:
    cat = _catalog(ctx)
    per_query = {q: median_time(lambda q=q: cat.search(q, limit=50), repeat=max(ctx.repeat, 5)) for q in SEARCH_QUERIES}
    slowest = max(per_query, key=per_query.__getitem__)
    return Figure(
        statistics.median(per_query.values()) * 1000,
        f"{len(SEARCH_QUERIES)} queries over {len(cat.packs)} packs; slowest {slowest!r} "
        f"{per_query[slowest] * 1000:.1f} ms",
    )


def _catalog_59k(ctx: BenchContext) -> Catalog:
    def build() -> Catalog:
        folder = ctx.support("catalog_x10").channel_x10(ctx.require_channel_db())
        files = {name: (folder / name).read_bytes() for name in CHANNEL_FILES if (folder / name).is_file()}
        return Catalog.build(_sources(files))

    return ctx.memo("catalog.59k", build)


def cold_load_59k(ctx: BenchContext) -> Figure:
    folder = ctx.support("catalog_x10").channel_x10(ctx.require_channel_db())
    files = {name: (folder / name).read_bytes() for name in CHANNEL_FILES if (folder / name).is_file()}
    box: list[Catalog] = []
    seconds = median_time(lambda: box.append(Catalog.build(_sources(files), parse_cache=ParseCache())), repeat=3)
    small = median_time(lambda: Catalog.build(_sources(_read_default(ctx)), parse_cache=ParseCache()), repeat=3)
    return Figure(seconds / small, f"59k build {seconds:.2f} s / 5.9k {small:.2f} s ({len(box[-1].packs)} packs)")


def search_59k(ctx: BenchContext) -> Figure:
    cat = _catalog_59k(ctx)
    per_query = {q: median_time(lambda q=q: cat.search(q, limit=50), repeat=5) for q in SEARCH_QUERIES}
    slowest = max(per_query, key=per_query.__getitem__)
    return Figure(
        statistics.median(per_query.values()) * 1000,
        f"{len(SEARCH_QUERIES)} queries over {len(cat.packs)} packs; slowest {slowest!r} "
        f"{per_query[slowest] * 1000:.1f} ms",
    )


def node_type_lookup(ctx: BenchContext) -> Figure:
    cat = _catalog(ctx)
    found = sum(1 for n in NODE_TYPES if cat.packs_for_node_type(n))
    per_call = median_time(
        lambda: [cat.packs_for_node_type(n) for n in NODE_TYPES], repeat=ctx.repeat, number=20
    ) / len(NODE_TYPES)
    return Figure(per_call * 1e6, f"{found}/{len(NODE_TYPES)} class names resolved")


BENCHMARKS = [
    Benchmark(
        "catalog.cold_load",
        "s",
        cold_load,
        target=1.0,
        description="read + parse + merge + index the default channel (empty ParseCache)",
    ),
    Benchmark(
        "catalog.cold_load_vs_json",
        "x",
        cold_load_vs_json,
        baseline="read + json.loads of the same files",
        description="cold load as a multiple of plain JSON decoding (informational)",
    ),
    Benchmark(
        "catalog.warm_build",
        "s",
        warm_build,
        target=0.5,
        description="rebuild from unchanged bytes (every file a ParseCache hit)",
    ),
    Benchmark(
        "catalog.lookup_by_id",
        "us",
        lookup_by_id,
        target=1000.0,
        description="Catalog.get per call (exact and case-insensitive ids)",
    ),
    Benchmark(
        "catalog.lookup_by_reference",
        "us",
        lookup_by_reference,
        target=1000.0,
        description="Catalog.by_reference per call (.git, www., http variants)",
    ),
    Benchmark(
        "catalog.search", "ms", search, target=10.0, description="median Catalog.search latency over realistic queries"
    ),
    Benchmark(
        "catalog.node_type_lookup",
        "us",
        node_type_lookup,
        target=1000.0,
        description="Catalog.packs_for_node_type per call (exact map + nodename_pattern scan)",
    ),
    Benchmark(
        "catalog.cold_load_59k_vs_5.9k",
        "x",
        cold_load_59k,
        target=10.0,
        compare="<=",
        baseline="the same build at 5.9k packs, same run",
        description="catalog build grows no worse than linearly (59k packs: the real DB ten times over)",
    ),
    Benchmark(
        "catalog.search_59k",
        "ms",
        search_59k,
        description="median Catalog.search latency at 59k packs (the CLI's and API's search; the panel "
        "searches in the page: panel.search_keystroke_59k)",
    ),
]
