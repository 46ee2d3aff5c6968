"""The bundles imported here (``user/__manager/bundles/``) and what of the installed tree they
cover: each installed pack whose source a bundle carried (its git repository or registry zip)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ManagerError
from ..git_mirror import mirror_relpath
from .manifest import read_manifest_file

if TYPE_CHECKING:
    from ..context import Manager


@dataclass(frozen=True)
class ImportedBundle:
    manifest_sha256: str
    created_at: str
    creator_host: str
    base: str  # manifest sha256 of its base ("" for a full bundle)
    packs: tuple[str, ...]
    wheels: tuple[str, ...]
    signed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest_sha256": self.manifest_sha256,
            "created_at": self.created_at,
            "creator_host": self.creator_host,
            "base": self.base,
            "packs": list(self.packs),
            "wheels": list(self.wheels),
            "signed": self.signed,
        }


@dataclass(frozen=True)
class BundleCoverage:
    bundles: tuple[ImportedBundle, ...]
    covered: tuple[str, ...]  # installed packs a bundle carried
    uncovered: tuple[str, ...]  # installed packs no bundle carried
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundles": [b.to_dict() for b in self.bundles],
            "covered": list(self.covered),
            "uncovered": list(self.uncovered),
            "problems": list(self.problems),
        }


def imported_bundles(manager: Manager) -> tuple[tuple[ImportedBundle, ...], tuple[str, ...]]:
    """Every imported manifest (oldest first), and the files that could not be read."""
    folder = manager.layout.bundles_dir
    found: list[ImportedBundle] = []
    problems: list[str] = []
    if not folder.is_dir():
        return (), ()
    for path in sorted(folder.glob("*.json")):
        try:
            manifest, sha = read_manifest_file(path)
        except (OSError, ManagerError) as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        found.append(
            ImportedBundle(
                manifest_sha256=sha,
                created_at=manifest.created_at,
                creator_host=str(manifest.creator.get("host", "")),
                base=manifest.base.sha256 if manifest.base else "",
                packs=tuple(p.get("id", "") for p in manifest.packs),
                wheels=tuple(f.path.split("/", 1)[1] for f in manifest.files if f.kind == "wheel"),
                signed=path.with_suffix(".sig").is_file(),
            )
        )
    found.sort(key=lambda b: b.created_at)
    return tuple(found), tuple(problems)


def coverage(manager: Manager) -> BundleCoverage:
    """Which installed packs the imported bundles carried (git repository by URL, registry id)."""
    bundles, problems = imported_bundles(manager)
    urls: set[str] = set()
    ids: set[str] = set()
    for path in sorted(manager.layout.bundles_dir.glob("*.json")) if bundles else []:
        try:
            manifest, _ = read_manifest_file(path)
        except (OSError, ManagerError):
            continue
        for pack in manifest.packs:
            if pack.get("kind") == "git":
                urls.add(mirror_relpath(pack.get("url", "")) or "")
            else:
                ids.add(pack.get("id", ""))
    covered: list[str] = []
    uncovered: list[str] = []
    for inst in manager.inventory(with_catalog=False).packs:
        rel = mirror_relpath(inst.remote_url) if inst.remote_url else None
        hit = (rel is not None and rel in urls) or bool({inst.pack_id, inst.cnr_id} & ids - {""})
        (covered if hit else uncovered).append(inst.name)
    return BundleCoverage(bundles, tuple(covered), tuple(uncovered), problems)


def doctor_summary(manager: Manager) -> tuple[str, str, str]:
    """(``pass`` | ``warn``, detail, fix) of the doctor's "Offline bundles" line."""
    cov = coverage(manager)
    if cov.problems:
        return (
            "warn",
            f"unreadable imported manifest(s): {'; '.join(cov.problems[:3])}",
            "Import the bundle again (cm-cli.py bundle import FILE).",
        )
    if not cov.bundles:
        return "pass", "no bundle imported here", ""
    newest = cov.bundles[-1]
    total = len(cov.covered) + len(cov.uncovered)
    wheels = len({w for b in cov.bundles for w in b.wheels})
    detail = (
        f"{len(cov.bundles)} bundle(s) imported (newest {newest.created_at} from {newest.creator_host or '?'}"
        f"{', signed' if newest.signed else ''}); they cover {len(cov.covered)} of {total} installed pack(s) "
        f"and carried {wheels} wheel(s)"
    )
    if cov.uncovered:
        detail += f"; not from a bundle: {', '.join(cov.uncovered[:6])}"
    return "pass", detail, ""
