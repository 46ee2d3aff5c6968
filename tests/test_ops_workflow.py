"""Missing packs of a workflow (UI and API formats), through a catalog built from channel files,
and then installing the plan's packs from real file:// repositories."""

from __future__ import annotations

import json

import pytest

from manager.catalog import Catalog, ChannelFiles
from manager.errors import WorkflowInvalid
from manager.inventory import scan
from manager.operations.workflow import missing_packs, node_types_of
from manager.records import Channel
from support.gitrepos import make_repo
from support.ops_fixtures import catalog_entry, make_env

UI = {
    "last_node_id": 4,
    "nodes": [
        {"id": 1, "type": "KSampler"},
        {"id": 2, "type": "AlphaNode"},
        {"id": 3, "type": "BetaNode"},
        {"id": 4, "type": "0b6c3c4e-sub"},
        {"id": 5, "type": "NobodyHasThis"},
    ],
    "definitions": {"subgraphs": [{"id": "0b6c3c4e-sub", "nodes": [{"id": 1, "type": "GammaNode"}]}]},
}
API = {"3": {"class_type": "KSampler", "inputs": {}}, "7": {"class_type": "AlphaNode", "inputs": {}}}


@pytest.fixture
def setup(tmp_path):
    alpha = make_repo(tmp_path / "src" / "alpha-pack", name="alpha-pack")
    beta = make_repo(tmp_path / "src" / "beta-pack", name="beta-pack")
    packs = [catalog_entry("alpha-pack", alpha.url), catalog_entry("beta-pack", beta.url)]
    node_map = {alpha.url: ["AlphaNode", "GammaNode"], beta.url: ["BetaNode", "AlphaNode"]}
    env = make_env(tmp_path, packs=packs, node_map=node_map)
    yield env
    env.close()


def test_node_types_of_ui_api_and_bad_input():
    assert node_types_of(UI) == ("KSampler", "AlphaNode", "BetaNode", "NobodyHasThis", "GammaNode")
    assert node_types_of(json.dumps(API)) == ("KSampler", "AlphaNode")
    for bad in ("not json", [1, 2], {"a": 1}):
        with pytest.raises(WorkflowInvalid):
            node_types_of(bad)


def test_plan_then_install_then_nothing_missing(setup):
    env = setup
    catalog = env.manager.catalog_view().catalog
    plan = missing_packs(
        UI, catalog=catalog, inventory=scan(env.manager.layout, catalog=catalog), known_types={"KSampler"}
    )
    steps = {s.pack_id: (s.action, s.node_types) for s in plan.steps}
    assert steps == {"alpha-pack": ("install", ("AlphaNode", "GammaNode")), "beta-pack": ("install", ("BetaNode",))}
    assert plan.unresolved == ("NobodyHasThis",) and plan.provided == ("KSampler",)
    assert next(s for s in plan.steps if s.pack_id == "alpha-pack").alternatives == ()
    for step in plan.steps:
        assert env.run("install", step.pack_id).state.value == "done"
    after = missing_packs(
        UI, catalog=catalog, inventory=scan(env.manager.layout, catalog=catalog), known_types={"KSampler"}
    )
    assert after.steps == () and after.unresolved == ("NobodyHasThis",)
    # a disabled provider becomes an "enable" step
    assert env.run("disable", "beta-pack").state.value == "done"
    again = missing_packs(
        API | {"9": {"class_type": "BetaNode"}},
        catalog=catalog,
        inventory=scan(env.manager.layout, catalog=catalog),
        known_types={"KSampler"},
    )
    assert [(s.pack_id, s.action) for s in again.steps] == [("beta-pack", "enable")]


def test_real_channel_db_maps_a_known_node(channel_db):
    folder = channel_db / "default"
    files = {n: (folder / n).read_bytes() for n in ("custom-node-list.json", "extension-node-map.json")}
    catalog = Catalog.build([ChannelFiles(Channel("default", "file:///x"), files)])
    node_map = json.loads(files["extension-node-map.json"])
    url, (names, _meta) = next((u, v) for u, v in node_map.items() if catalog.by_reference(u) and v[0])
    plan = missing_packs({"1": {"class_type": names[0]}}, catalog=catalog, inventory=scan_empty(), known_types=())
    assert plan.steps and names[0] in plan.steps[0].node_types


def scan_empty():
    from manager.inventory import Inventory

    return Inventory(custom_nodes="", packs=())
