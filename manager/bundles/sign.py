"""Signing the manifest with OpenSSH (``ssh-keygen -Y sign``) and checking it (``-Y verify``).

No new dependency: OpenSSH is on every Linux box. The signer's identity is looked up in the
``allowed_signers`` file (``ssh-keygen -Y find-principals``), then the signature is verified
for that identity and the ``offline-manager-bundle`` namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError
from .manifest import SIGN_NAMESPACE

_TIMEOUT = 60.0


@dataclass(frozen=True)
class SignatureStatus:
    state: str  # valid | invalid | unsigned | unchecked (signed, no allowed_signers configured)
    signer: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "signer": self.signer, "message": self.message}


def _ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if not exe:
        raise BundleError(
            "ssh-keygen (OpenSSH) is needed to sign or check a bundle signature and was not found",
            hint="Install OpenSSH's client (apt-get install openssh-client), then retry.",
            details={"tool": "ssh-keygen"},
        )
    return exe


def sign_manifest(manifest: bytes, key: Path) -> bytes:
    """The SSH signature of ``manifest`` made with the private ``key``."""
    if not key.is_file():
        raise BundleError(
            f"signing key {os.fspath(key)} does not exist",
            hint="Name an OpenSSH private key: cm-cli.py bundle create --sign ~/.ssh/id_ed25519 ...",
            details={"key": os.fspath(key)},
        )
    with tempfile.TemporaryDirectory(prefix="cm-bundle-sign-") as tmp:
        body = Path(tmp) / "manifest.json"
        body.write_bytes(manifest)
        res = subprocess.run(
            [_ssh_keygen(), "-Y", "sign", "-f", os.fspath(key), "-n", SIGN_NAMESPACE, os.fspath(body)],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        sig = body.with_name("manifest.json.sig")
        if res.returncode != 0 or not sig.is_file():
            raise BundleError(
                f"ssh-keygen could not sign with {os.fspath(key)}: {res.stderr.strip()[-300:]}",
                hint="Use a private key without a passphrase prompt (or load it in ssh-agent) and retry.",
                details={"key": os.fspath(key)},
            )
        return sig.read_bytes()


def check_signature(manifest: bytes, signature: bytes, allowed_signers: str) -> SignatureStatus:
    """Judge ``signature`` of ``manifest`` against the ``allowed_signers`` file ("" = none set)."""
    if not signature:
        return SignatureStatus("unsigned", message="the bundle is not signed")
    if not allowed_signers:
        return SignatureStatus(
            "unchecked", message="signed, but bundle_allowed_signers is not set, so the signature was not checked"
        )
    signers = Path(allowed_signers).expanduser()
    if not signers.is_file():
        return SignatureStatus("invalid", message=f"bundle_allowed_signers names {signers}, which does not exist")
    exe = _ssh_keygen()
    with tempfile.TemporaryDirectory(prefix="cm-bundle-verify-") as tmp:
        sig = Path(tmp) / "manifest.json.sig"
        sig.write_bytes(signature)
        found = subprocess.run(
            [exe, "-Y", "find-principals", "-s", os.fspath(sig), "-f", os.fspath(signers)],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        principals = [p.strip() for p in found.stdout.splitlines() if p.strip()]
        if found.returncode != 0 or not principals:
            return SignatureStatus("invalid", message=f"the signing key is not listed in {signers}")
        for principal in principals:
            res = subprocess.run(
                [
                    exe,
                    "-Y",
                    "verify",
                    "-f",
                    os.fspath(signers),
                    "-I",
                    principal,
                    "-n",
                    SIGN_NAMESPACE,
                    "-s",
                    os.fspath(sig),
                ],
                input=manifest,
                capture_output=True,
                timeout=_TIMEOUT,
            )
            if res.returncode == 0:
                return SignatureStatus("valid", signer=principal, message=f"signed by {principal}")
        return SignatureStatus("invalid", message="the signature does not match the manifest")
