"""``verify_bundle``: every checksum, the manifest's completeness and the signature, in one pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BundleError, BundleSignatureInvalid, BundleUnsigned
from .manifest import Manifest
from .reader import BundleProblem, Placement, Scan, error_for, scan_archive
from .sign import SignatureStatus, check_signature

if TYPE_CHECKING:
    from ..context import Manager


@dataclass(frozen=True)
class BundleReport:
    """What ``bundle verify`` found; ``ok`` when nothing is wrong (problems name each file)."""

    path: str
    ok: bool
    manifest_sha256: str
    manifest: Manifest | None
    signature: SignatureStatus
    problems: tuple[BundleProblem, ...]
    files: int
    size: int
    # the exact bytes read (an import keeps them: the sha256 names the manifest, a signature covers them)
    manifest_bytes: bytes = field(default=b"", repr=False, compare=False)
    signature_bytes: bytes = field(default=b"", repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": self.path,
            "ok": self.ok,
            "manifest_sha256": self.manifest_sha256,
            "manifest": m.to_dict() if m else None,
            "created_at": m.created_at if m else "",
            "base": m.base.to_dict() if m and m.base else None,
            "signature": self.signature.to_dict(),
            "problems": [p.to_dict() for p in self.problems],
            "files": self.files,
            "size": self.size,
            "sizes": m.sizes() if m else {},
        }

    def raise_for_problems(self) -> None:
        if self.problems:
            raise error_for(self.problems, Path(self.path))


def _signature_problems(manager: Manager, scan: Scan) -> tuple[SignatureStatus, list[BundleProblem]]:
    status = check_signature(scan.manifest_bytes, scan.signature, str(manager.config["bundle_allowed_signers"]))
    required = bool(manager.config["require_signed_bundles"])
    problems: list[BundleProblem] = []
    if status.state == "invalid":
        problems.append(BundleProblem(BundleSignatureInvalid.code, "manifest.json.sig", status.message))
    elif required and status.state != "valid":
        why = status.message if status.state == "unsigned" else "bundle_allowed_signers is not set"
        problems.append(
            BundleProblem(BundleUnsigned.code, "manifest.json.sig", f"require_signed_bundles is true and {why}")
        )
    return status, problems


def check_archive(
    manager: Manager,
    path: Path,
    *,
    extract_to: Path | Placement | None = None,
    progress: Callable[[str], None] | None = None,
) -> BundleReport:
    """One pass over the archive (extracting into ``extract_to`` when given) and the signature."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(
            f"no bundle file {path}",
            hint="Name the bundle file made by cm-cli.py bundle create (cm-cli.py bundle verify FILE).",
            details={"bundle": str(path)},
        )
    scan = scan_archive(path, extract_to=extract_to, progress=progress)
    problems = list(scan.problems)
    status = SignatureStatus("unsigned", message="not checked: the manifest could not be read")
    if scan.manifest is not None:
        status, sig_problems = _signature_problems(manager, scan)
        problems = sig_problems + problems
    return BundleReport(
        path=str(path),
        ok=not problems,
        manifest_sha256=scan.manifest_sha256,
        manifest=scan.manifest,
        signature=status,
        problems=tuple(problems),
        files=len(scan.seen),
        size=path.stat().st_size,
        manifest_bytes=scan.manifest_bytes,
        signature_bytes=scan.signature,
    )


def verify_bundle(manager: Manager, path: Path, *, progress: Callable[[str], None] | None = None) -> BundleReport:
    """Check ``path`` without changing anything; bad content is reported, not raised."""
    return check_archive(manager, path, progress=progress)
