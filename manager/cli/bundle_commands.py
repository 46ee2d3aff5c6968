"""``cm-cli.py bundle create|verify|import``: offline bundles (docs/bundles.md).

``create`` and ``verify`` change no ComfyUI tree and call the core directly; ``import`` changes the
stores (and, with ``--apply``, the tree) and is the ``bundle_import`` task kind, planned and queued
like every other change (security policy, operations lock, audit line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..bundles import Selection, create_bundle, verify_bundle
from ..bundles.reader import error_for
from ..context import Manager, load_channel_set
from ..errors import ManagerError, RequestInvalid
from ..kinds import BY_NAME
from ..list_build import rebuild_persisted
from .ops_commands import CLI_LISTEN, add_flags, flag_params, run_specs
from .render import human_size

ACTIONS = ("create", "verify", "import")


def add_parsers(sub: Any) -> None:
    s = sub.add_parser(
        "bundle",
        help="create, verify or import an offline bundle (one signed file across the air gap)",
        description="create: collect packs (git bundles, registry zips), wheels, models and channel files into "
        "one tar file with a manifest; verify FILE: every checksum, the manifest, the signature; import FILE: "
        "verify, then fill the local stores atomically (--apply: then restore the bundled snapshot).",
    )
    s.add_argument("action", choices=ACTIONS, help="create | verify FILE | import FILE")
    s.add_argument("targets", nargs="*", metavar="ARG", help="create: pack ids; verify/import: the bundle file")
    s.add_argument("--installed", action="store_true", help="create: every installed pack (and its wheels)")
    s.add_argument(
        "--pack",
        action="append",
        default=[],
        metavar="ID",
        help="create: a catalog or registry pack id to bundle (repeatable); with --installed, carried along "
        "(in the bundle's channel and git mirror) without being in its snapshot",
    )
    s.add_argument("--snapshot", help="create: the packs and packages of this snapshot file or stored snapshot")
    s.add_argument("--output", "-o", help="create: the bundle file to write")
    s.add_argument("--python-version", help="create: the target python for the wheels (e.g. 3.11), as pip takes it")
    s.add_argument("--platform", action="append", default=[], help="create: a target platform tag (repeatable)")
    s.add_argument("--with-models", action="store_true", help="create: carry the snapshot's model files too")
    s.add_argument("--since", help="create: an increment: only files changed since this old bundle or manifest")
    s.add_argument("--sign", metavar="KEY", help="create: sign the manifest with this OpenSSH private key")
    add_flags(s, BY_NAME["bundle_import"])


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _sizes(sizes: dict[str, int]) -> str:
    return ", ".join(f"{kind} {human_size(n)}" for kind, n in sorted(sizes.items()))


def _one_file(args: argparse.Namespace) -> Path:
    if len(args.targets) != 1:
        raise RequestInvalid(
            f"bundle {args.action} needs exactly one bundle file",
            hint="Name one file: cm-cli.py bundle verify site.bundle.tar (or bundle import site.bundle.tar)",
            details={"given": list(args.targets)},
        )
    return Path(args.targets[0]).expanduser().absolute()


def cmd_bundle(m: Manager, args: argparse.Namespace, refresh: str) -> Any:
    if args.action == "create":
        return _create(m, args)
    if args.action == "verify":
        return _verify(m, args)
    return _import(m, args)


def _create(m: Manager, args: argparse.Namespace) -> Any:
    if not args.output:
        raise RequestInvalid(
            "bundle create needs --output FILE", hint="cm-cli.py bundle create --installed -o site.bundle.tar"
        )
    ids = tuple(dict.fromkeys([*args.targets, *args.pack]))
    selection = Selection(installed=args.installed, pack_ids=ids, snapshot=args.snapshot or "")
    result = create_bundle(
        m,
        selection,
        Path(args.output).expanduser(),
        python_version=args.python_version,
        platforms=tuple(args.platform),
        with_models=args.with_models,
        since=Path(args.since).expanduser() if args.since else None,
        sign_key=Path(args.sign).expanduser() if args.sign else None,
        progress=None if args.json else (lambda line: _err(f"  {line}")),
    )
    if not args.json:
        base = (
            f", increment of {result.base.created_at} ({result.carried_over} unchanged left out)" if result.base else ""
        )
        print(
            f"bundle {result.path}: {result.files} file(s), {human_size(result.size)} ({_sizes(result.sizes)}), "
            f"{len(result.packs)} pack(s){', signed' if result.signed else ''}{base} in {result.seconds:.1f}s"
        )
        print(f"manifest sha256 {result.manifest_sha256}")
        for note in result.notes:
            _err(f"note: {note}")
    return result.to_dict()


def _verify(m: Manager, args: argparse.Namespace) -> Any:
    path = _one_file(args)
    report = verify_bundle(m, path)
    if not args.json:
        for p in report.problems:
            print(f"BAD  {p.member or '(archive)'}: [{p.code}] {p.message}")
        print(
            f"signature: {report.signature.state}"
            + (f" ({report.signature.message})" if report.signature.message else "")
        )
    if report.problems:
        raise error_for(report.problems, path)
    if not args.json:
        print(
            f"bundle verify: ok: {report.files} file(s), {human_size(report.size)}, "
            f"manifest sha256 {report.manifest_sha256}"
        )
    return report.to_dict()


def _import(m: Manager, args: argparse.Namespace) -> Any:
    path = _one_file(args)
    params = flag_params(BY_NAME["bundle_import"], args)
    planned = m.plan("bundle_import", str(path), params, listen=CLI_LISTEN, view=None)
    if args.dry_run:
        preview = dict(m.preview(planned))
        if not args.json:
            for change in preview.get("changes", []):
                if change["action"] != "same":
                    print(f"{change['action']:8} {change['path']}")
            print(f"bundle import --dry-run: {preview.get('adds', 0)} to add, {preview.get('replaces', 0)} to replace")
        return preview
    tasks = run_specs(m, [planned.spec], as_json=args.json)
    result = dict(tasks[0].result or {}) if tasks else {}
    if not args.json:
        print(
            f"bundle import: {result.get('added', 0)} added, {result.get('replaced', 0)} replaced, "
            f"{result.get('unchanged', 0)} unchanged; snapshot {result.get('snapshot', '')}"
            + ("; restored" if result.get("applied") else "")
        )
        for note in result.get("notes", []):
            _err(f"note: {note}")
    if any(c.get("store") == "channel" and c.get("action") != "same" for c in result.get("changes", [])):
        _rebuild_lists(m)
    return [t.to_dict() for t in tasks]


def _rebuild_lists(m: Manager) -> None:
    """The import wrote channel files: rebuild the persisted pack lists so the next server start
    answers its first list from them (as after update-cache); a failure only means the server
    builds them itself at its next start."""
    try:
        # the import may have written channels.list (the channel's name is part of the lists' key):
        # this process read it before the import, so read it again
        m.channels = load_channel_set(m.layout)
        written = rebuild_persisted(m)
    except (ManagerError, OSError) as exc:
        why = f"[{exc.code}] {exc.message}" if isinstance(exc, ManagerError) else str(exc)
        _err(f"bundle import: pack lists not rebuilt ({why}); the server builds them at its next start")
        return
    if written:
        _err(f"bundle import: pack lists rebuilt for the next start ({len(written)} files in {written[0].parent})")
