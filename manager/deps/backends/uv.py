"""The uv backend: ``uv pip install --python <python> ...`` (pip need not exist in that python)."""

from __future__ import annotations

from .base import Backend, InstallArgs


class UvBackend(Backend):
    name = "uv"

    def install_command(self, args: InstallArgs) -> list[str]:
        cmd = [*self.choice.command, "pip", "install", "--python", self.choice.python, "--no-config"]
        if args.offline:
            cmd.append("--offline")
        return cmd + args.source_flags(trusted_flag="--allow-insecure-host") + list(args.requirements)
