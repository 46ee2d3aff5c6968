"""The error-code registry matches the source in both directions, and the docs list every code."""

from __future__ import annotations

import re
from pathlib import Path

import manager.errors as errors_mod
from manager.errors import ManagerError, error_codes

REPO = Path(__file__).resolve().parents[1]


def _load_all_modules() -> None:
    import importlib
    import pkgutil

    import manager

    for info in pkgutil.walk_packages(manager.__path__, "manager."):
        importlib.import_module(info.name)


def test_every_code_in_source_is_registered_and_unique():
    _load_all_modules()
    declared: list[str] = []
    for py in (REPO / "manager").rglob("*.py"):
        # a class body's `code = "..."` line right under its `class X(...):` header and docstring
        declared += re.findall(
            r'^class \w+\([^)]*\):\n(?:    """[^"]*"""\n\n)?    code(?::[^=]*)?\s*=\s*"([a-z0-9_]+)"',
            py.read_text(encoding="utf-8"),
            re.M,
        )
    table = error_codes()
    assert sorted(set(declared)) == sorted(table)
    assert len(declared) == len(set(declared)), "one class per code"


def test_codes_are_snake_case_and_have_http_status():
    for code, cls in error_codes().items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code)
        assert 400 <= cls.http_status <= 599


def test_docs_list_every_code_and_nothing_else():
    _load_all_modules()
    doc = (REPO / "docs" / "errors.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", doc, re.M))
    assert documented == set(error_codes())


def test_error_shape():
    err = errors_mod.OfflineModeEnabled("no network", details={"url": "https://x"})
    assert isinstance(err, ConnectionError) and isinstance(err, ManagerError)
    d = err.to_dict()
    assert d["code"] == "offline_mode" and d["hint"] and d["details"] == {"url": "https://x"}
    assert "[offline_mode]" in str(err)
