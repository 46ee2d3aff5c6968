"""Coded refusals of the fleet mirror (registered through ``ManagerError`` subclassing)."""

from __future__ import annotations

from ..errors import ManagerError


class MirrorTargetInvalid(ManagerError):
    """``mirror build DIR``: DIR cannot hold a mirror (a file, a link, someone else's folder)."""

    code = "mirror_target_invalid"
    http_status = 400
    default_hint = (
        "Name a new folder, or one an earlier `cm-cli.py mirror build DIR` made (it holds .cm-mirror.json); "
        "nothing was written."
    )


class MirrorNotBuilt(ManagerError):
    """``mirror serve DIR``: DIR is not a built mirror."""

    code = "mirror_not_built"
    http_status = 404
    default_hint = "Build it first: cm-cli.py mirror build DIR (on the box whose stores it lays out)."


class MirrorBuildFailed(ManagerError):
    """A store could not be laid out (git failed on a repository); the old mirror is unchanged."""

    code = "mirror_build_failed"
    http_status = 500
    default_hint = "Fix the store named in details (or remove it), then run cm-cli.py mirror build DIR again."
