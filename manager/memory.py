"""Giving freed memory back to the system (issue 21): after a 59k-pack catalog or list is built,
the heap holds tens of MB that are free but still mapped, counted in the server's RSS."""

from __future__ import annotations

import ctypes


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere nothing).
    Blocking (a few ms on a large heap): call it from a worker thread, after large transient work."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return
    trim(0)
