"""The pip backend: ``<python> -m pip install ...``; also ``pip download`` for filling a wheelhouse."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .base import Backend, InstallArgs

_QUIET = ["--no-input", "--disable-pip-version-check", "--progress-bar", "off"]


def _sources(args: InstallArgs) -> list[str]:
    return args.source_flags(trusted_flag="--trusted-host")


class PipBackend(Backend):
    name = "pip"

    def install_command(self, args: InstallArgs) -> list[str]:
        return [*self.choice.command, "install", *_QUIET, *_sources(args), *args.requirements]

    def download_command(
        self,
        args: InstallArgs,
        dest: Path,
        *,
        requirement_files: Sequence[Path] = (),
        python_version: str | None = None,
        platforms: Sequence[str] = (),
    ) -> list[str]:
        """``pip download`` into ``dest``; with a target python version or platform only wheels
        are fetched (pip cannot build sdists for another interpreter)."""
        cmd = [*self.choice.command, "download", *_QUIET, "--dest", str(dest), *_sources(args)]
        if python_version or platforms:
            cmd += ["--only-binary", ":all:"]
            if python_version:
                cmd += ["--python-version", python_version]
            for plat in platforms:
                cmd += ["--platform", plat]
        for req_file in requirement_files:
            cmd += ["--requirement", str(req_file)]
        return cmd + list(args.requirements)
