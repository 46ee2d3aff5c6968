"""The task-kind table (manager/kinds): each kind declared once, with a door, a doc line and a policy cell.

A kind added to the table without a CLI command, an OpenAPI description, documented parameters or
a row in GET /v1/policy fails here; so does a door that queues a kind the table does not know.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from manager import security as sec
from manager.api.handlers_admin import policy_rows
from manager.api.openapi import render
from manager.api.routes import PREFIX
from manager.cli.main import build_parser
from manager.cli.ops_commands import COMMANDS
from manager.errors import RequestInvalid
from manager.kinds import BY_NAME, KINDS, QUEUE_KINDS
from manager.kinds.params import KindParams
from support.api_tree import demo_root, make_api


def test_each_kind_is_declared_once_with_a_known_operation():
    names = [k.name for k in KINDS]
    assert len(names) == len(set(names)), names
    for kind in KINDS:
        assert kind.operation in sec.OPERATIONS, kind.name
        assert kind.summary and kind.summary[0].isupper() and kind.target, kind.name
        assert issubclass(kind.params, KindParams), kind.name
        assert not kind.runs_as or kind.runs_as in BY_NAME, kind.name


def test_each_kind_has_a_runner_on_a_fresh_manager(tmp_path: Path):
    root = demo_root(tmp_path)
    api = make_api(root)
    assert set(api.manager.queue.kinds) == set(QUEUE_KINDS)


def test_each_kind_has_a_door_on_the_command_line():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # the registered COMMANDs
    for kind in KINDS:
        if kind.runs_as:  # an alias of another kind's runner (a classic flag route)
            assert kind.cli == "", kind.name
            continue
        command, *rest = kind.cli.split()
        assert command in choices and command in COMMANDS, f"{kind.name}: no cm-cli.py {command}"
        args = parser.parse_args([command, *rest, *(["x"] if command != "trash" else [])])
        assert COMMANDS[args.command], kind.name
        help_text = choices[command].format_help()
        for field_name in kind.params.CLI_FIELDS:
            text = next(f.metadata["help"] for f in kind.params.fields() if f.name == field_name)
            assert " ".join(text.split())[:30] in " ".join(help_text.split()), (kind.name, field_name)


def test_each_kind_and_parameter_has_a_doc_line_in_openapi():
    doc = json.loads(render())
    task = doc["paths"][PREFIX + "/queue"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    single = task["oneOf"][0]
    assert single["properties"]["kind"]["enum"] == [k.name for k in KINDS]
    described = single["properties"]["kind"]["description"]
    schemas = {s["title"]: s for s in single["properties"]["params"]["oneOf"]}
    for kind in KINDS:
        assert f"{kind.name}: {kind.summary}" in described, kind.name
        for f in kind.params.fields():
            assert f.metadata.get("help"), f"{kind.name}.{f.name} has no help text"
            assert schemas[kind.name]["properties"][f.name]["description"] == f.metadata["help"]


def test_each_kind_has_a_policy_cell(tmp_path: Path):
    rows = {name: (op, risk) for name, op, risk in policy_rows()}
    settings = sec.SecuritySettings.from_config(make_api(demo_root(tmp_path)).manager.config, "127.0.0.1")
    for kind in KINDS:
        assert kind.policy_rows, f"{kind.name} has no row in GET /v1/policy"
        for row, risk in kind.policy_rows:
            assert rows[row] == (kind.operation, risk), row
            decision = sec.decide(settings, kind.operation, risk)
            assert "unknown operation" not in decision.reason, kind.name


async def test_policy_route_answers_every_kind(aiohttp_client, api_app):
    app, _api, _root = api_app()
    client = await aiohttp_client(app)
    body = await (await client.get(PREFIX + "/policy")).json()
    for kind in KINDS:
        for row, _risk in kind.policy_rows:
            assert body["data"]["operations"][row]["operation"] == kind.operation, row


def test_parameters_are_validated_once_with_the_field_named():
    with pytest.raises(RequestInvalid) as err:
        BY_NAME["install"].params.from_mapping({"versoin": "1.0"})
    assert "versoin" in err.value.message and "version" in (err.value.hint or "")
    with pytest.raises(RequestInvalid) as err:
        BY_NAME["update_all"].params.from_mapping({"skip_deps": "yes"})
    assert "skip_deps" in err.value.message
    with pytest.raises(RequestInvalid):
        BY_NAME["snapshot_restore"].params.from_mapping({"only": "everything"})
    typed = BY_NAME["empty_trash"].params.from_mapping({"older_than_days": "3", "entries": ["a", "b"]})
    assert typed.to_dict() == {"older_than_days": 3.0, "entries": ["a", "b"]}


async def test_v1_queue_refuses_an_unknown_parameter_and_queues_nothing(aiohttp_client, api_app):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    resp = await client.post(
        PREFIX + "/queue",
        json={
            "tasks": [
                {"kind": "disable", "target": "demo-image-tools"},
                {"kind": "enable", "target": "demo-image-tools", "params": {"verison": "1"}},
            ]
        },
    )
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "request_invalid", body
    assert "verison" in body["error"]["message"]
    assert api.manager.queue.status()["total_count"] == 0


def test_architecture_doc_shows_the_table_as_declared():
    from manager.kinds.__main__ import markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert markdown() in doc, "docs/architecture.md's task table is stale: paste `python -m manager.kinds`"
