"""The uv backend: ``uv pip install --python <python> ...`` (pip need not exist in that python)."""

from __future__ import annotations

from .base import Backend, InstallArgs


class UvBackend(Backend):
    name = "uv"

    def install_command(self, args: InstallArgs) -> list[str]:
        cmd = [*self.choice.command, "pip", "install", "--python", self.choice.python, "--no-config"]
        if args.offline:
            cmd.append("--offline")
        if args.no_index:
            cmd.append("--no-index")
        elif args.index_url:
            cmd += ["--index-url", args.index_url]
        for url in args.extra_index_urls:
            cmd += ["--extra-index-url", url]
        for link in args.find_links:
            cmd += ["--find-links", link]
        for host in args.trusted_hosts:
            cmd += ["--allow-insecure-host", host]
        return cmd + list(args.requirements)
