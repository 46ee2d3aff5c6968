"""One JSON document read member by member (issue 21): the elements of the list under one key
of the top-level object, or the top-level object's (key, value) pairs, decoded one at a time.

``json.loads`` of a 59k-pack channel file builds every object of the document before the first
record is made; the few strings the records keep then sit among the document's freed objects and
pin their memory pages (~80 MB of a server's RSS at 59k packs). Decoding one member at a time
lets each member's garbage be reused by the next, so what is kept packs densely.

Only well-formed, unambiguous documents are streamed: anything else (not an object, the key
missing, repeated or not holding a list, a repeated top-level key, a syntax error) raises
``NotStreamable``, and the caller reads the file with ``json.loads`` as before, so results and
error messages stay exactly those of ``json.loads``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")
scanstring = json.decoder.scanstring  # type: ignore[attr-defined]  # the C string scanner json.loads uses


class NotStreamable(Exception):
    """The document needs ``json.loads``: malformed, or shaped in a way streaming cannot mirror."""


def _text(data: bytes) -> str:
    try:
        return data.decode(json.detect_encoding(data), "surrogatepass")
    except (UnicodeDecodeError, LookupError) as exc:
        raise NotStreamable(str(exc)) from None


def members(data: bytes, key: str | None) -> Iterator[Any]:
    """With ``key``: each element of the list under ``key``; without: each (name, value) pair of
    the top-level object, in document order. Raises ``NotStreamable`` (possibly after yielding)."""
    text = _text(data)
    scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
    ws = _WS.match

    def value_at(i: int) -> tuple[Any, int]:
        try:
            return scan(text, i)  # type: ignore[no-any-return]
        except (StopIteration, ValueError, RecursionError) as exc:
            raise NotStreamable(f"no value at {i}") from exc

    def expect(i: int, char: str) -> int:
        i = ws(text, i).end()  # type: ignore[union-attr]
        if text[i : i + 1] != char:
            raise NotStreamable(f"expected {char!r} at {i}")
        return i + 1

    i = expect(0, "{")
    seen: set[str] = set()
    found = False
    i = ws(text, i).end()  # type: ignore[union-attr]
    if text[i : i + 1] == "}":
        raise NotStreamable("empty object")  # json.loads says what is missing
    while True:
        i = expect(i, '"')
        try:
            name, i = scanstring(text, i, True)
        except ValueError as exc:
            raise NotStreamable(str(exc)) from None
        if name in seen:
            raise NotStreamable("repeated key")  # json.loads keeps the last one
        seen.add(name)
        i = ws(text, expect(i, ":")).end()  # type: ignore[union-attr]
        if key is None:
            value, i = value_at(i)
            yield name, value
        elif name == key:
            if text[i : i + 1] != "[":
                raise NotStreamable(f"'{key}' is not a list")
            found = True
            i = ws(text, i + 1).end()  # type: ignore[union-attr]
            if text[i : i + 1] == "]":
                i += 1
            else:
                while True:
                    value, i = value_at(i)
                    yield value
                    i = ws(text, i).end()  # type: ignore[union-attr]
                    sep = text[i : i + 1]
                    i = ws(text, i + 1).end()  # type: ignore[union-attr]
                    if sep == "]":
                        break
                    if sep != ",":
                        raise NotStreamable(f"expected ',' or ']' at {i}")
        else:
            _skipped, i = value_at(i)
        i = ws(text, i).end()  # type: ignore[union-attr]
        sep = text[i : i + 1]
        i += 1
        if sep == "}":
            break
        if sep != ",":
            raise NotStreamable(f"expected ',' or '}}' at {i}")
    if ws(text, i).end() != len(text) or (key is not None and not found):  # type: ignore[union-attr]
        raise NotStreamable("extra data, or the key is missing")
