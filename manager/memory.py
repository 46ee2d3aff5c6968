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


M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(count: int = 2) -> bool:
    """Let at most ``count`` malloc arenas serve every thread of this process (glibc; elsewhere
    nothing). Each worker thread otherwise gets an arena of its own, and memory one frees cannot
    serve another: a 59k-pack server kept ~60-80 MB more RSS that way. For a process of our own
    (``cm-cli.py serve``), called before its threads start; never inside a host like ComfyUI."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_ARENA_MAX, count))
