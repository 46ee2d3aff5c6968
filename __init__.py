"""ComfyUI entry point: ComfyUI imports this folder from custom_nodes/.

Only the web directory and empty node maps live here; the glue in glob/ registers our
routes when ComfyUI's server is present. Any failure is logged once and ComfyUI goes on.
"""

import time as _time

_IMPORTED_AT = _time.perf_counter()  # our whole share of ComfyUI's start is reported from here
_CPU_AT = _time.thread_time()  # and the CPU it took (what other processes' load does not stretch)
WEB_DIRECTORY = "./js"
NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
__all__ = ["WEB_DIRECTORY", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]


def _start() -> None:
    try:
        from .glob import bootstrap
    except Exception:  # an import failure of ours must never stop ComfyUI's start
        import logging
        import os

        here = os.path.dirname(os.path.abspath(__file__))
        logging.getLogger("offline_manager").exception(
            "[offline-manager] could not load its ComfyUI glue; ComfyUI continues without it. The same operations "
            "work from the shell meanwhile: python %s --comfyui %s serve",
            os.path.join(here, "cm-cli.py"),
            os.path.dirname(os.path.dirname(here)),
        )
        return
    bootstrap.start(__name__, __file__, _IMPORTED_AT, _CPU_AT)


if __package__:  # imported as a package by ComfyUI (or a stand-in host), not run as a script
    _start()
