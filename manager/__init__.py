"""ComfyUI Offline Manager: the host-independent core library.

Nothing in this package imports ComfyUI, and importing any module performs no I/O.
"""

__version__ = "0.1.0"
