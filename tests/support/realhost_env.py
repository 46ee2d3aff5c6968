"""Find the real hosts and build (once, cached outside the clone) a Python environment for each.

The real-host tier (tests/realhost/) runs the real ComfyUI 0.8.0 and 0.3.64, the classic
ComfyUI-Manager 3.41 and the packaged manager 4.3. Their sources come from
``../shared/hosts/`` (tarballs), ``$OFFLINE_MANAGER_HOSTS`` (a folder of the same tarballs) or
``$COMFYUI_DIR`` (any ComfyUI checkout). Their environments are several GB, so they live in
``$OFFLINE_MANAGER_CACHE`` (default ``~/.cache/offline-manager``), keyed by what they were built
from, and are reused across runs and clones:

- ``base-<key>``: ``python -m venv`` + ComfyUI 0.8.0's requirements + ``requests`` (imported by
  ComfyUI's frontend manager but missing from its list) + our ``requirements.txt``, installed
  the way the README tells users to;
- ``overlay-<key>``: a small venv that sees the base venv's packages through a ``.pth`` line and
  adds what one host needs (0.3.64's pinned frontend packages; ``comfyui-manager==4.3``).

``python -m support.realhost_env build`` (run by scripts/test.sh, where the package registries
are reachable) builds what is missing; the tests themselves never install from the network.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPLETE = ".complete"
EXTRA_BASE = ("requests",)
# What each host version needs beyond the base environment (0.3.64 pins older frontend files).
OVERLAYS: dict[str, tuple[str, ...]] = {
    "0.3.64": (
        "comfyui-frontend-package==1.27.10",
        "comfyui-workflow-templates==0.1.95",
        "comfyui-embedded-docs==0.2.6",
    ),
    "manager-4.3": ("comfyui-manager==4.3",),
}
HOST_VERSIONS = ("0.8.0", "0.3.64")
TARBALLS = {
    "0.8.0": "ComfyUI-0.8.0.tar.gz",
    "0.3.64": "ComfyUI-0.3.64.tar.gz",
    "classic-3.41": "ComfyUI-Manager-3.41.tar.gz",
}


def cache_root() -> Path:
    return Path(os.environ.get("OFFLINE_MANAGER_CACHE") or Path.home() / ".cache" / "offline-manager") / "hosts"


def hosts_dir() -> Path | None:
    """The folder holding the host tarballs, or None. ``$OFFLINE_MANAGER_HOSTS``, when set, is the
    only place looked at (set it to an empty folder to see how a run without hosts reports)."""
    chosen = os.environ.get("OFFLINE_MANAGER_HOSTS")
    places = (chosen,) if chosen is not None else (str(REPO_ROOT.parent / "shared" / "hosts"), "/work/shared/hosts")
    for cand in places:
        if cand and (Path(cand) / TARBALLS["0.8.0"]).is_file():
            return Path(cand)
    return None


def comfyui_dir_version(path: Path) -> str | None:
    text = (path / "comfyui_version.py").read_text(encoding="utf-8") if (path / "comfyui_version.py").is_file() else ""
    found = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
    return found.group(1) if found else None


@dataclass(frozen=True)
class HostSource:
    """Where one host's source tree comes from: a tarball or a checkout."""

    name: str  # "0.8.0", "0.3.64", "classic-3.41"
    tarball: Path | None = None
    checkout: Path | None = None

    def tree(self) -> Path:
        """An unpacked, read-only template of the tree (unpacked once into the cache)."""
        if self.checkout is not None:
            return self.checkout
        assert self.tarball is not None
        digest = _sha256(self.tarball)[:12]
        dest = cache_root() / "trees" / f"{self.name}-{digest}"
        if not (dest / COMPLETE).exists():
            tmp = dest.with_name(dest.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            with tarfile.open(self.tarball) as tar:
                tar.extractall(tmp, filter="data")
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
            (dest / COMPLETE).write_text("ok\n")
        tops = [p for p in dest.iterdir() if p.is_dir()]
        return tops[0] if len(tops) == 1 else dest

    def requirements(self) -> Path:
        return self.tree() / "requirements.txt"


def sources() -> dict[str, HostSource]:
    """Every host we can find, by name."""
    found: dict[str, HostSource] = {}
    folder = hosts_dir()
    if folder is not None:
        for name, file in TARBALLS.items():
            if (folder / file).is_file():
                found[name] = HostSource(name, tarball=folder / file)
    checkout = os.environ.get("COMFYUI_DIR")
    if checkout and (Path(checkout) / "main.py").is_file():
        version = comfyui_dir_version(Path(checkout)) or "0.8.0"
        found.setdefault(version, HostSource(version, checkout=Path(checkout)))
    return found


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _key(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _py_tag() -> bytes:
    return f"{sys.version_info.major}.{sys.version_info.minor}".encode()


def base_env_dir(base: HostSource) -> Path:
    return cache_root() / f"base-{_key(base.requirements().read_bytes(), ' '.join(EXTRA_BASE).encode(), _py_tag())}"


def overlay_env_dir(base: HostSource, name: str) -> Path:
    return cache_root() / f"overlay-{name}-{_key(base_env_dir(base).name.encode(), ' '.join(OVERLAYS[name]).encode())}"


def python_of(env: Path) -> Path:
    return env / "bin" / "python"


def env_ready(env: Path) -> bool:
    return (env / COMPLETE).exists() and python_of(env).exists()


def _run(argv: list[str]) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True)


def _site_packages(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def build_base(base: HostSource) -> Path:
    env = base_env_dir(base)
    if not env_ready(env):
        shutil.rmtree(env, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(env)])
        _run([str(python_of(env)), "-m", "pip", "install", "-q", "-r", str(base.requirements()), *EXTRA_BASE])
        (env / COMPLETE).write_text("ok\n")
    # our own requirements, as the README tells users (cheap when already satisfied)
    _run([str(python_of(env)), "-m", "pip", "install", "-q", "-r", str(REPO_ROOT / "requirements.txt")])
    return env


def build_overlay(base: HostSource, name: str) -> Path:
    env = overlay_env_dir(base, name)
    if env_ready(env):
        return env
    shutil.rmtree(env, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(env)])
    Path(_site_packages(python_of(env)), "_offline_manager_base.pth").write_text(
        _site_packages(python_of(base_env_dir(base))) + "\n"
    )
    _run([str(python_of(env)), "-m", "pip", "install", "-q", *OVERLAYS[name]])
    (env / COMPLETE).write_text("ok\n")
    return env


def host_python(version: str, *, manager_package: bool = False) -> Path | None:
    """The interpreter to run ``version`` with (None when its environment was not built)."""
    found = sources()
    base = found.get("0.8.0") or next((s for n, s in found.items() if n in HOST_VERSIONS), None)
    if base is None:
        return None
    name = "manager-4.3" if manager_package else (version if version in OVERLAYS else None)
    env = overlay_env_dir(base, name) if name else base_env_dir(base)
    return python_of(env) if env_ready(env) else None


def build_all() -> int:
    found = sources()
    base = found.get("0.8.0") or next((s for n, s in found.items() if n in HOST_VERSIONS), None)
    if base is None:
        print("real-host tier: no host sources (no ../shared/hosts/, no $COMFYUI_DIR); nothing to build")
        return 0
    build_base(base)
    for name in OVERLAYS:
        if name in found or name.startswith("manager-"):
            build_overlay(base, name)
    print(f"real-host environments ready under {cache_root()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m support.realhost_env")
    parser.add_argument("command", choices=["build", "where"])
    args = parser.parse_args(argv)
    if args.command == "where":
        for version in HOST_VERSIONS:
            print(version, host_python(version))
        print("manager-4.3", host_python("0.8.0", manager_package=True))
        return 0
    return build_all()


if __name__ == "__main__":
    sys.exit(main())
