"""``index.html`` of a mirror: what it holds, each file with its size, and how a box uses it."""

from __future__ import annotations

import html
from collections.abc import Iterable

from .tree import FileEntry

_TITLES = {
    "channel": "Channel files (channel_url)",
    "git": "Git repositories (dumb HTTP; [mirrors] github = <this URL>/git/github.com)",
    "pypi": "Python distributions (PEP 503 index: [mirrors] pypi = <this URL>/simple)",
    "registry": "Registry archives ([mirrors] registry = <this URL>/registry)",
    "models": "Models (model_store = <this URL>/models)",
}


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _shown(entry: FileEntry) -> bool:
    """Files a person looks for: not git's internals, not the generated index pages."""
    if entry.section == "git":
        return False
    return not entry.rel.endswith("index.html") and not entry.rel.startswith("registry/nodes/")


def render_index(files: Iterable[FileEntry], *, repos: Iterable[str], host: str) -> bytes:
    entries = sorted(files, key=lambda e: e.rel)
    parts = [
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>ComfyUI offline mirror</title></head>\n<body>',
        f"<h1>ComfyUI offline mirror</h1>\n<p>Built by cm-cli.py mirror build DIR on {html.escape(host)}. "
        "Point a box in private mode at it with one [mirrors] map (docs/fleet.md).</p>",
    ]
    for section, title in _TITLES.items():
        mine = [e for e in entries if e.section == section]
        total = sum(e.size for e in mine)
        parts.append(f"<h2>{html.escape(title)}</h2>\n<p>{len(mine)} files, {human_size(total)}</p>\n<ul>")
        if section == "git":
            parts += [f'<li><a href="git/{html.escape(r)}.git/">{html.escape(r)}</a></li>' for r in repos]
        else:
            parts += [
                f'<li><a href="{html.escape(e.rel)}">{html.escape(e.rel)}</a> {human_size(e.size)}</li>'
                for e in mine
                if _shown(e)
            ]
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts).encode()
