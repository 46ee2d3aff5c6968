"""Catalog: tolerant parsing of the real channel DB, merging, indexing, ParseCache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from manager.catalog import Catalog, ChannelFiles, ParseCache
from manager.catalog_parse import CHANNEL_FILES, normalize_url, url_info
from manager.errors import ChannelDataInvalid
from manager.records import Channel

IMPACT = "comfyui-impact-pack"


def _files(folder: Path) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in CHANNEL_FILES if (folder / n).is_file()}


def _src(name: str, files: dict[str, bytes]) -> ChannelFiles:
    return ChannelFiles(Channel(name, f"https://channels.example.invalid/{name}"), files)


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _codes(issues, channel: str | None = None, file: str | None = None) -> list[str]:
    return [
        i.problem.split(":", 1)[0]
        for i in issues
        if (channel is None or i.channel == channel) and (file is None or i.file == file)
    ]


@pytest.fixture(scope="module")
def default_files(channel_db: Path) -> dict[str, bytes]:
    return _files(channel_db / "default")


@pytest.fixture(scope="module")
def dev_files(channel_db: Path) -> dict[str, bytes]:
    return _files(channel_db / "dev")


@pytest.fixture(scope="module")
def cat(default_files) -> Catalog:
    return Catalog.build([_src("default", default_files)])


# --- the real default channel -------------------------------------------------------------
def test_real_default_counts(cat: Catalog, default_files):
    entries = json.loads(default_files["custom-node-list.json"])["custom_nodes"]
    assert len(entries) == 5896
    dropped = _codes(cat.issues, "default", "custom-node-list.json").count("duplicate_entry")
    # every entry is a pack, except the same repository listed twice (reported, first kept)
    assert dropped == 4
    assert len(cat.packs) + dropped == 5896
    assert len(cat.models) == 562
    assert len({p.id for p in cat.packs}) == len(cat.packs)
    assert {p.channel for p in cat.packs} == {"default"}
    assert {p.install_type for p in cat.packs} == {"git-clone", "copy", "unzip"}


def test_real_install_type_oddities_normalised_and_reported(cat: Catalog):
    assert cat.get("dia2_tts_captions").install_type == "git-clone"  # written "Git-Clone"
    assert cat.get("comfyui-mediapreview").install_type == "git-clone"  # written "git"
    problems = [i.problem for i in cat.issues if i.problem.startswith("install_type_normalised")]
    assert sorted(problems) == [
        "install_type_normalised: 'Git-Clone' read as 'git-clone'",
        "install_type_normalised: 'git' read as 'git-clone'",
    ]
    assert _codes(cat.issues_for("dia2_tts_captions")) == ["install_type_normalised"]


def test_real_url_typos_are_reported_not_fatal(cat: Catalog):
    # github-stats.json has the same repository under 'htps://' and 'ttps://' keys
    repaired = [i for i in cat.issues if i.file == "github-stats.json" and i.problem.startswith("url_repaired")]
    assert {i.index for i in repaired} == {
        "htps://github.com/GraftingRayman/Border-Distance-Mapper",
        "ttps://github.com/GraftingRayman/Border-Distance-Mapper",
    }
    mapper = cat.by_reference("https://github.com/GraftingRayman/Border-Distance-Mapper")
    assert mapper is not None and mapper.stars is not None
    # a reference on 'github.fcom' is kept (its clone URL is fine) and flagged on the pack
    egregora = cat.by_title("Egregora Frames Animation Nodes for ComfyUI")[0]
    assert egregora.files == ("https://github.com/lucasgattas/ComfyUI-Egregora-Frames-Animation-Nodes",)
    assert _codes(cat.issues_for(egregora.id)) == ["suspicious_url"]


def test_real_entries_without_id_get_the_clone_folder_name(cat: Catalog, default_files):
    entries = json.loads(default_files["custom-node-list.json"])["custom_nodes"]
    without_id = [e for e in entries if "id" not in e and e["install_type"] == "git-clone"]
    assert len(without_id) > 4000
    for e in without_id:
        repo_name = e["files"][0].rstrip("/").split("/")[-1]
        pack = cat.by_reference(e["files"][0])
        assert pack.id == repo_name or pack.id.startswith(repo_name + "-"), e
    # different repositories deriving the same id: the first keeps it, the later one is renamed
    first, second = cat.get("ComfyUI-CFG-Ctrl"), cat.get("ComfyUI-CFG-Ctrl-flyghtxmz")
    assert first.reference == "https://github.com/xmarre/ComfyUI-CFG-Ctrl"
    assert second.reference == "https://github.com/flyghtxmz/ComfyUI-CFG-Ctrl"
    assert (
        "id_collision: id 'ComfyUI-CFG-Ctrl' is taken by another repository; kept as "
        "'ComfyUI-CFG-Ctrl-flyghtxmz'" in [i.problem for i in cat.issues]
    )


def test_lookups_by_id_title_and_reference_variants(cat: Catalog):
    pack = cat.get(IMPACT)
    assert pack.title == "ComfyUI Impact Pack" and pack.author == "Dr.Lt.Data"
    assert cat.get("COMFYUI-Impact-Pack") is pack  # case-insensitive fallback
    assert cat.get("no-such-pack") is None
    assert cat.by_title("  comfyui impact pack ") == [pack]
    assert cat.by_title("nothing with this title") == []
    for url in (
        "https://github.com/ltdrdata/ComfyUI-Impact-Pack",
        "https://github.com/ltdrdata/ComfyUI-Impact-Pack.git",
        "https://github.com/ltdrdata/ComfyUI-Impact-Pack/",
        "http://github.com/ltdrdata/ComfyUI-Impact-Pack",
        "https://WWW.GitHub.com/ltdrdata/comfyui-impact-pack.git/",
        "git@github.com:ltdrdata/ComfyUI-Impact-Pack.git",
        "github.com/ltdrdata/ComfyUI-Impact-Pack",
    ):
        assert cat.by_reference(url) is pack, url
    assert cat.by_reference("https://github.com/ltdrdata/ComfyUI-Impact-Pack-Nope") is None
    # copy packs are found by their raw file URL too (the node map uses those)
    gist = (
        "https://gist.githubusercontent.com/alkemann/7361b8eb966f29c8238fd323409efb68/raw/"
        "f9605be0b38d38d3e3a2988f89248ff557010076/alkemann.py"
    )
    assert cat.by_reference(gist).id == "alkemann"


def test_search_all_words_and_ranking(cat: Catalog):
    top = cat.search("impact pack", limit=10)
    assert top[0].id == IMPACT
    assert cat.search("Controlnet AUX", limit=3)[0].id == "comfyui_controlnet_aux"
    results = cat.search("video helper")
    assert results[0].id == "vhs"  # ComfyUI-VideoHelperSuite, by title
    for p in results:
        hay = f"{p.title}\n{p.id}\n{p.author}\n{p.description}".lower()
        assert "video" in hay and "helper" in hay
    # title/id hits come before packs that only mention the words in author/description
    in_name = [all(w in f"{p.title}\n{p.id}".lower() for w in ("video", "helper")) for p in results]
    assert in_name == sorted(in_name, reverse=True)
    assert len(cat.search("upscale", limit=5)) == 5
    assert cat.search("zzqx-no-such-words-anywhere") == []
    assert len(cat.search("", limit=7)) == 7


def test_node_type_lookup_exact_and_pattern(cat: Catalog):
    assert IMPACT in [p.id for p in cat.packs_for_node_type("ImpactWildcardProcessor")]
    assert "ImpactWildcardProcessor" in cat.node_types(IMPACT)
    # rgthree declares nodename_pattern ' \(rgthree\)$': a class the map never listed still resolves
    assert [p.id for p in cat.packs_for_node_type("Some Future Node (rgthree)")] == ["rgthree"]
    assert cat.packs_for_node_type("NoPackProvidesThisClass") == []
    assert cat.node_types("no-such-pack") == ()
    unresolved = [i for i in cat.issues if i.problem.startswith("unresolved_reference")]
    assert len(unresolved) == 12 and all(i.file == "extension-node-map.json" for i in unresolved)


def test_alternatives_and_stats(cat: Catalog):
    alts = cat.alternatives()
    assert len(alts) == 44
    impact = [a for a in alts if a["id"] == "https://github.com/ltdrdata/ComfyUI-Impact-Pack"][0]
    assert impact["pack_id"] == IMPACT and "ddetailer" in impact["tags"]
    alts[0]["tags"].append("mutated")  # callers get copies
    assert "mutated" not in cat.alternatives()[0]["tags"]
    stats = cat.stats_for(IMPACT)
    assert stats.stars > 1000 and stats.last_update and stats.author_account_age_days > 0
    assert cat.get(IMPACT).stars == stats.stars and cat.get(IMPACT).last_update == stats.last_update
    assert cat.stats_for("no-such-pack") is None


# --- merging channels ----------------------------------------------------------------------
def test_merge_default_and_dev_first_channel_wins(cat: Catalog, default_files, dev_files):
    both = Catalog.build([_src("default", default_files), _src("dev", dev_files)])
    assert both.channels == ("default", "dev")
    # same id, different repositories: default keeps the id, dev's pack is kept renamed + reported
    assert both.get("ComfyUI-OpenAINode").reference == "https://github.com/Electrofried/ComfyUI-OpenAINode"
    renamed = both.get("ComfyUI-OpenAINode-AlexXi19")
    assert renamed.channel == "dev" and renamed.reference == "https://github.com/AlexXi19/ComfyUI-OpenAINode"
    assert any(i.channel == "dev" and "'ComfyUI-OpenAINode'" in i.problem for i in both.issues)
    # same repository in both channels: default's entry stands, and nothing is reported for it
    metaman = both.by_reference("https://github.com/MatthewClayHarrison/ComfyUI-MetaMan")
    assert metaman.id == "MetaMan" and metaman.channel == "default"
    assert not any("MetaMan" in i.problem or "MetaMan" in i.entry_title for i in both.issues if i.channel == "dev")
    assert len(both.packs) > len(cat.packs)
    assert all(p.channel == "default" for p in both.packs[: len(cat.packs)])
    # reversed order: dev wins
    rev = Catalog.build([_src("dev", dev_files), _src("default", default_files)])
    assert rev.get("ComfyUI-OpenAINode").reference == "https://github.com/AlexXi19/ComfyUI-OpenAINode"
    assert rev.version != both.version


def test_garbage_node_list_still_loads_models_and_reports_once(default_files):
    files = {
        "custom-node-list.json": b"<html>502 Bad Gateway</html>",
        "model-list.json": default_files["model-list.json"],
    }
    bad = Catalog.build([_src("mirror", files)])
    assert bad.packs == () and len(bad.models) == 562
    assert [(i.channel, i.file, i.index) for i in bad.issues] == [("mirror", "custom-node-list.json", "(file)")]
    assert bad.issues[0].problem.startswith("invalid_json: ")
    shapes = Catalog.build(
        [
            _src(
                "x",
                {"custom-node-list.json": b"[]", "model-list.json": b'{"models": {}}', "github-stats.json": b'"text"'},
            )
        ]
    )
    assert _codes(shapes.issues) == ["wrong_shape", "wrong_shape", "wrong_shape"]
    with pytest.raises(ChannelDataInvalid) as err:
        Catalog.build([_src("mirror", files)], strict=True)
    assert err.value.code == "channel_data_invalid" and "custom-node-list.json" in err.value.message
    assert "channels.list" in err.value.hint


def test_parse_cache_parses_each_content_once(default_files):
    cache = ParseCache()
    first = Catalog.build([_src("default", default_files)], parse_cache=cache)
    assert cache.parses == len(default_files) and cache.hits == 0
    again = Catalog.build([_src("default", default_files)], parse_cache=cache)
    assert cache.parses == len(default_files) and cache.hits == len(default_files)
    assert again.version == first.version and again.packs == first.packs
    # the same bytes served by a second channel are not parsed again either
    Catalog.build([_src("default", default_files), _src("copy", default_files)], parse_cache=cache)
    assert cache.parses == len(default_files)
    changed = dict(default_files, **{"alter-list.json": b'{"items": []}'})
    other = Catalog.build([_src("default", changed)], parse_cache=cache)
    assert cache.parses == len(default_files) + 1 and other.version != first.version
    small = ParseCache(max_entries=2)
    Catalog.build([_src("default", default_files)], parse_cache=small)
    assert len(small) == 2


def test_missing_files_are_not_issues():
    cat = Catalog.build([_src("models-only", {"model-list.json": b'{"models": []}'})])
    assert cat.issues == () and cat.packs == () and cat.models == ()
    assert Catalog.empty().search("x") == [] and Catalog.empty().get("x") is None


# --- tolerance rules on synthetic entries -----------------------------------------------------
def test_tolerant_entry_rules():
    entries = [
        "not an object",
        {
            "title": "Typo",
            "reference": "htps://github.com/a/typo",
            "files": ["htps://github.com/a/typo"],
            "install_type": "git-clone",
            "author": "a",
            "description": "d",
        },
        {
            "title": 42,
            "reference": "https://github.com/b/numbered",
            "files": [],
            "install_type": "git-clone",
            "pip": "numpy",
            "tags": "x, y",
        },
        {
            "title": "Ftp only",
            "reference": "https://example.org/c/ftp",
            "files": ["ftp://example.org/c/x.py"],
            "install_type": "copy",
        },
        {"title": "No type", "reference": "https://github.com/d/notype", "files": ["https://github.com/d/notype"]},
        {
            "title": "Odd type",
            "reference": "https://github.com/e/odd",
            "files": ["https://github.com/e/odd"],
            "install_type": "svn",
            "nodename_pattern": "([",
        },
        {
            "id": "same",
            "title": "One",
            "reference": "https://github.com/f/one",
            "files": ["https://github.com/f/one"],
            "install_type": "git-clone",
        },
        {
            "id": "same",
            "title": "Two",
            "reference": "https://github.com/g/two",
            "files": ["https://github.com/g/two"],
            "install_type": "git-clone",
        },
        {"description": "nothing usable"},
        {"id": "nourl-a", "title": "A"},
        {"id": "nourl-b", "title": "B", "install_type": "copy"},
    ]
    models = [
        {
            "name": "ok",
            "type": "checkpoint",
            "filename": "a.safetensors",
            "url": "https://x.example/a",
            "save_path": "checkpoints",
        },
        {
            "name": "hf",
            "type": "LLM",
            "filename": "<huggingface>",
            "url": "deepseek-ai/Janus-Pro-1B",
            "save_path": "Janus-Pro",
        },
        {"name": "escape", "filename": "b.bin", "url": "https://x.example/b", "save_path": "../../etc"},
        {"name": "no url", "filename": "c.bin"},
        {"name": "size", "filename": "d.bin", "url": "https://x.example/d", "size": 12},
    ]
    cat = Catalog.build(
        [
            _src(
                "t",
                {
                    "custom-node-list.json": _json({"custom_nodes": entries}),
                    "model-list.json": _json({"models": models}),
                },
            )
        ]
    )
    typo = cat.get("typo")
    assert typo.reference == "https://github.com/a/typo" and typo.files == ("https://github.com/a/typo",)
    assert "url_repaired" in _codes(cat.issues_for("typo"))
    numbered = cat.get("numbered")
    assert numbered.title == "42" and numbered.files == ("https://github.com/b/numbered",)
    assert numbered.pip == ("numpy",) and numbered.tags == ("x", "y")
    assert set(_codes(cat.issues_for("numbered"))) == {"wrong_type", "empty_files"}
    ftp = cat.by_title("Ftp only")[0]
    assert ftp.files == () and {"invalid_url", "empty_files"} <= set(_codes(cat.issues_for(ftp.id)))
    assert cat.get("notype").install_type == "git-clone"
    odd = cat.get("odd")
    assert odd.install_type == "svn" and odd.nodename_pattern == ""
    assert set(_codes(cat.issues_for("odd"))) == {"unknown_install_type", "bad_regex"}
    assert cat.get("same").title == "One" and cat.get("same-g").title == "Two"
    for pack_id in ("nourl-a", "nourl-b"):  # no URL at all: kept (not installable), not duplicates
        assert cat.get(pack_id).files == ()
        assert {"missing_field", "empty_files"} <= set(_codes(cat.issues_for(pack_id)))
    codes = _codes(cat.issues, file="custom-node-list.json")
    assert {"not_an_object", "duplicate_id", "unusable_entry"} <= set(codes)
    assert [m.name for m in cat.models] == ["ok", "hf", "size"]
    assert cat.models[1].url == "deepseek-ai/Janus-Pro-1B" and cat.models[2].size == "12"
    assert {"unsafe_path", "missing_field", "wrong_type"} <= set(_codes(cat.issues, file="model-list.json"))


def test_node_map_tolerance_and_bad_regex():
    nodes = {
        "custom_nodes": [
            {
                "title": "P",
                "reference": "https://github.com/o/p",
                "files": ["https://github.com/o/p"],
                "install_type": "git-clone",
            }
        ]
    }
    node_map = {
        "https://github.com/o/p.git": [["NodeA", "NodeA", 7], {"title_aux": "P", "nodename_pattern": "(("}],
        "https://github.com/o/other": [["NodeB"], {}],
        "https://github.com/o/broken": "not a list",
    }
    cat = Catalog.build(
        [_src("t", {"custom-node-list.json": _json(nodes), "extension-node-map.json": _json(node_map)})]
    )
    assert cat.node_types("p") == ("NodeA",)
    assert [p.id for p in cat.packs_for_node_type("NodeA")] == ["p"]
    assert cat.packs_for_node_type("NodeB") == []
    assert sorted(_codes(cat.issues)) == ["bad_regex", "unresolved_reference", "wrong_type", "wrong_type"]


def test_version_is_stable_hash_of_inputs(default_files):
    a = Catalog.build([_src("default", default_files)])
    b = Catalog.build([_src("default", dict(reversed(list(default_files.items()))))])
    assert a.version == b.version and len(a.version) == 20
    renamed = Catalog.build([ChannelFiles(Channel("default", "https://elsewhere.invalid/"), default_files)])
    assert renamed.version != a.version


@pytest.mark.parametrize(
    "raw, key",
    [
        ("https://github.com/Owner/Repo", "https://github.com/owner/repo"),
        ("http://www.github.com/Owner/Repo.git/", "https://github.com/owner/repo"),
        ("git@github.com:Owner/Repo.git", "https://github.com/owner/repo"),
        ("ssh://git@github.com/Owner/Repo", "https://github.com/owner/repo"),
        ("htps://github.com/Owner/Repo", "https://github.com/owner/repo"),
        ("https:/github.com/Owner/Repo", "https://github.com/owner/repo"),
        ("github.com/Owner/Repo", "https://github.com/owner/repo"),
        ("https://Git.Example.org:8443/Team/Pack/", "https://git.example.org:8443/Team/Pack"),
        ("https://civitai.com/models/1?modelVersionId=2", "https://civitai.com/models/1?modelVersionId=2"),
    ],
)
def test_normalize_url(raw, key):
    assert normalize_url(raw) == key


def test_url_info_flags():
    assert url_info("htps://github.com/a/b").problem == "url_repaired"
    assert url_info("https://github.fcom/a/b").problem == "suspicious_url"
    assert not url_info("ftp://example.org/x").usable
    assert not url_info("javascript:alert(1)").usable
    assert url_info("https://raw.githubusercontent.com/a/b/main/x.py").problem == ""
