"""Facts about the target python (the one ComfyUI runs), learned by running it once.

One short subprocess reports the marker environment, the site folders and the platform; the
installed versions are then read from the ``*.dist-info`` folder names in those site folders,
in process, each time they are needed (cheap, and always current after an install).

``probe_packages`` lists every distribution with its source (index, url, local, editable) as
the target's ``importlib.metadata`` sees it (undo's before/after records); ``probe_target``
answers both questions with one run of the interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import canonicalize_name

from .errors import DepsInstallerUnavailable

# Runs inside the target python (3.8+, stdlib only: packaging may not be installed there).
_PROBE = r"""
import importlib.util, json, os, platform, sys, sysconfig
def fmt(info):
    v = "{0.major}.{0.minor}.{0.micro}".format(info)
    if info.releaselevel != "final":
        v += info.releaselevel[0] + str(info.serial)
    return v
impl = sys.implementation.name
markers = {
    "implementation_name": impl,
    "implementation_version": fmt(sys.implementation.version),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
site_dirs = []
for p in [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]] + sys.path:
    if p and os.path.isdir(p) and p not in site_dirs and ("site-packages" in p or "dist-packages" in p):
        site_dirs.append(p)
print(json.dumps({
    "markers": markers, "site_dirs": site_dirs, "platform": sysconfig.get_platform(),
    "implementation": impl, "version": list(sys.version_info[:2]), "prefix": sys.prefix,
    "executable": sys.executable, "has_pip": importlib.util.find_spec("pip") is not None,
    "abi_suffix": sysconfig.get_config_var("SOABI") or "",
}))
"""


# Runs inside the target python (stdlib only): every distribution, the first on sys.path wins.
# Name and Version are read from the metadata's header block by hand: importlib.metadata's own
# ``metadata`` runs the email parser over the whole file, ten times slower over a few hundred
# distributions (the same headers, the same first-wins order).
_PACKAGES = r"""
def _head(d):
    text = d.read_text("METADATA") or d.read_text("PKG-INFO") or d.read_text("") or ""
    found = {}
    for line in text.splitlines():
        if not line.strip():
            break
        if line[:1] in (" ", "\t"):
            continue
        key, _, value = line.partition(":")
        found.setdefault(key.strip().lower(), value.strip())
    return found.get("name"), found.get("version")
def packages():
    import importlib.metadata as m, json, re
    out = {}
    for d in m.distributions():
        name, version = _head(d)
        if not name:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in out:
            continue
        source, url = "index", ""
        try:
            du = json.loads(d.read_text("direct_url.json") or "null")
        except Exception:
            du = None
        if isinstance(du, dict) and isinstance(du.get("url"), str) and du["url"]:
            url = du["url"]
            if (du.get("dir_info") or {}).get("editable"):
                source = "editable"
            elif url.lower().startswith("file:"):
                source = "local"
            else:
                source = "url"
        out[key] = {"name": key, "version": version, "source": source, "url": url}
    return [out[k] for k in sorted(out)]
"""
_PACKAGES_ONLY = _PACKAGES + "\nimport json\nprint(json.dumps(packages()))\n"
_BOTH = _PACKAGES + _PROBE.replace('"abi_suffix":', '"packages": packages(),\n    "abi_suffix":')
PackageRecord = dict[str, str]  # name (canonical), version, source, url


@dataclass(frozen=True)
class TargetEnvironment:
    """The target interpreter's markers, site folders and platform."""

    python: str
    markers: Mapping[str, str]
    site_dirs: tuple[str, ...]
    platform: str  # sysconfig.get_platform(): linux-x86_64, win-amd64, macosx-11.0-arm64
    implementation: str  # cpython, pypy
    version: tuple[int, int]
    prefix: str = ""
    has_pip_module: bool = False

    @property
    def python_version(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    def installed(self) -> dict[str, str]:
        """Canonical name -> version of every distribution in the site folders (first one wins)."""
        found: dict[str, str] = {}
        for folder in self.site_dirs:
            try:
                entries = os.listdir(folder)
            except OSError:
                continue
            for entry in entries:
                if entry.endswith(".dist-info"):
                    name, _, version = entry[:-10].rpartition("-")
                elif entry.endswith(".egg-info"):
                    parts = entry[:-9].split("-")
                    name, version = (parts[0], parts[1]) if len(parts) > 1 else ("", "")
                else:
                    continue
                if name and version:
                    found.setdefault(str(canonicalize_name(name)), version)
        return found

    def marker_ok(self, req: Requirement, extras: frozenset[str] | set[str] = frozenset()) -> bool:
        """Does ``req`` apply to this interpreter (for the requesting package's ``extras``)?"""
        if req.marker is None:
            return True
        for extra in extras or {""}:
            if req.marker.evaluate(dict(self.markers, extra=extra)):
                return True
        return False

    def tag_supported(self, tag: Tag) -> bool:
        """An approximation of the interpreter's wheel tags, enough to judge a wheelhouse.

        The installer has the final word; this only keeps the offline pre-check from counting
        a wheel for another OS or python as present.
        """
        major, minor = self.version
        interp = tag.interpreter
        cp = self.implementation == "cpython"
        ok_interp = (
            interp in (f"py{major}", f"py{major}{minor}")
            or (cp and interp == f"cp{major}{minor}")
            or (
                cp
                and tag.abi == "abi3"
                and interp.startswith(f"cp{major}")
                and interp[2:].isdigit()
                and int(interp[3:] or 0) <= minor
            )
        )
        if not ok_interp:
            return False
        if tag.abi not in ("none", "abi3") and not tag.abi.startswith(f"cp{major}{minor}"):
            return False
        return _platform_ok(tag.platform, self.platform)


def _platform_ok(tag_platform: str, target: str) -> bool:
    if tag_platform == "any":
        return True
    target = target.lower()
    arch = target.rsplit("-", 1)[-1].replace("amd64", "x86_64") if "-" in target else target
    if target.startswith("linux"):
        return tag_platform.startswith(("manylinux", "musllinux", "linux")) and tag_platform.endswith("_" + arch)
    if target.startswith("macosx"):
        return tag_platform.startswith("macosx") and (tag_platform.endswith(("_" + arch, "_universal2", "_universal")))
    if target.startswith("win"):
        return tag_platform == target.replace("-", "_")
    return tag_platform == target.replace("-", "_").replace(".", "_")


def _run_probe(python: str, script: str, timeout: float) -> str:
    """Run ``script`` in ``python -I``; its stdout, or ``DepsInstallerUnavailable``."""
    hint = (
        "Set python_executable in config.ini to the interpreter ComfyUI runs with "
        "(empty = the interpreter running the Manager)."
    )
    try:
        out = subprocess.run(
            [python, "-I", "-c", script], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise DepsInstallerUnavailable(
            f"cannot run the python for dependency installs ({python}): {exc}", hint=hint, details={"python": python}
        ) from None
    if out.returncode != 0:
        raise DepsInstallerUnavailable(
            f"{python} failed to report its environment (exit {out.returncode}): "
            f"{(out.stderr.strip().splitlines() or [''])[-1]}",
            hint=hint,
            details={"python": python},
        )
    return out.stdout


def _environment(python: str, data: Mapping[str, Any]) -> TargetEnvironment:
    return TargetEnvironment(
        python=python,
        markers=data["markers"],
        site_dirs=tuple(data["site_dirs"]),
        platform=data["platform"],
        implementation=data["implementation"],
        version=(int(data["version"][0]), int(data["version"][1])),
        prefix=data.get("prefix", ""),
        has_pip_module=bool(data.get("has_pip")),
    )


def probe_environment(python: str, *, timeout: float = 60.0) -> TargetEnvironment:
    """Run ``python`` once to learn its environment; ``DepsInstallerUnavailable`` if it does not run."""
    return _environment(python, json.loads(_run_probe(python, _PROBE, timeout)))


def probe_packages(python: str, *, timeout: float = 120.0) -> list[PackageRecord]:
    """Every distribution of ``python``'s environment (one run): name (canonical), version, source, url."""
    return [dict(p) for p in json.loads(_run_probe(python, _PACKAGES_ONLY, timeout))]


def probe_target(python: str, *, timeout: float = 120.0) -> tuple[TargetEnvironment, list[PackageRecord]]:
    """``probe_environment`` and ``probe_packages`` answered by one run of ``python``."""
    data = json.loads(_run_probe(python, _BOTH, timeout))
    return _environment(python, data), [dict(p) for p in data["packages"]]
