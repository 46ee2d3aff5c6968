"""Offline bundles: one verifiable file carrying channel files, pack sources, wheels and models
across the air gap (docs/bundles.md). The doors call these functions with the Manager."""

from __future__ import annotations

from .coverage import BundleCoverage, ImportedBundle, coverage, imported_bundles
from .create import CreateResult, Selection, create_bundle
from .importer import ImportPreview, ImportResult, StoreChange, import_bundle, preview_import
from .manifest import Manifest
from .verify import BundleReport, verify_bundle

__all__ = [
    "BundleCoverage",
    "BundleReport",
    "CreateResult",
    "ImportPreview",
    "ImportResult",
    "ImportedBundle",
    "Manifest",
    "Selection",
    "StoreChange",
    "coverage",
    "create_bundle",
    "import_bundle",
    "imported_bundles",
    "preview_import",
    "verify_bundle",
]
