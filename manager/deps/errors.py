"""Coded errors of dependency handling (registered through ``ManagerError`` subclassing)."""

from __future__ import annotations

from ..errors import ManagerError


class DepsRequirementInvalid(ManagerError):
    """A requirements.txt line that cannot be parsed or uses an option we do not run."""

    code = "deps_requirement_invalid"
    http_status = 400


class DepsSourceNotAllowed(ManagerError):
    """A requirement or option points at a package source outside the allowed ones."""

    code = "deps_source_not_allowed"
    http_status = 403
    default_hint = (
        "Add the index URL prefix to allowed_pip_sources (or set allow_external_pip = true) "
        "in the [security] section of config.ini, or ask the pack author to publish on an index."
    )


class DepsListInvalid(ManagerError):
    """pip_overrides.json or pip_blacklist.list cannot be read; the file is left untouched."""

    code = "deps_list_invalid"
    http_status = 500


class DepsMissingWheels(ManagerError):
    """Offline: the wheelhouse cannot satisfy the requirements (found before running any installer)."""

    code = "deps_missing_wheels"
    http_status = 409


class DepsInstallerUnavailable(ManagerError):
    """Neither uv nor pip runs with the configured python (or the python itself does not run)."""

    code = "deps_installer_unavailable"
    http_status = 500


class DepsInstallFailed(ManagerError):
    """uv or pip ran and failed; ``details`` hold the command and the last output lines."""

    code = "deps_install_failed"
    http_status = 500
