"""Coded refusals of offline bundles (registered through ``ManagerError`` subclassing)."""

from __future__ import annotations

from ..errors import ManagerError


class BundleError(ManagerError):
    """A bundle cannot be made or used; ``details`` names the file or item."""

    code = "bundle_invalid"
    http_status = 400
    default_hint = "Make the bundle again on the online box (cm-cli.py bundle create) and carry it over again."


class BundleChecksumMismatch(BundleError):
    code = "bundle_checksum_mismatch"
    default_hint = (
        "A file in the bundle differs from its manifest (damaged or altered in transit): copy the bundle "
        "again, then run cm-cli.py bundle verify FILE. Nothing was changed."
    )


class BundleTruncated(BundleError):
    code = "bundle_truncated"
    default_hint = "The bundle file ends early (an interrupted copy): copy it again, then cm-cli.py bundle verify FILE."


class BundleManifestIncomplete(BundleError):
    code = "bundle_manifest_incomplete"
    default_hint = (
        "The manifest does not list exactly the files of the archive (a file added or a line dropped): "
        "make the bundle again with cm-cli.py bundle create. Nothing was changed."
    )


class BundleUnsafeMember(BundleError):
    code = "bundle_unsafe_member"
    default_hint = "The archive holds a link, an absolute path or a '..' path; it was not made by bundle create."


class BundleSignatureInvalid(BundleError):
    code = "bundle_signature_invalid"
    http_status = 403
    default_hint = (
        "The signature does not verify against bundle_allowed_signers: check that the signer's public key "
        "is listed there (cm-cli.py config), or make the bundle again with the right key (bundle create --sign KEY)."
    )


class BundleUnsigned(BundleError):
    code = "bundle_unsigned"
    http_status = 403
    default_hint = (
        "require_signed_bundles is true: sign the bundle on the online box (cm-cli.py bundle create --sign KEY) "
        "and list the key in the file named by bundle_allowed_signers."
    )


class BundleBaseMissing(BundleError):
    code = "bundle_base_missing"
    http_status = 409
    default_hint = "Import the base bundle first (cm-cli.py bundle import BASE_FILE), then this increment."


class BundleSourceMissing(BundleError):
    """Create: something the selection needs cannot be collected (a pack's source, a wheel)."""

    code = "bundle_source_missing"
    http_status = 409
    default_hint = "Check network_mode and the sources (cm-cli.py doctor), then run cm-cli.py bundle create again."
