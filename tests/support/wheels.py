"""Small real wheels written by hand (wheel spec: METADATA, WHEEL, RECORD) and a PEP 503 index.

No build backend is needed: a wheel is a zip with the package files and a ``.dist-info``
folder. ``serve_simple_index`` publishes wheels on the loopback ``http_server`` fixture as a
PEP 503 "simple" index that real pip and uv install from.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename


def _dist_name(name: str) -> str:
    """File-name form of a project name (PEP 427: runs of -_. become one underscore)."""
    return re.sub(r"[-_.]+", "_", name)


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    tag: str = "py3-none-any",
    module: str | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write ``<name>-<version>-<tag>.whl`` into ``dest`` and return its path.

    The wheel holds one importable module (``module``, default: the name with ``_``) whose
    ``__version__`` is ``version``, so a test can check which version got installed.
    """
    dest.mkdir(parents=True, exist_ok=True)
    dist = _dist_name(name)
    mod = module or dist.lower()
    info = f"{dist}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: test package {name}"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    files: dict[str, bytes] = {
        f"{mod}/__init__.py": f"__version__ = {version!r}\nNAME = {name!r}\n".encode(),
        f"{info}/METADATA": ("\n".join(metadata) + "\n\n").encode(),
        f"{info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: offline-manager-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
        ).encode(),
    }
    for rel, text in (extra_files or {}).items():
        files[rel] = text.encode()
    record_name = f"{info}/RECORD"
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in files.items()]
    record.append(f"{record_name},,")
    files[record_name] = ("\n".join(record) + "\n").encode()
    target = dest / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return target


@dataclass(frozen=True)
class Pkg:
    """A wheel to build: ``Pkg("alpha", "1.0", ("beta>=1",))``."""

    name: str
    version: str
    requires: tuple[str, ...] = ()


def build_wheels(dest: Path, pkgs: Iterable[Pkg]) -> list[Path]:
    return [build_wheel(dest, p.name, p.version, requires=p.requires) for p in pkgs]


def serve_simple_index(srv, wheels: Iterable[Path], *, prefix: str = "/simple") -> str:
    """Publish ``wheels`` on the loopback server as a PEP 503 index; returns the index URL.

    Project pages link ``<prefix>-files/<file>#sha256=...`` (pip and uv verify the hash).
    """
    by_project: dict[str, list[Path]] = {}
    for whl in wheels:
        name = parse_wheel_filename(whl.name)[0]
        by_project.setdefault(str(name), []).append(whl)
    files_prefix = prefix.rstrip("/") + "-files"
    root_links = []
    for project, paths in sorted(by_project.items()):
        root_links.append(f'<a href="{prefix}/{project}/">{html.escape(project)}</a>')
        links = []
        for whl in sorted(paths):
            data = whl.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            srv.static(f"{files_prefix}/{whl.name}", data, content_type="application/octet-stream")
            links.append(f'<a href="{files_prefix}/{whl.name}#sha256={digest}">{html.escape(whl.name)}</a>')
        page = "<!DOCTYPE html><html><body>\n" + "<br>\n".join(links) + "\n</body></html>\n"
        srv.static(f"{prefix}/{project}/", page, content_type="text/html")
    root = "<!DOCTYPE html><html><body>\n" + "\n".join(root_links) + "\n</body></html>\n"
    srv.static(f"{prefix}/", root, content_type="text/html")
    return srv.url(f"{prefix}/")


def installed_version(python: str | Path, module: str) -> str | None:
    """``module.__version__`` as seen by ``python`` (None when not importable)."""
    out = subprocess.run(
        [str(python), "-c", f"import {module}; print({module}.__version__)"], capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip() if out.returncode == 0 else None


def installed_names(python: str | Path) -> dict[str, str]:
    """Every distribution in ``python``'s environment: canonical name -> version."""
    code = (
        "import json, importlib.metadata as m; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    out = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True)
    import json

    return {str(canonicalize_name(k)): v for k, v in json.loads(out.stdout).items()}


def bundled_pip_wheel() -> Path | None:
    """The pip wheel ``ensurepip`` ships with this interpreter (lets a test venv get pip offline)."""
    try:
        import ensurepip
    except ImportError:
        return None
    bundled = Path(ensurepip.__file__).parent / "_bundled"
    found = sorted(bundled.glob("pip-*.whl"))
    if found:
        return found[-1]
    base = Path(sys.base_prefix) / "lib"
    found = sorted(base.glob("python3*/ensurepip/_bundled/pip-*.whl"))
    return found[-1] if found else None


def find_uv() -> str | None:
    """A working uv binary (next to this interpreter or on PATH), else None."""
    import shutil

    for cand in (Path(sys.executable).parent / "uv", shutil.which("uv")):
        if cand and Path(cand).is_file():
            out = subprocess.run([str(cand), "--version"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0:
                return str(cand)
    return None


def make_venv(path: Path, *, with_pip: bool = False, uv: str | None = None, cache_dir: Path | None = None) -> Path:
    """A real venv at ``path`` (no pip unless ``with_pip``: the bundled pip wheel is installed
    offline with uv, or with ensurepip when uv is missing). Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    if with_pip:
        wheel = bundled_pip_wheel()
        if uv and wheel:
            import os

            env = dict(os.environ, **({"UV_CACHE_DIR": str(cache_dir)} if cache_dir else {}))
            subprocess.run(
                [uv, "pip", "install", "--python", str(python), "--offline", "--no-index", "--no-config", str(wheel)],
                check=True,
                capture_output=True,
                timeout=120,
                env=env,
            )
        else:
            subprocess.run(
                [str(python), "-m", "ensurepip", "--default-pip"], check=True, capture_output=True, timeout=300
            )
    return python


class ConnectTrap:
    """A TCP listener on 127.0.0.1 that counts connections: point HTTP(S)_PROXY at it and any
    request a subprocess (uv, pip) tries to make lands here instead of the network."""

    def __init__(self) -> None:
        import socket
        import threading

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.count = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if not self._stop:
                self.count += 1
            conn.close()

    def close(self) -> None:
        import socket

        self._stop = True
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            pass
        self._sock.close()
        self._thread.join(5)

    def proxy_env(self) -> dict[str, str]:
        """Environment that routes every HTTP(S) request of a child process to the trap."""
        env = {}
        for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env[key] = self.url
            env[key.lower()] = self.url
        env["NO_PROXY"] = env["no_proxy"] = ""
        return env


# --- fixtures shared by the suites that install into real venvs ------------------------------
import pytest  # noqa: E402  (fixtures only; the helpers above stay importable without pytest)


@pytest.fixture(scope="session")
def uv_bin() -> str:
    """The uv next to the test interpreter (the test command installs it); missing, the test FAILS."""
    from .tools import require

    return require("uv")


@pytest.fixture
def own_caches(tmp_path, monkeypatch):
    """Every test builds its own wheels under the same names: never reuse another test's cache."""
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
