"""channels.list parsing, lookup, local channel layouts and the channel policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from manager.channel_cache import ChannelCache
from manager.channels import DEFAULT_CHANNEL_URL, ChannelSet, check_allowed, parse_channels_list
from manager.errors import ChannelInvalid, ChannelNotAllowed, PathEscape
from manager.network import NetworkGate, NetworkMode, NetworkPolicy, run_sync
from manager.records import Channel

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_shipped_channels_list_parses():
    chans = ChannelSet.load(REPO_ROOT / "channels.list")
    assert chans.default == Channel("default", DEFAULT_CHANNEL_URL)
    assert {"default", "recent", "legacy", "forked", "dev", "tutorial"} <= set(chans.names())
    for ch in chans:
        assert ch.url.startswith(DEFAULT_CHANNEL_URL)
        if ch.name != "default":
            assert "/node_db/" in ch.url
    text = (REPO_ROOT / "channels.list").read_text()
    assert text.count("\n#") >= 5  # documented, commented


def test_comments_blank_lines_and_whitespace():
    text = (
        "\ufeff# header\n\n  default :: https://example.org/main/  \n\t# indented comment\nlocal::/srv/ch\n"
        "w::file:///C:/ch\n"
    )
    chans = parse_channels_list(text)
    assert [(c.name, c.url) for c in chans] == [
        ("default", "https://example.org/main/"),
        ("local", "/srv/ch"),
        ("w", "file:///C:/ch"),
    ]


@pytest.mark.parametrize(
    "line,problem",
    [
        ("default https://example.org", "expected 'name::url'"),
        ("::https://example.org", "name is empty"),
        ("x::", "URL is empty"),
        ("typo::htps://raw.githubusercontent.com/x", "unknown URL scheme 'htps://'"),
        ("ftp::ftp://example.org/x", "unknown URL scheme"),
        ("nohost::https:///path", "no host"),
        ("bare::raw.githubusercontent.com/x", "not a URL nor an absolute path"),
        ("rel::channels/mine", "not a URL nor an absolute path"),
    ],
)
def test_bad_lines_name_file_and_line(line, problem):
    text = f"# comment\ndefault::{DEFAULT_CHANNEL_URL}\n\n{line}\n"
    with pytest.raises(ChannelInvalid) as info:
        parse_channels_list(text, source="/u/channels.list")
    err = info.value
    assert err.code == "channel_invalid"
    assert problem in err.message and "/u/channels.list, line 4" in err.message
    assert err.details == {"file": "/u/channels.list", "line": 4}
    assert "name::url" in err.hint


def test_duplicate_name_points_at_first_definition():
    with pytest.raises(ChannelInvalid) as info:
        parse_channels_list("a::https://x.org\nb::https://y.org\na::https://z.org\n")
    assert "line 3" in info.value.message and "first defined on line 1" in info.value.message


def test_unreadable_file_is_channel_invalid(tmp_path):
    with pytest.raises(ChannelInvalid) as info:
        ChannelSet.load(tmp_path / "channels.list")
    assert "channels.list" in info.value.hint


def test_resolve_by_name_or_listed_url_only():
    chans = ChannelSet.from_text("main::https://x.org/main\nmine::file:///srv/ch\n")
    assert chans.resolve("main").url == "https://x.org/main"
    assert chans.resolve("https://x.org/main/").name == "main"  # trailing slash tolerated
    assert chans.resolve("file:///srv/ch").name == "mine"
    assert chans.default.name == "main"  # no "default": the first one
    for bad in ("https://evil.org/main", "nope", "", None):
        with pytest.raises(ChannelInvalid) as info:
            chans.resolve(bad)
        assert "main, mine" in info.value.hint
    assert chans.as_strings() == ["main::https://x.org/main", "mine::file:///srv/ch"]
    assert chans.remote_prefixes() == ("https://x.org/main/",)
    with pytest.raises(ChannelInvalid):
        _ = ChannelSet([]).default  # the property access is what must raise


def test_remote_file_url_joins_and_refuses_traversal():
    chans = ChannelSet.from_text(f"default::{DEFAULT_CHANNEL_URL}/\n")
    assert chans.file_url(chans.default, "custom-node-list.json") == DEFAULT_CHANNEL_URL + "/custom-node-list.json"
    for bad in ("../secrets.json", "/etc/passwd", "a/../../b", "", "C:\\x.json"):
        with pytest.raises(PathEscape):
            chans.file_url(chans.default, bad)


def test_local_channel_layouts(tmp_path, local_channel):
    # 1. files directly in the root (a copy of the real default channel)
    flat = ChannelSet.from_text(f"flat::{local_channel.as_uri()}\nplain::{local_channel}\n")
    for ch in flat:
        url = flat.file_url(ch, "custom-node-list.json")
        assert url == (local_channel / "custom-node-list.json").as_uri()
        assert len(json.loads(NetworkGate.local_path(url).read_bytes())["custom_nodes"]) > 1000
    # 2. <root>/nodes/<file> and <root>/models/model-list.json
    tree = tmp_path / "tree"
    (tree / "nodes").mkdir(parents=True)
    (tree / "models").mkdir()
    shutil.copy(local_channel / "custom-node-list.json", tree / "nodes")
    shutil.copy(local_channel / "extension-node-map.json", tree / "nodes")
    shutil.copy(local_channel / "model-list.json", tree / "models")
    chans = ChannelSet.from_text(f"tree::{tree.as_uri()}\n")
    ch = chans.resolve("tree")
    assert chans.file_url(ch, "custom-node-list.json") == (tree / "nodes" / "custom-node-list.json").as_uri()
    assert chans.file_url(ch, "model-list.json") == (tree / "models" / "model-list.json").as_uri()
    # a file present nowhere: the root location, so the caller's error names a sensible path
    assert chans.file_url(ch, "alter-list.json") == (tree / "alter-list.json").as_uri()


def test_local_channel_read_through_cache_offline(tmp_path, local_channel, socket_audit_log):
    chans = ChannelSet.from_text(f"local::{local_channel.as_uri()}\n")
    cache = ChannelCache(tmp_path / "cache", NetworkGate(NetworkPolicy(mode=NetworkMode.OFFLINE)))
    got = run_sync(cache.aget(chans.file_url(chans.resolve("local"), "model-list.json")))
    assert got.source == "local" and len(got.json()["models"]) > 100
    assert socket_audit_log.inet_connects() == []


def test_check_allowed_policy():
    remote = Channel("default", DEFAULT_CHANNEL_URL)
    plain = Channel("corp", "http://mirror.corp/channel")
    local = Channel("local", "file:///srv/ch")
    closed = dict(allow_remote_channel=False, allowed_channels=(), http_channel_enabled=False)
    check_allowed(local, **closed)  # local: always
    check_allowed(remote, **{**closed, "allow_remote_channel": True})
    with pytest.raises(ChannelNotAllowed) as info:
        check_allowed(remote, **closed)
    hint = info.value.hint
    assert "allow_remote_channel" in hint and "allowed_channels" in hint and info.value.http_status == 403
    # allowed_channels adds channels by URL (trailing slash tolerated) or by name
    only = {**closed, "allowed_channels": (DEFAULT_CHANNEL_URL + "/", "corp")}
    check_allowed(remote, **only)
    with pytest.raises(ChannelNotAllowed):
        check_allowed(Channel("dev", DEFAULT_CHANNEL_URL + "/node_db/dev"), **only)
    # plain http needs http_channel_enabled even when otherwise allowed
    with pytest.raises(ChannelNotAllowed) as info:
        check_allowed(plain, **only)
    assert "http_channel_enabled" in info.value.hint
    check_allowed(plain, **{**only, "http_channel_enabled": True})
