"""``DependencyInstaller``: plan, check the sources, then run uv or pip with the ComfyUI python.

Every package source handed to the installer is decided by the network gate first:

- offline: ``--no-index --find-links <wheelhouse>...`` (uv also ``--offline``), or a
  ``file://`` ``pip_index_url``; the wheelhouse is checked before anything runs and a gap
  fails at once (``deps_missing_wheels``) with the command that fetches the missing files;
- private: ``--index-url <pip_index_url>`` (never PyPI) plus allowed sources only;
- public: ``pip_index_url`` or PyPI, through the gate (so the mirror map applies).
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from ..errors import ManagerError, NetworkBlocked
from ..network import NetworkGate, NetworkMode, redact_url
from .backends.base import InstallArgs, InstallerChoice, ProgressFn, RunOptions, run_streaming
from .backends.detect import backend_for, detect_installer
from .environment import PackageRecord, TargetEnvironment, probe_environment, probe_packages, probe_target
from .errors import DepsInstallFailed, DepsMissingWheels
from .overrides import AppliedOverride
from .plan import Conflict, DepsPlan, PackSource, Planned, Planner, Skipped
from .policy import DepsPolicy
from .requirements import ParsedRequirements, parse_requirements_file
from .wheelhouse import MissingRequirement, Wheelhouse, local_dir

log = logging.getLogger("offline_manager.deps")
PackLike = PackSource | tuple[str, Path]


@dataclass(frozen=True)
class DepsResult:
    """What an install did: the backend and why, the commands, what was skipped and why."""

    packs: tuple[str, ...]
    installer: InstallerChoice | None  # None when nothing had to run
    requirements: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()  # shell-quoted, credentials redacted
    skipped: tuple[Skipped, ...] = ()
    overrides: tuple[AppliedOverride, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    notes: tuple[str, ...] = ()
    ran: bool = False
    seconds: float = 0.0

    def warnings(self) -> list[str]:
        return [f"{s.pack}: skipped {s.requirement}: {s.message}" for s in self.skipped if s.reason != "marker"] + [
            f"conflict {c.message}" for c in self.conflicts
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "packs": list(self.packs),
            "ran": self.ran,
            "seconds": round(self.seconds, 3),
            "installer": (
                {"name": self.installer.name, "reason": self.installer.reason, "version": self.installer.version}
                if self.installer
                else None
            ),
            "requirements": list(self.requirements),
            "commands": list(self.commands),
            "skipped": [
                {
                    "pack": s.pack,
                    "requirement": s.requirement,
                    "reason": s.reason,
                    "message": s.message,
                    "installed": s.installed,
                }
                for s in self.skipped
            ],
            "overrides": [{"pack": o.pack, "from": o.original, "to": o.result} for o in self.overrides],
            "conflicts": [c.message for c in self.conflicts],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class DryRun:
    """A resolve that changed nothing: the package versions it would leave (``after``: name ->
    version of every package installed or replaced), the names it would remove, or blockers."""

    after: Mapping[str, str] = field(default_factory=dict)
    removed: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    blockers: tuple[Mapping[str, Any], ...] = ()
    notes: tuple[str, ...] = ()
    resolver: str = ""


def shown_command(cmd: Sequence[str]) -> str:
    return " ".join(shlex.quote(redact_url(c) if "://" in c else c) for c in cmd)


def _as_source(pack: PackLike) -> PackSource:
    return pack if isinstance(pack, PackSource) else PackSource(pack[0], Path(pack[1]))


@dataclass
class DependencyInstaller:
    """Installs packs' Python dependencies under a ``DepsPolicy`` and the network gate.

    ``choice`` and ``environment`` are detected on first use (each runs a short subprocess)
    and kept on the object: build one per Manager (or per operation) and reuse it.
    """

    policy: DepsPolicy
    gate: NetworkGate
    choice_override: InstallerChoice | None = None
    run_options: RunOptions = field(default_factory=RunOptions)
    uv_search: Sequence[Sequence[str]] | None = None
    _choice: InstallerChoice | None = field(default=None, init=False, repr=False)
    _env: TargetEnvironment | None = field(default=None, init=False, repr=False)
    _folder_cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _requires_cache: dict[tuple[str, int, int], Any] = field(default_factory=dict, init=False, repr=False)

    # -- lazily detected facts -----------------------------------------------------------
    @property
    def choice(self) -> InstallerChoice:
        """The backend in use and why (detected by running uv / pip once)."""
        if self._choice is None:
            self._choice = self.choice_override or detect_installer(
                self.policy.python, self.policy.use_uv, uv_search=self.uv_search
            )
        return self._choice

    @property
    def environment(self) -> TargetEnvironment:
        if self._env is None:
            self._env = probe_environment(self.policy.python)
        return self._env

    def package_set(self) -> list[PackageRecord]:
        """Every distribution of the target python now (name, version, source, url), by running it.
        An installer that has not learnt its environment yet learns it in the same run."""
        if self._env is None:
            self._env, packages = probe_target(self.policy.python)
            return packages
        return probe_packages(self.policy.python)

    def wheelhouse(self) -> Wheelhouse:
        """The wheelhouse folders as they are now (plus a file:// pip_index_url as an index root)."""
        roots = [local_dir(self.policy.index_url)] if self._local_index() else []
        return Wheelhouse(
            list(self.policy.wheelhouse_dirs),
            roots,
            folder_cache=self._folder_cache,
            requires_cache=self._requires_cache,
        )

    def _local_index(self) -> bool:
        return bool(self.policy.index_url) and self.gate.is_local(self.policy.index_url)

    # -- planning ------------------------------------------------------------------------
    def plan_for(self, packs: Sequence[PackLike], *, evaluate_markers: bool = True) -> DepsPlan:
        """The plan for ``packs`` in install order (later packs win conflicts); runs nothing."""
        installed = self.environment.installed()
        return self._planner(evaluate_markers=evaluate_markers).plan([_as_source(p) for p in packs], installed)

    # -- installing ----------------------------------------------------------------------
    def install_pack_requirements(
        self,
        pack_dir: Path,
        pack_name: str,
        progress: ProgressFn | None = None,
        *,
        other_packs: Sequence[PackLike] = (),
    ) -> DepsResult:
        """Install one pack's requirements.txt (nothing to do without one).

        ``other_packs`` (the installed packs) are planned too, only to report conflicts with
        them; their requirements are not installed. Raises a coded ``ManagerError`` for a bad
        line, a refused source, missing offline wheels or a failed install.
        """
        plan = self.plan_for([*other_packs, PackSource(pack_name, Path(pack_dir))])
        mine = plan.packs[-1]
        if mine.error is not None:
            raise mine.error
        merged, _, skips = self._planner().merge([mine], plan.installed)
        conflicts = tuple(c for c in plan.conflicts if any(p == pack_name for p, _ in c.wanted))
        return self.install_plan(DepsPlan((mine,), merged, conflicts, skips, plan.installed), progress)

    def install_requirements_file(
        self, path: Path, progress: ProgressFn | None = None, *, label: str | None = None
    ) -> DepsResult:
        """Install a standalone requirements file (e.g. requirements-offline.txt) under the policy:
        the same parsing, overrides, blacklists and source rules as a pack's file."""
        parsed = parse_requirements_file(
            path,
            pack=label or path.name,
            pack_dir=path.parent,
            rules=self.policy.source_rules(),
            rewrite=self._rewrite(),
        )
        return self._install_parsed(parsed, path.parent, path, progress)

    def _rewrite(self) -> Any:
        return self.policy.overrides.rewrite_text if len(self.policy.overrides) else None

    def _install_parsed(
        self, parsed: ParsedRequirements, base: Path, source: Path | None, progress: ProgressFn | None
    ) -> DepsResult:
        installed = self.environment.installed()
        planner = self._planner()
        deps = planner.plan_lines(
            parsed.pack, base, source, parsed.requirements, parsed.sources, parsed.notes, installed
        )
        merged, conflicts, skips = planner.merge([deps], installed)
        return self.install_plan(DepsPlan((deps,), merged, conflicts, skips, installed), progress)

    def _planner(self, *, evaluate_markers: bool = True) -> Planner:
        return Planner(self.policy, self.environment, evaluate_markers=evaluate_markers)

    def dry_run(self, plan: DepsPlan) -> DryRun:
        """What installing ``plan.merged`` would change in the environment, changing nothing:
        ``uv pip install --dry-run`` or ``pip install --dry-run --report`` with the same sources
        as ``install_plan`` (offline: the wheelhouse only, checked first). Coded errors (a bad
        line, missing offline wheels, a refused source, a failed resolve) come back as ``blockers``."""
        from ..errors import ManagerError

        installed = dict(plan.installed)
        items = list(plan.merged)
        if plan.errors:
            return DryRun(blockers=tuple(e.to_dict() for e in plan.errors))
        if not items:
            return DryRun()
        offline = self.gate.mode is NetworkMode.OFFLINE
        try:
            if offline:
                items = self._check_offline(items, plan, ", ".join(p.pack for p in plan.packs))
            if self._all_satisfied(items, installed):
                return DryRun(notes=("every requirement is already installed",))
            invocations = self._invocations(items, plan, offline)
            choice = self.choice
        except ManagerError as exc:
            return DryRun(blockers=(exc.to_dict(),))
        backend = backend_for(choice, self.run_options)
        after: dict[str, str] = {}
        removed: list[str] = []
        commands: list[str] = []
        for args in invocations:
            found = self._dry_run_one(backend, choice, args, commands)
            if isinstance(found, dict):
                return DryRun(commands=tuple(commands), blockers=(found,), resolver=choice.name)
            after.update(found[0])
            removed += found[1]
        return DryRun(
            after=after,
            removed=tuple(removed),
            commands=tuple(commands),
            resolver=f"{choice.name} install --dry-run",
        )

    def _dry_run_one(
        self, backend: Any, choice: InstallerChoice, args: InstallArgs, commands: list[str]
    ) -> tuple[dict[str, str], list[str]] | dict[str, Any]:
        import json
        import re
        import tempfile

        lines: list[str] = []
        with tempfile.TemporaryDirectory(prefix="cm-dry-run-") as tmp:
            report = Path(tmp) / "report.json"
            cmd = list(backend.install_command(args)) + ["--dry-run"]
            if choice.name == "pip":
                cmd += ["--report", str(report), "--quiet"]
            commands.append(shown_command(cmd))
            result = run_streaming(cmd, lines.append, options=self.run_options)
            if not result.ok:
                return DepsInstallFailed(
                    f"{choice.name} could not resolve the requirements (exit {result.returncode})"
                    + (f": {result.output_tail[-1]}" if result.output_tail else ""),
                    hint="Read the resolver output in details; check pip_index_url / the wheelhouse.",
                    details={
                        "command": commands[-1],
                        "returncode": result.returncode,
                        "output_tail": list(result.output_tail),
                        "installer": choice.name,
                        "dry_run": True,
                    },
                ).to_dict()
            if choice.name == "pip":
                try:
                    data = json.loads(report.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    data = {}
                after = {
                    str(i["metadata"]["name"]): str(i["metadata"]["version"])
                    for i in data.get("install", [])
                    if isinstance(i, dict) and isinstance(i.get("metadata"), dict)
                }
                return after, []
        after, minus = {}, []
        for line in lines:
            m = re.match(r"^\s*([+-])\s+([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:==|@)\s*(\S+)", line)
            if m is None:
                continue
            if m.group(1) == "+":
                after[m.group(2)] = m.group(3)
            else:
                minus.append(m.group(2))
        return after, minus

    def install_plan(self, plan: DepsPlan, progress: ProgressFn | None = None) -> DepsResult:
        """Run the installer for ``plan.merged`` (errors in the plan are raised first)."""
        emit = progress or (lambda _line: None)
        started = time.monotonic()
        if plan.errors:
            raise plan.errors[0]
        packs = tuple(p.pack for p in plan.packs)
        label = ", ".join(packs)
        for skip in plan.skipped:
            if skip.reason != "marker":
                log.warning("%s: skipped %s: %s", skip.pack, skip.requirement, skip.message)
                emit(f"[deps] {skip.pack}: skipped {skip.requirement}: {skip.message}")
        for item in plan.overrides:
            emit(f"[deps] {item.pack}: override {item.original} -> {item.result}")
        for conflict in plan.conflicts:
            emit(f"[deps] conflict: {conflict.message}")
        finished = partial(
            DepsResult,
            packs=packs,
            skipped=plan.skipped,
            overrides=plan.overrides,
            conflicts=plan.conflicts,
            notes=plan.notes,
        )
        items = list(plan.merged)
        if not items:
            return finished(installer=None, seconds=time.monotonic() - started)
        offline = self.gate.mode is NetworkMode.OFFLINE
        if offline:
            items = self._check_offline(items, plan, label)
        if self._all_satisfied(items, plan.installed):
            emit(f"[deps] {label}: every requirement is already installed")
            return finished(
                installer=None, requirements=tuple(i.text for i in items), seconds=time.monotonic() - started
            )
        invocations = self._invocations(items, plan, offline)
        backend = backend_for(self.choice, self.run_options)
        emit(f"[deps] {label}: installing {len(items)} requirement(s) with {self.choice.describe()}")
        commands: list[str] = []
        for args in invocations:
            cmd = backend.install_command(args)
            commands.append(shown_command(cmd))
            emit(f"[deps] $ {commands[-1]}")
            result = backend.install(args, emit)
            if not result.ok:
                raise DepsInstallFailed(
                    f"{self.choice.name} failed installing the requirements of {label} (exit {result.returncode})"
                    + (f": {result.output_tail[-1]}" if result.output_tail else ""),
                    hint="Read the installer output above. Check pip_index_url / the wheelhouse and the "
                    "pack's requirements.txt; pip_overrides.json can replace a broken requirement.",
                    details={
                        "packs": list(packs),
                        "command": commands[-1],
                        "returncode": result.returncode,
                        "output_tail": list(result.output_tail),
                        "installer": self.choice.name,
                    },
                )
        return finished(
            installer=self.choice,
            requirements=tuple(i.text for i in items),
            commands=tuple(commands),
            ran=True,
            seconds=time.monotonic() - started,
        )

    @staticmethod
    def _all_satisfied(items: Sequence[Planned], installed: Mapping[str, str]) -> bool:
        for item in items:
            req, name = item.requirement, item.name
            if item.kind != "name" or req is None or req.extras or name is None or name not in installed:
                return False
            if not req.specifier.contains(installed[name], prereleases=True):
                return False
        return True

    def _check_offline(self, items: list[Planned], plan: DepsPlan, label: str) -> list[Planned]:
        """Offline: direct URLs become name requirements (the wheelhouse may hold them); then
        everything must be installed already or present in the wheelhouse, else fail now."""
        wheelhouse = self.wheelhouse()
        env = self.environment
        out: list[Planned] = []
        missing: list[MissingRequirement] = []
        wanted: list[tuple[Requirement, str]] = []
        local: list[tuple[Path, str]] = []
        for item in items:
            if item.kind == "url":
                if item.name is None:
                    missing.append(MissingRequirement(item.text, ", ".join(item.packs)))
                    continue
                req = item.requirement
                extras = f"[{','.join(sorted(req.extras))}]" if req is not None and req.extras else ""
                item = Planned(
                    item.name, item.name + extras, "name", item.packs, item.origins, Requirement(item.name + extras)
                )
            if item.kind == "path":
                local.append((Path(item.text), ", ".join(item.packs)))
            elif item.requirement is not None:
                wanted.append((item.requirement, ", ".join(item.packs)))
            out.append(item)
        missing += wheelhouse.missing(wanted, env, dict(plan.installed), local_wheels=local)
        if missing:
            raise self._missing_error(missing, label, wheelhouse)
        return out

    def _missing_error(
        self, missing: Sequence[MissingRequirement], label: str, wheelhouse: Wheelhouse
    ) -> DepsMissingWheels:
        env = self.environment
        target = self.policy.primary_wheelhouse or Path("wheelhouse")
        reqs = [m.requirement for m in missing]
        quoted = " ".join(shlex.quote(r) for r in reqs)
        listing = "; ".join(
            f"{m.requirement} (needed by {m.needed_by}"
            + (f", wheelhouse has {', '.join(m.available)}" if m.available else "")
            + ")"
            for m in missing
        )
        pip_cmd = (
            f"pip download -d {shlex.quote(str(target))} --only-binary=:all: "
            f"--python-version {env.python_version} {quoted}"
        )
        cli_cmd = f"python cm-cli.py download-deps --dest {shlex.quote(str(target))} {quoted}"
        searched = [str(f) for f in wheelhouse.folders] + [str(r) for r in wheelhouse.index_roots]
        return DepsMissingWheels(
            f"offline: the wheelhouse cannot satisfy {len(missing)} requirement(s) of {label}: {listing}",
            hint=(
                f"On a machine with network run `{cli_cmd}` (or `{pip_cmd}`), then copy the files into "
                f"{target}. Searched: {', '.join(searched) or '(no wheelhouse folder)'}."
            ),
            details={
                "missing": reqs,
                "needed_by": [m.needed_by for m in missing],
                "wheelhouse": searched,
                "fetch_commands": [cli_cmd, pip_cmd],
                "packs": label,
            },
        )

    def _decide(self, url: str, what: str) -> str:
        try:
            return self.gate.decide(url, "pip")
        except NetworkBlocked as exc:
            if self.gate.mode is NetworkMode.PRIVATE and what == "pip_index_url":
                exc.hint = (
                    f"network_mode is 'private': set pip_index_url to your package mirror and list it "
                    f"in private_mirrors, or set pypi in the [mirrors] section (config.ini). {exc.hint}"
                )
            raise

    def _invocations(self, items: Sequence[Planned], plan: DepsPlan, offline: bool) -> list[InstallArgs]:
        wheel_links = [str(f) for f in self.wheelhouse().existing_folders()]
        local_links = [s.value for s in plan.sources if s.option == "find-links" and self.gate.is_local(s.value)]
        if offline:
            index = self._decide(self.policy.index_url, "pip_index_url") if self._local_index() else None
            return [
                InstallArgs(
                    tuple(i.text for i in items),
                    index_url=index,
                    no_index=index is None,
                    find_links=tuple(wheel_links + local_links),
                    offline=True,
                )
            ]
        main_index = self._decide(self.policy.effective_index, "pip_index_url")
        extra = tuple(
            dict.fromkeys(
                self._decide(s.value, "source") for s in plan.sources if s.option in ("index-url", "extra-index-url")
            )
        )
        remote_links = [
            self._decide(s.value, "source")
            for s in plan.sources
            if s.option == "find-links" and not self.gate.is_local(s.value)
        ]
        hosts = tuple(dict.fromkeys(s.value for s in plan.sources if s.option == "trusted-host"))
        groups: dict[tuple[str, str | None], list[str]] = {}
        main: list[str] = []
        for item in items:
            if item.index_url:
                groups.setdefault((item.index_url, item.trusted_host), []).append(item.text)
            else:
                main.append(item.text)
        out = [
            InstallArgs(
                tuple(texts),
                index_url=self._decide(index, "override"),
                find_links=tuple(wheel_links),
                trusted_hosts=(host,) if host else (),
            )
            for (index, host), texts in groups.items()
        ]  # override indexes first: main may need them
        if main:
            out.append(
                InstallArgs(
                    tuple(main),
                    index_url=main_index,
                    extra_index_urls=extra,
                    find_links=tuple(wheel_links + local_links + remote_links),
                    trusted_hosts=hosts,
                )
            )
        return out


class RunInstaller:
    """The dependency installer of one task run, built on first use and then shared.

    The undo record's first probe (the package set before) and the deps step of every pack the
    run installs use this one object: ComfyUI's python is probed once per run for its
    environment and package set, and uv/pip are detected once per run.
    """

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self._installer: DependencyInstaller | None = None

    def get(self) -> DependencyInstaller:
        if self._installer is None:
            self._installer = installer_for(self.manager)
        return self._installer

    def package_set(self) -> list[PackageRecord]:
        """The package set before the run's changes (see ``DependencyInstaller.package_set``)."""
        try:
            installer = self.get()
        except ManagerError:  # a policy file that does not parse: the deps step reports it
            python = str(self.manager.config["python_executable"] or self.manager.host.python_executable)
            return probe_packages(python)
        return installer.package_set()


def installer_for(manager: Any) -> DependencyInstaller:
    """The dependency installer for ComfyUI's python: ``python_executable`` when set, else the
    host's interpreter (never the Manager's own, when it runs outside ComfyUI). The one place every
    caller (tasks, previews, restore, undo, export, doctor) builds it."""
    from .policy import deps_policy_from_config

    policy = deps_policy_from_config(manager.config, manager.layout)
    if not str(manager.config["python_executable"] or "").strip():
        policy = dataclasses.replace(policy, python=str(manager.host.python_executable))
    return DependencyInstaller(policy, manager.gate)
