"""Channel files decoded member by member (``manager/json_stream.py``, issue 21 item 1) give exactly
what ``json.loads`` gives: the same members in the same order for a well-formed file, and for
anything streaming cannot mirror (syntax errors, a repeated key, the wrong shape) it steps aside, so
the parsers' results and error texts are those of the whole-document read. Real channel data too."""

from __future__ import annotations

import json

import pytest

from manager.catalog_parse import (
    FILE_NODE_MAP,
    FILE_NODES,
    FILE_STATS,
    _load_json,
    _node_map_from,
    _packs_from,
    _stats_from,
    parse_custom_node_list,
    parse_github_stats,
    parse_node_map,
)
from manager.json_stream import NotStreamable, members

PACK = {
    "id": "p",
    "title": "Pé \u2603 \U0001f600",
    "reference": "https://github.com/o/p",
    "files": ["https://github.com/o/p"],
}
STREAMED = [
    b'{"custom_nodes": []}',
    json.dumps({"custom_nodes": [PACK, PACK | {"id": "q"}]}).encode(),
    json.dumps({"before": {"x": [1, 2]}, "custom_nodes": [PACK], "after": "z"}, indent=4).encode(),
    b' \r\n{ "custom_nodes" : [ {"id":"a","title":"t\\u00e9\\"q"} , 3 , null ] }\n\t',
    "\ufeff".encode() + json.dumps({"custom_nodes": [PACK]}).encode(),  # a byte-order mark, as json.loads takes it
    json.dumps({"custom_nodes": [PACK]}, ensure_ascii=False).encode("utf-16"),
]
NOT_STREAMED = [
    b"",
    b"[1, 2]",
    b"{}",
    b'{"custom_nodes": {"a": 1}}',
    b'{"other": []}',
    b'{"custom_nodes": [1, 2,]}',
    b'{"custom_nodes": [1, 2]',
    b'{"custom_nodes": [1] } trailing',
    b'{"custom_nodes": [1], "custom_nodes": [2]}',
    b'{"custom_nodes": [{"id": "a"}, {"id": }]}',
    b"\xff\xfe\x00garbage",
    b'{"custom_nodes": [1], }',
]


@pytest.mark.parametrize("data", STREAMED)
def test_well_formed_lists_stream_the_same_members(data):
    assert list(members(data, "custom_nodes")) == json.loads(data.decode(json.detect_encoding(data)))["custom_nodes"]


@pytest.mark.parametrize("data", NOT_STREAMED)
def test_anything_else_is_left_to_json_loads_with_its_result(data):
    with pytest.raises(NotStreamable):
        list(members(data, "custom_nodes"))
    entries, bad = _load_json(FILE_NODES, data, "custom_nodes")
    parsed = parse_custom_node_list(data)
    if bad is not None:
        assert parsed.file_problem == bad and parsed.items == ()
    else:
        assert parsed == _packs_from(entries)


def test_top_level_pairs_in_order_and_a_repeated_key_steps_aside():
    doc = {"https://github.com/a/b": [["X", "Y"], {"title_aux": "b"}], "https://github.com/c/d": [["Z"], {}]}
    data = json.dumps(doc).encode()
    assert list(members(data, None)) == list(doc.items())
    repeated = b'{"https://github.com/a/b": [["X"], {}], "https://github.com/a/b": [["Y"], {}]}'
    with pytest.raises(NotStreamable):
        list(members(repeated, None))
    assert parse_node_map(repeated).items[0].names == ("Y",)  # the last one, as json.loads keeps it


def test_the_real_channel_parses_as_from_json_loads(channel_db):
    folder = channel_db / "default"
    for name, parse, build in (
        (FILE_NODES, parse_custom_node_list, _packs_from),
        (FILE_NODE_MAP, parse_node_map, _node_map_from),
        (FILE_STATS, parse_github_stats, _stats_from),
    ):
        data = (folder / name).read_bytes()
        doc = json.loads(data)
        whole = build(doc["custom_nodes"] if name == FILE_NODES else doc.items())
        streamed = parse(data)
        assert sum(1 for _ in members(data, "custom_nodes" if name == FILE_NODES else None)) == whole.entry_count
        assert streamed.entry_count == whole.entry_count > 1000
        assert streamed == whole, name
