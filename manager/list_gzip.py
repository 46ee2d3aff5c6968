"""Gzip bodies assembled from pre-compressed pieces (issue 21): a list body's gzip is the
stored deflate pieces of its unchanged chunks plus freshly compressed changed ones, so a changed
installed state costs a CRC-32 pass, not a compression of the whole body. Standard library only:
the HTTP door imports it when a host mounts our routes.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

CHUNK = 64  # fragments per independently compressed piece


def deflate_piece(data: bytes, level: int = 1) -> bytes:
    """``data`` as raw deflate blocks ending on a full flush: pieces made this way concatenate
    into one valid deflate stream (no back-reference crosses a piece, none is the final block)."""
    comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush(zlib.Z_FULL_FLUSH)


_FINAL_BLOCK = zlib.compressobj(1, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, mtime 0, OS unknown


def gzip_pieces(data: bytes, pieces: Sequence[bytes]) -> bytes:
    """A gzip member of ``data``, whose deflate stream is ``pieces`` (made by ``deflate_piece``
    of consecutive parts of ``data``); the CRC-32 is the only pass over the plain bytes."""
    trailer = (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little") + (len(data) & 0xFFFFFFFF).to_bytes(4, "little")
    return b"".join((_GZIP_HEADER, *pieces, _FINAL_BLOCK, trailer))


def chunk_texts(fragments: Sequence[bytes], start: int = 0, stop: int | None = None) -> list[bytes]:
    """The comma-joined text of each chunk of ``CHUNK`` fragments in ``[start, stop)`` (a chunk
    after the first begins with its comma: the texts concatenate to ``b",".join(fragments)``)."""
    stop = len(fragments) if stop is None else stop
    out = []
    for i in range(start - start % CHUNK, stop, CHUNK):
        text = b",".join(fragments[i : i + CHUNK])
        out.append(b"," + text if i else text)
    return out
