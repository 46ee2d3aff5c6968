"""Every hostile input is refused with a coded error and changes nothing in the tmp tree.

The corpus lives in ``cases.py``; each test below feeds one category of it through the real
code path (archive extraction, name and path checks, git clone, requirements parsing, the
channel cache over file:// and a loopback HTTP server, the catalog, the registry client, the
config loader and saver).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hostile import cases as C
from hostile.harness import Case, Sealed, build_archive, make_sealed
from manager.archive import ArchiveLimits, extract_archive
from manager.catalog import Catalog, ChannelFiles
from manager.channel_cache import ChannelCache
from manager.config import Config
from manager.context import Manager
from manager.deps.requirements import parse_requirements_file
from manager.git import GitClient, check_ref
from manager.models.install import install_model
from manager.network import NetworkGate, NetworkMode, NetworkPolicy, run_sync
from manager.operations import Ops, Reporter
from manager.operations.install import install as install_op
from manager.operations.names import validate_pack_name
from manager.records import Channel, ModelEntry, PolicyDecision
from manager.registry import RegistryClient, validate_node_id, validate_version
from manager.snapshots.model import Snapshot
from manager.snapshots.store import SnapshotStore

pytestmark = pytest.mark.hostile


@pytest.fixture
def sealed(tmp_path: Path) -> Sealed:
    return make_sealed(tmp_path)


def public_gate() -> NetworkGate:
    return NetworkGate(NetworkPolicy(mode=NetworkMode.PUBLIC, connect_timeout=2.0, total_timeout=5.0))


def test_corpus_has_at_least_fifty_cases() -> None:
    per_list = {name: len(cases) for name, cases in C.all_cases().items()}
    assert sum(per_list.values()) >= 50, per_list
    ids = [case.id for cases in C.all_cases().values() for case in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"


# --- archives ----------------------------------------------------------------------------------
@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.ARCHIVES])
def test_archive_refused(case: Case, sealed: Sealed) -> None:
    spec = case.payload
    # the archive itself sits outside the ComfyUI tree but inside the checksummed tmp tree
    archive = build_archive(spec, sealed.root / "downloads", sealed.root)
    limits = ArchiveLimits(**spec.limits) if spec.limits else ArchiveLimits()
    target = sealed.layout.staging_dir / "evil-pack"
    sealed.refuses(case.code, lambda: extract_archive(archive, target, limits=limits))
    assert not target.exists()
    assert not (sealed.root / "evil.txt").exists() and not (sealed.root / "abs-evil.txt").exists()


# --- names and paths ---------------------------------------------------------------------------
@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.NODE_IDS])
def test_node_id_refused(case: Case, sealed: Sealed) -> None:
    sealed.refuses(case.code, lambda: validate_node_id(case.payload))
    client = RegistryClient("http://127.0.0.1:9", public_gate())
    sealed.refuses(case.code, lambda: client.install_url(case.payload))  # never reaches a URL


@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.REGISTRY_VERSIONS])
def test_registry_version_refused(case: Case, sealed: Sealed) -> None:
    sealed.refuses(case.code, lambda: validate_version(case.payload))
    client = RegistryClient("http://127.0.0.1:9", public_gate())
    sealed.refuses(case.code, lambda: client.install_url("good-pack", case.payload))


@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.PACK_NAMES])
def test_pack_folder_name_refused(case: Case, sealed: Sealed) -> None:
    sealed.refuses(case.code, lambda: validate_pack_name(case.payload))
    if not isinstance(case.payload, str) or not case.payload:
        return  # install(name=None/"") means "derive the name", not a name
    source = sealed.root / "source-pack"  # a real local folder; only the name is hostile
    source.mkdir(exist_ok=True)
    (source / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    ops = Ops(Manager.standalone(sealed.layout.comfyui_root, env={}))
    policy = PolicyDecision.allow("install", "local_path")
    sealed.refuses(case.code, lambda: install_op(ops, str(source), Reporter(), name=case.payload, policy=policy))


@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.INSTALL_SPECS])
def test_install_spec_refused(case: Case, sealed: Sealed) -> None:
    ops = Ops(Manager.standalone(sealed.layout.comfyui_root, env={}))
    sealed.refuses(case.code, lambda: install_op(ops, case.payload, Reporter()))


@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.SNAPSHOT_NAMES])
def test_snapshot_name_refused(case: Case, sealed: Sealed) -> None:
    store = SnapshotStore(sealed.layout.snapshots_dir)
    snap = Snapshot(created_at="2026-01-01T00:00:00Z")
    if case.payload is not None:  # save(name=None) means "pick a name"
        sealed.refuses(case.code, lambda: store.save(snap, case.payload))
    sealed.refuses(case.code, lambda: store.remove(case.payload))
    assert not sealed.layout.snapshots_dir.exists()


@pytest.mark.parametrize("case", [c.param() for c in C.MODEL_PATHS])
def test_model_path_refused_before_download(case: Case, sealed: Sealed, http_server) -> None:
    save_path, filename = case.payload
    http_server.static("/m.safetensors", b"weights")
    entry = ModelEntry(
        name="hostile", type="checkpoint", filename=filename, url=http_server.url("/m.safetensors"), save_path=save_path
    )
    manager = Manager.standalone(sealed.layout.comfyui_root, env={})
    sealed.refuses(case.code, lambda: run_sync(install_model(manager, entry)))
    assert http_server.requests == [], "nothing may be fetched for a refused model path"


@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.PATHS])
def test_path_outside_tree_refused(case: Case, sealed: Sealed) -> None:
    layout = sealed.layout
    if case.payload == "@link":
        outside = sealed.root / "outside-target"
        outside.mkdir()
        link = layout.custom_nodes / "innocent-pack"
        link.symlink_to(outside, target_is_directory=True)
        path = link / "nodes.py"
    elif case.payload.startswith("{abs}"):
        path = Path(case.payload.replace("{abs}", str(sealed.root)))
    elif case.payload.startswith("/"):
        path = Path(case.payload)
    else:
        path = layout.comfyui_root / case.payload
    sealed.refuses(case.code, lambda: layout.inside(path))


# custom extraction limits are not an install parameter: those cases run only above
@pytest.mark.parametrize(
    "case", [c.param() for c in C.ARCHIVES if c.payload.fmt in ("zip", "tgz", "raw") and not c.payload.limits]
)
@pytest.mark.offline_suite
def test_archive_refused_through_install(case: Case, sealed: Sealed) -> None:
    """The same archives, installed as a local archive: the operation fails with the archive's
    code and custom_nodes/ is exactly as before (staging emptied)."""
    spec = case.payload
    archive = build_archive(spec, sealed.root / "downloads", sealed.root)
    ops = Ops(Manager.standalone(sealed.layout.comfyui_root, env={}))
    policy = PolicyDecision.allow("install", "local_path")
    sealed.refuses(case.code, lambda: install_op(ops, str(archive), Reporter(), name="evil-pack", policy=policy))


# --- git ---------------------------------------------------------------------------------------
@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.GIT_URLS])
def test_git_url_refused_before_git_runs(case: Case, sealed: Sealed) -> None:
    client = GitClient(public_gate())
    dest = sealed.layout.staging_dir / "clone"
    sealed.refuses(case.code, lambda: client.clone(case.payload, dest), no_spawn=True)
    assert not dest.exists()


@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.GIT_REFS])
def test_git_ref_refused_before_git_runs(case: Case, sealed: Sealed) -> None:
    sealed.refuses(case.code, lambda: check_ref(case.payload))
    if not case.payload:
        return  # clone(ref="") means "the default branch", not a ref named ""
    repo = sealed.root / "repo"  # a real local source, so only the ref is wrong
    repo.mkdir(exist_ok=True)
    client = GitClient(public_gate())
    dest = sealed.layout.staging_dir / "clone"
    sealed.refuses(case.code, lambda: client.clone(str(repo), dest, ref=case.payload), no_spawn=True)


# --- requirements -------------------------------------------------------------------------------
@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.REQUIREMENTS])
def test_requirement_line_refused(case: Case, sealed: Sealed) -> None:
    pack = sealed.layout.custom_nodes / "existing-pack"
    (pack / "requirements.txt").write_text("packaging>=23\n" + case.payload + "\n", encoding="utf-8")
    (sealed.root / "outside.txt").write_text("numpy\n")  # a real target for -r escapes
    (sealed.root / "outside.whl").write_bytes(b"PK")
    err = sealed.refuses(
        case.code, lambda: parse_requirements_file(pack / "requirements.txt", pack="existing-pack", pack_dir=pack)
    )
    assert "line 2" in err.message, "the error must name the offending line"


# --- JSON: channel files through the cache -----------------------------------------------------
def _cache(sealed: Sealed, max_bytes: int | None) -> ChannelCache:
    kw = {"max_bytes": max_bytes} if max_bytes else {}
    return ChannelCache(sealed.layout.cache_dir / "channels", public_gate(), **kw)


@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.CHANNEL_BODIES])
def test_channel_file_refused_from_local_channel(case: Case, sealed: Sealed) -> None:
    body, max_bytes = case.payload
    channel = sealed.root / "channel"
    channel.mkdir()
    (channel / "custom-node-list.json").write_bytes(body)
    url = (channel / "custom-node-list.json").as_uri()
    sealed.refuses(case.code, lambda: run_sync(_cache(sealed, max_bytes).aget(url)))


@pytest.mark.parametrize("case", [c.param() for c in C.CHANNEL_BODIES])
def test_channel_file_refused_from_http(case: Case, sealed: Sealed, http_server) -> None:
    body, max_bytes = case.payload
    http_server.static("/ch/custom-node-list.json", body)
    url = http_server.url("/ch/custom-node-list.json")
    sealed.refuses(case.code, lambda: run_sync(_cache(sealed, max_bytes).aget(url)))
    assert http_server.count("/ch/custom-node-list.json") == 1


@pytest.mark.parametrize("case", [c.param() for c in C.CHANNEL_BODIES])
def test_channel_file_refused_keeps_last_good_copy(case: Case, sealed: Sealed, http_server) -> None:
    """With a good copy cached, a hostile refresh is reported (stale + reason) and loses nothing."""
    body, max_bytes = case.payload
    url = http_server.url("/ch/custom-node-list.json")
    cache = _cache(sealed, max_bytes)
    good = b'{"custom_nodes": []}'
    cache.put(url, good)
    http_server.static("/ch/custom-node-list.json", body)
    before = sealed.snapshot()
    result = run_sync(cache.aget(url, refresh="force"))
    assert result.data == good and result.source == "stale"
    assert result.notice is not None and result.notice.details.get("reason") == case.code
    assert sealed.snapshot() == before


@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.CATALOG_SHAPES])
def test_catalog_refuses_wrong_shape(case: Case, sealed: Sealed) -> None:
    name, body = case.payload
    files = {"custom-node-list.json": b'{"custom_nodes": []}', name: body}
    channel = Channel(name="hostile", url=(sealed.root / "channel").as_uri())
    sealed.refuses(case.code, lambda: Catalog.build([ChannelFiles(channel, files)], strict=True))
    # the tolerant (default) mode keeps going and records the problem instead
    catalog = Catalog.build([ChannelFiles(channel, files)])
    assert any(name == issue.file for issue in catalog.issues)


@pytest.mark.parametrize("case", [c.param() for c in C.REGISTRY_PAGES])
def test_registry_page_refused(case: Case, sealed: Sealed, http_server) -> None:
    http_server.static("/nodes", case.payload)
    cache = ChannelCache(sealed.layout.cache_dir / "registry", public_gate())
    client = RegistryClient(http_server.url(""), public_gate(), cache)
    sealed.refuses(case.code, lambda: asyncio.run(client.list_nodes(refresh="force")))


# --- config ------------------------------------------------------------------------------------
@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.CONFIG_FILES])
def test_config_file_refused(case: Case, sealed: Sealed) -> None:
    path = sealed.layout.config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(case.payload.encode("utf-8"))
    err = sealed.refuses(case.code, lambda: Config.load(path, env={}))
    assert str(path) in err.message + err.hint + str(err.details), "the error must name the file"


@pytest.mark.offline_suite
@pytest.mark.parametrize("case", [c.param() for c in C.CONFIG_SAVES])
def test_config_save_refused(case: Case, sealed: Sealed) -> None:
    path = sealed.layout.config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    original = b"[default]\r\nnetwork_mode = public\r\n; keep this comment\r\n"
    path.write_bytes(original)
    config = Config.load(path, env={})
    sealed.refuses(case.code, lambda: config.save(case.payload))
    assert path.read_bytes() == original
    assert Config.load(path, env={})["security_level"] == "normal"
