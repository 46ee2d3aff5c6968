"""export-deps and download-deps: carry every pack's dependencies to an air-gapped machine.

``export_requirements`` writes one ``requirements-offline.txt`` for a set of packs (overrides,
blacklists and downgrade protection applied, conflicts resolved, a comment per line naming
the packs). ``download_deps`` fills a wheelhouse from such a file with ``pip download`` through
the allowed index (never in offline mode), so a fresh venv can install it with
``--no-index --find-links <wheelhouse>``.
"""

from __future__ import annotations

import datetime as _dt
import email.parser
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import NotFound
from ..fsops import atomic_write_text
from ..network import NetworkGate
from .backends.base import DEFAULT_RUN_OPTIONS, InstallArgs, InstallerChoice, ProgressFn, RunOptions, run_streaming
from .backends.detect import probe_tool
from .backends.pip import PipBackend
from .errors import DepsInstallerUnavailable, DepsInstallFailed
from .installer import DependencyInstaller, PackLike, shown_command
from .plan import Conflict, Planned, Skipped
from .policy import DepsPolicy
from .requirements import name_from_filename, parse_requirements_file

OFFLINE_REQUIREMENTS = "requirements-offline.txt"


@dataclass(frozen=True)
class ExportResult:
    path: Path | None  # None: not written (the caller prints ``text``)
    requirements: tuple[str, ...]
    packs: tuple[str, ...]
    skipped: tuple[Skipped, ...]
    conflicts: tuple[Conflict, ...]
    problems: tuple[str, ...]  # packs whose requirements could not be read (left out)
    text: str = ""  # the file's whole content


@dataclass(frozen=True)
class DownloadResult:
    wheelhouse: Path
    added: tuple[str, ...]  # file names new in the wheelhouse
    commands: tuple[str, ...]
    seconds: float


def _line_for(item: Planned, installed: dict[str, str], pin_installed: bool) -> str:
    text = item.text
    if item.kind == "path":  # a local wheel: name==version, the file is copied
        name, version = name_from_filename(Path(item.text).name)
        text = f"{name}=={version}" if name and version else item.text
    elif pin_installed and item.kind == "name" and item.requirement is not None and item.name in installed:
        have = installed[item.name]
        if item.requirement.specifier.contains(have, prereleases=True):
            req = item.requirement
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            text = f"{req.name}{extras}=={have}" + (f"; {req.marker}" if req.marker else "")
    comment = ", ".join(item.packs)
    if item.kind == "path":
        comment += f" (local wheel {item.text})"
    if item.index_url:
        comment += f" (index {item.index_url})"
    return f"{text}  # {comment}"


def _dist_requires(site_dirs: Sequence[str]) -> dict[str, list[Requirement]]:
    """Canonical name -> the ``Requires-Dist`` of each installed distribution (first one wins)."""
    found: dict[str, list[Requirement]] = {}
    for folder in site_dirs:
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            continue
        for entry in entries:
            if not entry.endswith(".dist-info"):
                continue
            name = str(canonicalize_name(entry[:-10].rpartition("-")[0]))
            if not name or name in found:
                continue
            try:
                meta = email.parser.Parser().parsestr(
                    (Path(folder) / entry / "METADATA").read_text(encoding="utf-8", errors="replace"), headersonly=True
                )
            except OSError:
                continue
            reqs = []
            for text in meta.get_all("Requires-Dist") or []:
                try:
                    reqs.append(Requirement(text))
                except InvalidRequirement:
                    continue
            found[name] = reqs
    return found


def _installed_closure(
    installer: DependencyInstaller, roots: Sequence[Planned], installed: dict[str, str]
) -> list[tuple[str, str, str]]:
    """(name, version, needed by) of every installed distribution the ``roots`` pull in, directly
    or not, that is not a root itself: what ``pin_installed`` pins too, so the wheelhouse holds the
    versions a snapshot of this environment records (not the index's newest)."""
    env = installer.environment
    requires = _dist_requires(env.site_dirs)
    names = {item.name for item in roots if item.name}
    queue = [(str(item.name), set(item.requirement.extras) if item.requirement else set()) for item in roots]
    queue = [(n, e) for n, e in queue if n in installed]
    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    while queue:
        name, extras = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        for req in requires.get(name, []):
            dep = str(canonicalize_name(req.name))
            if dep in seen or dep not in installed or not env.marker_ok(req, extras):
                continue
            if dep not in names:
                names.add(dep)
                out.append((dep, installed[dep], name))
            queue.append((dep, set(req.extras)))
    return out


def export_requirements(
    installer: DependencyInstaller, packs: Sequence[PackLike], out: Path | None, *, pin_installed: bool = False
) -> ExportResult:
    """Write ``out`` (atomically) with the merged requirements of ``packs``; with ``out=None``
    nothing is written and the content is in ``ExportResult.text`` (``export-deps > file``).

    Markers are kept (the target machine evaluates them); a pack whose requirements.txt is
    refused is left out and listed as a comment and in ``problems``. ``pin_installed`` pins
    each requirement to the version installed here when it satisfies the pack's specifier, and
    adds ``name==version`` for every installed package those requirements pull in (read from the
    installed ``Requires-Dist``), so a wheelhouse filled from the file holds the versions a
    snapshot of this environment records.
    """
    plan = installer.plan_for(packs, evaluate_markers=False)
    installed = dict(plan.installed)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"# {OFFLINE_REQUIREMENTS}: dependencies of {len(plan.packs)} pack(s), written {stamp}",
        "# Overrides, the blacklist and downgrade protection are applied; each line names its packs.",
        "# Fill a wheelhouse from it: python cm-cli.py download-deps <this file> --dest <wheelhouse> --index-layout",
    ]
    requirements = [_line_for(item, installed, pin_installed) for item in plan.merged]
    if pin_installed:  # what those requirements pulled in, at the versions installed here
        skip = installer.policy.blacklist
        requirements += [
            f"{name}=={version}  # installed here, needed by {parent}"
            for name, version, parent in _installed_closure(installer, plan.merged, installed)
            if name not in skip
        ]
    problems = [f"{p.pack}: {p.error.message}" for p in plan.packs if p.error is not None]
    tail = [f"# skipped {s.requirement} ({s.pack}): {s.message}" for s in plan.skipped]
    tail += [f"# conflict {c.message}" for c in plan.conflicts]
    tail += [f"# left out {p}" for p in problems]
    text = "\n".join(lines + requirements + tail) + "\n"
    if out is not None:
        atomic_write_text(out, text)
    return ExportResult(
        out,
        tuple(r.split("  #", 1)[0] for r in requirements),
        tuple(p.pack for p in plan.packs),
        plan.skipped,
        plan.conflicts,
        tuple(problems),
        text,
    )


def _pip_choice(python: str) -> InstallerChoice:
    """pip to download with: the ComfyUI python's, else the Manager's own interpreter's."""
    tried = []
    for candidate in dict.fromkeys([python, sys.executable]):
        version, why = probe_tool((candidate, "-m", "pip"))
        if version:
            return InstallerChoice(
                "pip", "pip download (uv has no download command)", (candidate, "-m", "pip"), candidate, version
            )
        tried.append(why)
    raise DepsInstallerUnavailable(
        "download-deps needs pip, and neither the ComfyUI python nor the Manager's python has it",
        hint=f"Install pip (`{python} -m ensurepip`) on the machine that downloads.",
        details={"tried": tried},
    )


def download_deps(
    requirements_file: Path,
    wheelhouse: Path,
    *,
    policy: DepsPolicy,
    gate: NetworkGate,
    progress: ProgressFn | None = None,
    python_version: str | None = None,
    platforms: Sequence[str] = (),
    run_options: RunOptions = DEFAULT_RUN_OPTIONS,
) -> DownloadResult:
    """Fill ``wheelhouse`` with wheels for ``requirements_file`` and their dependencies.

    The file is read with the same rules as a pack's (only allowed sources), overrides and
    the blacklist are applied again, ``local_path`` override wheels are copied in, and
    ``index_url`` overrides are downloaded from their own index. Offline mode refuses before
    anything runs (``offline_mode``); private mode uses only the configured index.
    """
    started = time.monotonic()
    main_index = gate.decide(policy.effective_index, "pip")
    parsed = parse_requirements_file(
        requirements_file,
        pack=requirements_file.name,
        pack_dir=requirements_file.parent,
        rules=policy.source_rules(),
        rewrite=policy.overrides.rewrite_text,
    )
    wheelhouse.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(wheelhouse))
    groups: dict[tuple[str, str | None], list[str]] = {}
    local_wheels = policy.overrides.local_wheels()
    for line in parsed.requirements:
        outcome = policy.overrides.apply(line)
        new = outcome.line
        if {n for n in (line.name, new.name) if n} & policy.blacklist:
            continue
        if new.kind != "path" and new.name in local_wheels:  # exported as name==version of a local wheel
            new = replace(new, kind="path", text=str(local_wheels[new.name]))
        if new.kind == "path":
            shutil.copy2(new.text, wheelhouse / Path(new.text).name)
            continue
        key = (gate.decide(outcome.index_url, "pip"), outcome.trusted_host) if outcome.index_url else (main_index, None)
        groups.setdefault(key, []).append(new.text)
    extra = tuple(gate.decide(s.value, "pip") for s in parsed.sources if s.option in ("index-url", "extra-index-url"))
    hosts = tuple(s.value for s in parsed.sources if s.option == "trusted-host")
    backend = PipBackend(_pip_choice(policy.python), run_options)
    commands: list[str] = []
    for (index, host), texts in groups.items():
        args = InstallArgs(
            tuple(texts),
            index_url=index,
            find_links=(str(wheelhouse),),
            extra_index_urls=extra if index == main_index else (),
            trusted_hosts=((host,) if host else ()) + (hosts if index == main_index else ()),
        )
        cmd = backend.download_command(args, wheelhouse, python_version=python_version, platforms=platforms)
        commands.append(shown_command(cmd))
        result = run_streaming(cmd, progress, options=run_options)
        if not result.ok:
            raise DepsInstallFailed(
                f"pip download failed for {requirements_file.name} (exit {result.returncode})"
                + (f": {result.output_tail[-1]}" if result.output_tail else ""),
                hint="Read the pip output; check pip_index_url / allowed_pip_sources and that every "
                "requirement exists on the index.",
                details={"command": commands[-1], "output_tail": list(result.output_tail)},
            )
    added = tuple(sorted(set(os.listdir(wheelhouse)) - before))
    return DownloadResult(wheelhouse, added, tuple(commands), time.monotonic() - started)


def _looks_like_file(text: str) -> bool:
    return "/" in text or os.sep in text or text.lower().endswith((".txt", ".in", ".pip"))


def download_sources(
    sources: Sequence[str],
    wheelhouse: Path,
    *,
    policy: DepsPolicy,
    gate: NetworkGate,
    progress: ProgressFn | None = None,
    python_version: str | None = None,
    platforms: Sequence[str] = (),
) -> DownloadResult:
    """``download-deps`` arguments: each a requirements file, or a requirement spec ('beta>=5').

    Specs are written to one scratch requirements file and read with the same rules as a file.
    """
    files: list[Path] = []
    specs: list[str] = []
    for text in sources:
        path = Path(text).expanduser()
        if path.is_file():
            files.append(path)
        elif _looks_like_file(text) or path.exists():
            raise NotFound(
                f"download-deps: no requirements file {text!r}",
                hint="Write it first (`cm-cli.py export-deps -o requirements-offline.txt`), or give requirement "
                "specs instead (`cm-cli.py download-deps --dest <wheelhouse> 'beta>=5'`).",
                details={"path": text},
            )
        else:
            specs.append(text)
    started = time.monotonic()
    added: list[str] = []
    commands: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cm-download-deps-") as scratch:
        if specs:
            spec_file = Path(scratch) / "command-line-requirements.txt"
            spec_file.write_text("\n".join(specs) + "\n", encoding="utf-8")
            files.append(spec_file)
        for file in files:
            one = download_deps(
                file,
                wheelhouse,
                policy=policy,
                gate=gate,
                progress=progress,
                python_version=python_version,
                platforms=platforms,
            )
            added += [a for a in one.added if a not in added]
            commands += one.commands
    return DownloadResult(wheelhouse, tuple(sorted(added)), tuple(commands), time.monotonic() - started)
