"""Lay a flat wheelhouse out as a PEP 503 "simple" index that pip and uv read through file://.

``<wheelhouse>/simple/index.html`` lists every project; ``<wheelhouse>/simple/<project>/``
(the normalized name: lower case, runs of ``-_.`` as one ``-``) holds that project's files
(hard links to the wheelhouse's own files where the filesystem allows, else copies) and an
``index.html`` linking each one with its ``#sha256=`` fragment. The whole ``simple/`` folder is
built beside the old one and swapped in, so a reader never sees half an index, and it can be
carried alone: ``pip install --index-url file:///<path>/simple <name>``.
"""

from __future__ import annotations

import hashlib
import html
import os
import secrets
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from .wheelhouse import _dist_file

INDEX_DIRNAME = "simple"


@dataclass(frozen=True)
class IndexLayout:
    root: Path  # the simple/ folder
    projects: dict[str, tuple[str, ...]]  # normalized name -> file names

    @property
    def url(self) -> str:
        return self.root.resolve().as_uri()

    def to_dict(self) -> dict[str, object]:
        return {
            "index": str(self.root),
            "index_url": self.url,
            "projects": {k: list(v) for k, v in self.projects.items()},
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _page(title: str, links: list[tuple[str, str]]) -> str:
    body = "\n".join(f'<a href="{html.escape(href, quote=True)}">{html.escape(text)}</a><br>' for href, text in links)
    return (
        '<!DOCTYPE html>\n<html>\n<head><meta name="pypi:repository-version" content="1.0">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _place(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_simple_index(wheelhouse: Path) -> IndexLayout:
    """(Re)build ``<wheelhouse>/simple/`` from the distribution files directly in ``wheelhouse``."""
    wheelhouse = Path(wheelhouse)
    projects: dict[str, list[Path]] = {}
    for entry in sorted(wheelhouse.iterdir()) if wheelhouse.is_dir() else []:
        if entry.is_symlink() or not entry.is_file():
            continue
        dist = _dist_file(entry)
        if dist is not None:
            projects.setdefault(str(canonicalize_name(dist.name)), []).append(entry)
    final = wheelhouse / INDEX_DIRNAME
    work = wheelhouse / f".{INDEX_DIRNAME}-new-{secrets.token_hex(4)}"
    work.mkdir(parents=True)
    try:
        for project, files in sorted(projects.items()):
            folder = work / project
            folder.mkdir()
            links = []
            for src in files:
                _place(src, folder / src.name)
                links.append((f"{urllib.parse.quote(src.name)}#sha256={_sha256(src)}", src.name))
            (folder / "index.html").write_text(_page(f"Links for {project}", links), encoding="utf-8")
        root_links = [(f"{p}/", p) for p in sorted(projects)]
        (work / "index.html").write_text(_page("Simple index", root_links), encoding="utf-8")
        old = None
        if final.exists() or final.is_symlink():
            old = wheelhouse / f".{INDEX_DIRNAME}-old-{secrets.token_hex(4)}"
            os.rename(final, old)
        os.rename(work, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return IndexLayout(final, {p: tuple(f.name for f in files) for p, files in sorted(projects.items())})
