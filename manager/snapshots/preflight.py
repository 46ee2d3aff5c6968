"""Checks made before a restore changes anything.

Always: git installs need an allowed security decision, and package sources must be allowed.
Offline: every source must be local. Packs come from ``file://`` repositories (or a mirror map
that points at one) holding the wanted commit, or from the registry archive cache; packages and
the packs' own requirements from the wheelhouse. Everything missing is collected and reported
at once (``snapshot_sources_missing``) so an air-gapped restore never fails half-way.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from ..errors import ManagerError, NetworkBlocked, PolicyDenied, SnapshotSourcesMissing
from ..git import run_local
from ..git_mirror import bundle_refs, find_mirror, is_bundle_file, mirror_relpath, repository_for
from ..records import PolicyDecision
from .model import _Record
from .plan import RestorePlan, RestoreStep

__all__ = ["MissingSource", "absent_pinned_commits", "check_policy", "missing_local_sources", "preflight"]


@dataclass(frozen=True)
class MissingSource(_Record):
    step: int
    what: str  # repository | commit | archive | wheel | file
    name: str  # pack or package
    needed: str  # URL, commit, requirement or path
    hint: str = ""


def commit_and_requirements(git_exe: str, repo: Path, commit: str) -> str | None:
    """One git run: None when ``repo`` lacks ``commit`` (HEAD when empty), else the text of its
    requirements.txt at that commit ("" when it has none)."""
    if not repo.is_dir():
        return None
    rev = commit or "HEAD"
    if "\n" in rev or rev.startswith("-"):
        return None
    rc, out = run_local(
        git_exe, repo, "cat-file", "--batch", timeout=60, stdin=f"{rev}^{{commit}}\n{rev}:requirements.txt\n".encode()
    )
    answers = _batch_answers(out) if rc == 0 else []
    if len(answers) != 2 or answers[0] is None:
        return None
    return answers[1].decode("utf-8", "replace") if answers[1] is not None else ""


def bundled_requirements(folder: Path) -> dict[tuple[str, str], str]:
    """``(mirror path, commit) -> requirements.txt text`` of the git packs in the imported bundle
    manifests under ``folder`` (``bundle create`` records the text at the pinned commit)."""
    out: dict[tuple[str, str], str] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        packs = doc.get("packs") if isinstance(doc, dict) else None
        for pack in packs if isinstance(packs, list) else ():
            if not isinstance(pack, dict) or pack.get("kind") != "git":
                continue
            rel, commit, text = mirror_relpath(str(pack.get("url") or "")), pack.get("commit"), pack.get("requirements")
            if rel and isinstance(commit, str) and isinstance(text, str):
                out[(rel, commit.lower())] = text
    return out


def _has_commit(git_exe: str, repo: Path, commit: str) -> bool:
    if not repo.is_dir():
        return False
    if not commit:
        return run_local(git_exe, repo, "rev-parse", "--verify", "-q", "HEAD^{commit}", timeout=60)[0] == 0
    return run_local(git_exe, repo, "cat-file", "-e", f"{commit}^{{commit}}", timeout=60)[0] == 0


def _batch_answers(out: bytes) -> list[bytes | None]:
    """The objects ``git cat-file --batch`` printed, None for each it did not find."""
    answers: list[bytes | None] = []
    at = 0
    while at < len(out):
        end = out.find(b"\n", at)
        if end < 0:
            break
        header = out[at:end].split()
        at = end + 1
        if len(header) == 3 and header[2].isdigit():
            size = int(header[2])
            answers.append(out[at : at + size])
            at += size + 1
        else:  # "<name> missing" / "ambiguous"
            answers.append(None)
    return answers


def _zip_requirements(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("requirements.txt") and n.count("/") <= 1]
            names.sort(key=lambda n: n.count("/"))
            return zf.read(names[0]).decode("utf-8", "replace") if names else ""
    except (OSError, zipfile.BadZipFile, KeyError):
        return ""


def check_policy(plan: RestorePlan, policy: PolicyDecision | None) -> None:
    """Git installs from a snapshot need the door's allowed decision for the restore."""
    gits = [s for s in plan.steps if s.kind == "pack_install" and s.params.get("kind") == "git"]
    if not gits:
        return
    if policy is None or not policy.allowed:
        raise PolicyDenied(
            f"restoring needs {len(gits)} install(s) from git URLs ({', '.join(s.target for s in gits[:5])}) and no "
            "allowed security decision was given for the restore"
            + (f": {policy.reason}" if policy is not None and policy.reason else ""),
            hint=(
                policy.hint
                if policy is not None and policy.hint
                else "Restore from cm-cli.py or the panel (they ask the security policy: security_level normal or "
                "lower), or use a snapshot of registry packs only."
            ),
            details={"packs": [s.target for s in gits]},
        )


class _Checker:
    def __init__(self, manager: Any, plan: RestorePlan):
        self.manager = manager
        self.plan = plan
        self.gate = manager.gate
        self.git_exe = str(manager.config["git_exe"] or "git")
        self.missing: list[MissingSource] = []
        self.pack_reqs: list[tuple[str, str]] = []  # (pack, requirements.txt text)
        self._recorded: dict[tuple[str, str], str] | None = None

    def recorded(self) -> dict[tuple[str, str], str]:
        """``(mirror path, commit) -> requirements.txt`` as imported bundle manifests recorded them
        when the bundle was made (a commit's file never changes), read once."""
        if self._recorded is None:
            self._recorded = bundled_requirements(self.manager.layout.bundles_dir)
        return self._recorded

    def from_bundle(self, url: str, commit: str) -> str | None:
        """Without git, for a pack cloned from a git bundle kept in the mirror: the requirements
        text when the bundle's header lists ``commit`` (HEAD when empty) as a ref and a manifest
        recorded its requirements.txt; None when git has to answer."""
        bundle = find_mirror(self.manager.git.mirror_root, url)
        if bundle is None or not is_bundle_file(bundle):
            return None
        refs = bundle_refs(bundle) or {}
        want = (commit or refs.get("HEAD", "")).lower()
        if not want or want not in refs.values():
            return None
        return self.recorded().get((mirror_relpath(url) or "", want))

    def miss(self, step: RestoreStep, what: str, needed: str, hint: str) -> None:
        self.missing.append(MissingSource(step.index, what, step.target, needed, hint))

    def local_repo(self, url: str) -> Path | None:
        mirrored = find_mirror(self.manager.git.mirror_root, url)  # a bundle's copy: what the clone uses
        if mirrored is not None:
            try:
                return repository_for(self.git_exe, mirrored)  # a bundle file: its bare repository, made once
            except OSError:
                return None
        try:
            final = self.gate.rewrite(url)
            return self.gate.local_path(final) if self.gate.is_local(final) else None
        except NetworkBlocked:
            return None

    def git_step(self, step: RestoreStep, installed: Path | None) -> None:
        url, commit = str(step.params.get("url") or ""), str(step.params.get("commit") or "")
        reqs = commit_and_requirements(self.git_exe, installed, commit) if installed is not None else None
        if reqs is None and url:
            reqs = self.from_bundle(url, commit)
        local = self.local_repo(url) if url and reqs is None else None
        if reqs is None and local is not None:
            reqs = commit_and_requirements(self.git_exe, local, commit)
        if reqs is not None:
            self.pack_reqs.append((step.target, reqs))
            return
        if url and local is None:
            self.miss(
                step,
                "repository",
                url,
                "Offline, a pack comes from a file:// repository: add a [mirrors] rewrite to it in "
                "config.ini or clone the repository next to the tree and restore from a snapshot that "
                "names it.",
            )
        else:
            self.miss(
                step,
                "commit",
                f"{url} {commit[:12]}".strip(),
                "The local repository lacks that commit; update the local mirror (git fetch) online.",
            )

    def cnr_step(self, step: RestoreStep) -> None:
        from ..operations.ops import Ops
        from ..operations.sources import _cached_versions, cnr_archive_path

        ops = Ops(self.manager)
        ident, version = str(step.params.get("id") or ""), str(step.params.get("version") or "")
        if version in ("", "latest"):
            cached = _cached_versions(ops, ident)
            version = cached[0] if cached else ""
        archive = cnr_archive_path(ops, ident, version) if version else None
        if archive is not None and archive.is_file():
            self.pack_reqs.append((step.target, _zip_requirements(archive)))
            return
        if step.kind == "pack_switch" and version and self._parked(ident, version):
            return
        where = archive or self.manager.layout.cache_dir / "archives" / "cnr" / ident
        self.miss(
            step,
            "archive",
            f"{ident}@{version or 'latest'}",
            f"Run `cm-cli.py install {ident}@{version or 'latest'}` on a machine with network and the same "
            f"manager data folder, or copy the registry zip to {where}.",
        )

    def _parked(self, ident: str, version: str) -> bool:
        inv = self.manager.inventory(with_catalog=False)
        return any(
            not p.enabled and (p.cnr_id or p.pack_id).lower() == ident.lower() and p.version == version
            for p in inv.packs
        )

    def unbundle(self) -> None:
        """Bare repositories for the git bundles whose commit and requirements no manifest answers
        for (``from_bundle``), made side by side (one git process each)."""
        root = self.manager.git.mirror_root
        found = [
            find_mirror(root, str(s.params.get("url") or ""))
            for s in self.plan.steps
            if s.params.get("url") and self.from_bundle(str(s.params["url"]), str(s.params.get("commit") or "")) is None
        ]
        bundles = sorted({p for p in found if p is not None and is_bundle_file(p)})
        if len(bundles) < 2:
            return
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for fut in [pool.submit(repository_for, self.git_exe, b) for b in bundles]:
                try:
                    fut.result()
                except OSError:
                    pass  # named as a missing repository by the step's own check

    def run(self, inventory_paths: dict[str, Path]) -> None:
        self.unbundle()
        for step in self.plan.steps:
            kind = step.params.get("kind")
            if step.kind == "pack_checkout" or (step.kind == "pack_install" and kind == "git"):
                installed = (
                    inventory_paths.get(str(step.params.get("name") or "")) if step.kind == "pack_checkout" else None
                )
                self.git_step(step, installed)
            elif step.kind == "pack_switch" or (step.kind == "pack_install" and kind == "cnr"):
                self.cnr_step(step)


def _wheel_gaps(
    manager: Any,
    plan: RestorePlan,
    pack_reqs: Sequence[tuple[str, str]],
    pip_requirements: Sequence[str],
    installer: Any = None,
) -> list[MissingSource]:
    """Requirements (the packs' and the snapshot's pins) the wheelhouse cannot satisfy.
    ``installer``: the restore's ``RunInstaller`` (its probe and the wheels' metadata it reads
    serve the restore's steps too)."""
    from ..deps.plan import PackSource
    from .restore import dependency_installer

    installer = installer.get() if installer is not None else dependency_installer(manager)
    wanted: list[tuple[Requirement, str]] = []
    with tempfile.TemporaryDirectory(prefix="cm-restore-") as tmp:
        sources = []
        for i, (pack, text) in enumerate(pack_reqs):
            if not text.strip():
                continue
            folder = Path(tmp) / f"p{i}"
            folder.mkdir()
            (folder / "requirements.txt").write_text(text, encoding="utf-8")
            sources.append(PackSource(pack, folder))
        if sources:
            deps_plan = installer.plan_for(sources)
            for item in deps_plan.merged:
                if item.requirement is not None and item.kind != "path" and item.name:
                    req = item.requirement if item.kind == "name" else Requirement(item.name)
                    wanted.append((req, ", ".join(item.packs)))
    step_index = next((s.index for s in plan.steps if s.kind == "pip_install"), 0)
    for text in pip_requirements:
        req = Requirement(text)
        if req.url:
            if req.url.lower().startswith("file:"):
                continue  # checked as a file below
            req = Requirement(req.name)
        wanted.append((req, "snapshot"))
    if not wanted:
        return []
    env = installer.environment
    gaps = installer.wheelhouse().missing(wanted, env, env.installed())
    return [
        MissingSource(
            step_index,
            "wheel",
            m.needed_by,
            m.requirement,
            "Fill the wheelhouse online: `cm-cli.py download-deps` (or pip download -d <wheelhouse> "
            f"{m.requirement})" + (f"; it has {', '.join(m.available)}" if m.available else ""),
        )
        for m in gaps
    ]


def missing_local_sources(
    manager: Any, plan: RestorePlan, pip_requirements: Sequence[str], *, installer: Any = None
) -> list[MissingSource]:
    """Everything an offline restore of ``plan`` would need and cannot find locally (nothing is changed)."""
    checker = _Checker(manager, plan)
    inv = manager.inventory(with_catalog=False)
    paths: dict[str, Path] = {}
    for p in inv.packs:
        base = p.name if p.enabled else p.pack_id
        paths.setdefault(base, Path(p.path))
    checker.run(paths)
    missing = list(checker.missing)
    reqs = [] if plan.options.no_deps else checker.pack_reqs
    try:
        missing += _wheel_gaps(manager, plan, reqs, pip_requirements, installer)
    except ManagerError as exc:  # e.g. a pack's requirements.txt that cannot be read
        missing.append(MissingSource(0, "requirements", exc.details.get("pack", ""), exc.message, exc.hint))
    for text in pip_requirements:
        req = Requirement(text)
        if req.url and req.url.lower().startswith("file:"):
            path = manager.gate.local_path(req.url)
            if not path.exists():
                step = next((s.index for s in plan.steps if s.kind == "pip_install"), 0)
                missing.append(
                    MissingSource(
                        step,
                        "file",
                        req.name,
                        str(path),
                        "The local file the package was installed from is gone; copy it back.",
                    )
                )
    return missing


def absent_pinned_commits(manager: Any, plan: RestorePlan) -> list[MissingSource]:
    """Git steps whose pinned commit is known to be unreachable before anything changes: the pack's own
    checkout lacks it and its source is a local repository (``file://``, or a ``[mirrors]`` rewrite to one)
    that is gone (``repository``: the URL moved) or lacks the commit (``commit``: history rewritten).
    A remote source cannot be asked without the network; its step fails when it runs, and is undone."""
    checker = _Checker(manager, plan)
    checker.unbundle()
    inv = manager.inventory(with_catalog=False)
    paths = {(p.name if p.enabled else p.pack_id): Path(p.path) for p in inv.packs}
    out: list[MissingSource] = []
    for step in plan.steps:
        if not (step.kind == "pack_checkout" or (step.kind == "pack_install" and step.params.get("kind") == "git")):
            continue
        url, commit = str(step.params.get("url") or ""), str(step.params.get("commit") or "")
        if not commit:
            continue
        own = paths.get(str(step.params.get("name") or "")) if step.kind == "pack_checkout" else None
        if own is not None and _has_commit(checker.git_exe, own, commit):
            continue
        if url and checker.from_bundle(url, commit) is not None:  # the kept bundle lists it
            continue
        repo = checker.local_repo(url) if url else None
        if repo is None:
            continue
        if not (repo / ".git").exists() and not (repo / "HEAD").is_file():
            out.append(
                MissingSource(
                    step.index,
                    "repository",
                    step.target,
                    url,
                    "The source repository is not where the snapshot says (moved or deleted): point a [mirrors] "
                    "rewrite at its new place in config.ini, then restore again.",
                )
            )
        elif not _has_commit(checker.git_exe, repo, commit):
            out.append(
                MissingSource(
                    step.index,
                    "commit",
                    step.target,
                    f"{url} {commit[:12]}",
                    "The source no longer holds that commit (its history was rewritten): pick another commit "
                    "with `cm-cli.py switch-version`, or take a new snapshot.",
                )
            )
    return out


def preflight(
    manager: Any,
    plan: RestorePlan,
    pip_requirements: Sequence[str],
    *,
    policy: PolicyDecision | None,
    left_out: Sequence[MissingSource] = (),
    installer: Any = None,
) -> None:
    """Raise before the first change: denied git installs, or (offline) every missing local source.
    ``left_out``: packs already taken out of ``plan`` (their pinned commit is unreachable); listed too
    when something else stops the restore, so everything missing is reported at once. ``installer``:
    the restore's ``RunInstaller``, shared with its steps."""
    check_policy(plan, policy)
    if not manager.gate.offline:
        return
    missing = missing_local_sources(manager, plan, pip_requirements, installer=installer)
    if missing:
        missing = sorted([*left_out, *missing], key=lambda m: m.step)
        listing = "; ".join(f"{m.name}: {m.what} {m.needed}" for m in missing[:10])
        raise SnapshotSourcesMissing(
            f"offline restore cannot start: {len(missing)} source(s) are not available locally: {listing}"
            + (" ..." if len(missing) > 10 else ""),
            hint="Nothing was changed. Fetch the listed items on a machine with network (see each entry's hint), "
            "or set network_mode in config.ini.",
            details={"missing": [m.to_dict() for m in missing]},
        )
