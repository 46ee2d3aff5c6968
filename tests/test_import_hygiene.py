"""The core stays host-independent, import-time stays free of I/O, and stdlib glob stays glob."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMFY_MODULES = {
    "server",
    "folder_paths",
    "nodes",
    "comfy",
    "comfy_extras",
    "comfy_api",
    "execution",
    "comfyui_version",
    "latent_preview",
    "node_helpers",
    "comfy_execution",
    "app",
    "main",
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_manager_package_imports_nothing_of_comfyui():
    offenders = {}
    for py in (REPO / "manager").rglob("*.py"):
        bad = _imported_roots(py) & COMFY_MODULES
        if bad:
            offenders[str(py.relative_to(REPO))] = sorted(bad)
    assert offenders == {}


def test_importing_every_manager_module_loads_no_comfyui_and_opens_no_file_for_writing(tmp_path):
    # A fresh interpreter imports every module; an audit hook records writes and sockets.
    code = f"""
import sys, pkgutil, importlib
events = []
def hook(ev, args):
    if ev == "open" and len(args) > 1 and isinstance(args[1], str) and any(c in args[1] for c in "wax+"):
        events.append(("open-write", args[0]))
    elif ev in ("socket.connect", "socket.getaddrinfo", "subprocess.Popen", "os.mkdir"):
        events.append((ev, str(args[:1])))
sys.addaudithook(hook)
sys.path.append({str(REPO)!r})
import manager
names = [m.name for m in pkgutil.walk_packages(manager.__path__, "manager.")]
for n in names:
    importlib.import_module(n)
comfy = sorted(set(sys.modules) & set({sorted(COMFY_MODULES)!r}))
print(len(names), comfy, events)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    count, comfy, events = out.stdout.strip().split(" ", 2)
    assert int(count) >= 10
    assert comfy == "[]"
    assert events == "[]"


def test_glob_stays_stdlib_with_repo_root_first_on_sys_path():
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import glob; "
        "assert callable(glob.glob), glob; import os; "
        "assert os.path.dirname(glob.__file__) != sys.path[0], glob.__file__; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_glob_folder_is_not_a_regular_package():
    # A regular package (with __init__.py) first on sys.path would shadow the standard library.
    assert not (REPO / "glob" / "__init__.py").exists()


def test_cli_run_keeps_stdlib_glob(tmp_path):
    code = (
        f"import runpy, sys; sys.argv = ['cm-cli.py', '--comfyui', {str(tmp_path)!r}, 'channels', '--help'];\n"
        "try:\n"
        f"    runpy.run_path({str(REPO / 'cm-cli.py')!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "import glob; assert callable(glob.glob); import os\n"
        f"assert not glob.__file__.startswith({str(REPO)!r}), glob.__file__\n"
        "print('stdlib-glob')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("stdlib-glob")
