"""bundle verify / import refusals on real bundles: a tampered file, a truncated archive, a dropped
manifest line, an unsafe member, a signature by an unknown key, an unsigned bundle when signatures
are required. Each is refused naming the item, by the core and by cm-cli.py, and every store of
the importing tree is unchanged (checksum listing)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from manager.bundles import Selection, create_bundle, import_bundle, verify_bundle
from manager.bundles.errors import BundleError
from manager.context import Manager
from support import tools
from support.bundles import Creator, drop_manifest_entry, make_creator, make_tree, members, rewrite
from support.treesum import listing

pytestmark = pytest.mark.offline_suite  # real bundles made and checked with no socket at all

REPO = Path(__file__).resolve().parents[1]
CM = REPO / "cm-cli.py"
GIT_MEMBER = "git/example.invalid/test/pack-a.bundle"
ZIP_MEMBER = "cnr/reg-pack/1.0.0.zip"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Creator, Path]:
    tools.require("git")
    base = tmp_path_factory.mktemp("bundle")
    creator = make_creator(base)
    manager = Manager.standalone(creator.root, env={})
    result = create_bundle(manager, Selection(snapshot=str(creator.snapshot)), base / "site.bundle.tar")
    assert result.files == 8 and set(result.packs) == {"pack-a", "reg-pack"}, result.to_dict()
    return creator, Path(result.path)


def _keys(base: Path, name: str) -> Path:
    tools.require("ssh-keygen")
    key = base / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def _signers(base: Path, identity: str, key: Path) -> Path:
    path = base / "allowed_signers"
    path.write_text(f'{identity} namespaces="offline-manager-bundle" {key.with_suffix(".pub").read_text()}')
    return path


def _stores(manager: Manager) -> dict[str, str]:
    """Checksum listing of the tree: packs and every store (the audit log and lock file aside)."""
    return listing(manager.layout.comfyui_root, skip=("user/__manager/logs", "user/__manager/locks"))


def _importer(tmp_path: Path, **settings: object) -> Manager:
    return Manager.standalone(make_tree(tmp_path / "box" / "ComfyUI", **settings), env={})


def _refused(manager: Manager, bundle: Path, code: str, member: str) -> None:
    """verify reports it naming ``member``; import raises it and changes no store; the CLI says it."""
    report = verify_bundle(manager, bundle)
    assert not report.ok
    assert report.problems[0].code == code, report.to_dict()
    assert any(p.member == member for p in report.problems if p.code == code), report.to_dict()
    before = _stores(manager)
    with pytest.raises(BundleError) as err:
        import_bundle(manager, bundle)
    assert err.value.code == code and member in str(err.value.details), err.value.to_dict()
    assert _stores(manager) == before, "a refused import changed the tree"
    out = subprocess.run(
        [sys.executable, str(CM), "--comfyui", str(manager.layout.comfyui_root), "bundle", "verify", str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == (4 if code in ("bundle_signature_invalid", "bundle_unsigned") else 1), out
    assert code in out.stderr and member in out.stdout + out.stderr, out.stdout + out.stderr
    out = subprocess.run(
        [sys.executable, str(CM), "--comfyui", str(manager.layout.comfyui_root), "bundle", "import", str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and code in out.stdout + out.stderr, out.stdout + out.stderr
    assert _stores(manager) == before, "a refused CLI import changed the tree"


def test_a_good_bundle_verifies_with_every_file_listed(made, tmp_path: Path) -> None:
    creator, bundle = made
    report = verify_bundle(_importer(tmp_path), bundle)
    assert report.ok and report.problems == (), report.to_dict()
    assert report.files == 8 and report.signature.state == "unsigned"
    names = [name for name, _ in members(bundle)]
    assert names[0] == "manifest.json" and GIT_MEMBER in names and ZIP_MEMBER in names
    doc = report.to_dict()["manifest"]
    assert {f["path"] for f in doc["files"]} == set(names[1:])
    assert doc["snapshot"] == "snapshot.json" and doc["base"] is None and doc["creator"]["host"]
    out = subprocess.run(
        [sys.executable, str(CM), "--comfyui", str(creator.root), "bundle", "verify", str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "bundle verify: ok: 8 file(s)" in out.stdout, out.stdout + out.stderr


@pytest.mark.hostile("bundle")
def test_a_tampered_file_is_named(made, tmp_path: Path) -> None:
    _creator, bundle = made

    def flip(name: str, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if name == ZIP_MEMBER else data

    bad = rewrite(bundle, tmp_path / "tampered.tar", flip)
    _refused(_importer(tmp_path), bad, "bundle_checksum_mismatch", ZIP_MEMBER)


@pytest.mark.hostile("bundle")
def test_a_truncated_archive_is_refused(made, tmp_path: Path) -> None:
    _creator, bundle = made
    data = bundle.read_bytes()
    manager = _importer(tmp_path)
    for where in (len(data) // 2 + 100, 512 * (len(data) // 1024)):  # inside a member, at a block boundary
        cut = tmp_path / f"truncated-{where}.tar"
        cut.write_bytes(data[:where])
        report = verify_bundle(manager, cut)
        assert report.problems and report.problems[0].code == "bundle_truncated", report.to_dict()
        _refused(manager, cut, "bundle_truncated", report.problems[0].member)


@pytest.mark.hostile("bundle")
def test_a_dropped_manifest_line_is_named(made, tmp_path: Path) -> None:
    _creator, bundle = made
    bad = rewrite(bundle, tmp_path / "dropped.tar", drop_manifest_entry(GIT_MEMBER))
    _refused(_importer(tmp_path), bad, "bundle_manifest_incomplete", GIT_MEMBER)


@pytest.mark.hostile("bundle")
def test_a_missing_member_is_named(made, tmp_path: Path) -> None:
    _creator, bundle = made
    bad = rewrite(bundle, tmp_path / "missing.tar", lambda name, data: None if name == ZIP_MEMBER else data)
    _refused(_importer(tmp_path), bad, "bundle_manifest_incomplete", ZIP_MEMBER)


@pytest.mark.hostile("bundle")
def test_a_link_or_dotdot_member_is_refused(made, tmp_path: Path) -> None:
    _creator, bundle = made
    bad = tmp_path / "unsafe.tar"
    with tarfile.open(bundle, "r:") as src, tarfile.open(bad, "w") as dst:
        for info in src:
            dst.addfile(info, src.extractfile(info))
        link = tarfile.TarInfo("wheels/evil.whl")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        dst.addfile(link)
    _refused(_importer(tmp_path), bad, "bundle_unsafe_member", "wheels/evil.whl")


@pytest.mark.hostile("bundle")
def test_signatures_known_unknown_and_required(made, tmp_path: Path) -> None:
    creator, bundle = made
    keys = tmp_path / "keys"
    keys.mkdir()
    good, stranger = _keys(keys, "admin"), _keys(keys, "stranger")
    signers = _signers(keys, "admin@site", good)
    maker = Manager.standalone(creator.root, env={})
    signed = create_bundle(maker, Selection(snapshot=str(creator.snapshot)), tmp_path / "signed.tar", sign_key=good)
    forged = create_bundle(maker, Selection(snapshot=str(creator.snapshot)), tmp_path / "forged.tar", sign_key=stranger)
    assert signed.signed and [n for n, _ in members(Path(signed.path))][:2] == ["manifest.json", "manifest.json.sig"]

    checking = _importer(tmp_path / "a", bundle_allowed_signers=str(signers))
    report = verify_bundle(checking, Path(signed.path))
    assert report.ok and report.signature.state == "valid" and report.signature.signer == "admin@site"
    _refused(checking, Path(forged.path), "bundle_signature_invalid", "manifest.json.sig")

    strict = _importer(tmp_path / "b", bundle_allowed_signers=str(signers), require_signed_bundles="true")
    _refused(strict, bundle, "bundle_unsigned", "manifest.json.sig")
    assert verify_bundle(strict, Path(signed.path)).ok
    imported = import_bundle(strict, Path(signed.path))  # the exact manifest and its signature are kept
    kept = strict.layout.bundles_dir / f"{imported.manifest_sha256}.json"
    parts = dict(members(Path(signed.path)))
    assert (
        kept.read_bytes() == parts["manifest.json"]
        and kept.with_suffix(".sig").read_bytes() == parts["manifest.json.sig"]
    )

    # a signed manifest that was altered afterwards: the signature no longer matches
    def alter(name: str, data: bytes) -> bytes:
        return data.replace(b'"selection"', b'"selection" ', 1) if name == "manifest.json" else data

    _refused(
        checking,
        rewrite(Path(signed.path), tmp_path / "altered.tar", alter),
        "bundle_signature_invalid",
        "manifest.json.sig",
    )


@pytest.mark.hostile("bundle")
def test_a_member_name_outside_its_kind_is_refused(made, tmp_path: Path) -> None:
    """A manifest may only list names its importer can place (no nested wheels, no odd git paths)."""
    _creator, bundle = made

    def rename(name: str, data: bytes) -> bytes:
        if name == "manifest.json":
            return data.replace(ZIP_MEMBER.encode(), b"cnr/reg-pack/x/1.0.0.zip")
        return data

    bad = tmp_path / "renamed.tar"
    with tarfile.open(bad, "w") as tar:
        import io

        for name, data in members(bundle):
            new = rename(name, data)
            info = tarfile.TarInfo("cnr/reg-pack/x/1.0.0.zip" if name == ZIP_MEMBER else name)
            info.size = len(new)
            tar.addfile(info, io.BytesIO(new))
    _refused(_importer(tmp_path), bad, "bundle_manifest_incomplete", "cnr/reg-pack/x/1.0.0.zip")


def test_import_dry_run_lists_what_it_would_add_and_changes_nothing(made, tmp_path: Path) -> None:
    _creator, bundle = made
    manager = _importer(tmp_path)
    before = _stores(manager)
    out = subprocess.run(
        [sys.executable, str(CM), "--comfyui", str(manager.layout.comfyui_root), "bundle", "import", str(bundle)]
        + ["--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "add      git-mirror/example.invalid/test/pack-a.bundle" in out.stdout, out.stdout
    assert "bundle import --dry-run: 8 to add, 0 to replace" in out.stdout, out.stdout
    assert _stores(manager) == before
