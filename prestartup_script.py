"""ComfyUI runs this before it imports any custom-node pack (main.py ``execute_prestartup_script``).

It applies the operations the Offline Manager scheduled for this start
(``<manager dir>/startup/pending.json``: uninstall, disable or enable a pack, restore a
snapshot). With nothing pending it costs one ``stat`` and imports nothing of ours. It never
raises, never touches the network, and never puts our folder on ``sys.path`` (our ``glob/``
folder must not shadow the standard library's ``glob``): the package is loaded by path, as
ComfyUI loads extensions, under a private name that is removed again afterwards.
"""

import os
import sys

_PRIVATE = "_offline_manager_prestartup"


def _pending_file(here: str) -> str:
    """Where the Manager keeps pending operations (the same rule as glob/comfy_host.py)."""
    fp = sys.modules.get("folder_paths")
    manager_dir = ""
    if fp is not None:
        getter = getattr(fp, "get_system_user_directory", None)
        try:
            if callable(getter):
                manager_dir = getter("manager")
            else:
                manager_dir = os.path.join(fp.get_user_directory(), "__manager")
        except Exception:  # an unusual folder_paths: fall back to the default tree layout
            manager_dir = ""
    if not manager_dir:
        manager_dir = os.path.join(os.path.dirname(os.path.dirname(here)), "user", "__manager")
    return os.path.join(manager_dir, "startup", "pending.json")


def _apply(here: str) -> None:
    import importlib
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        _PRIVATE, os.path.join(here, "__init__.py"), submodule_search_locations=[here]
    )
    package = importlib.util.module_from_spec(spec)  # not executed: only the parent of our subpackages
    sys.modules[_PRIVATE] = package
    try:
        prestartup = importlib.import_module(_PRIVATE + ".glob.prestartup")
        prestartup.run(sys.modules.get("folder_paths"), here)
    finally:
        for name in [n for n in sys.modules if n == _PRIVATE or n.startswith(_PRIVATE + ".")]:
            del sys.modules[name]


def _main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.isfile(_pending_file(here)):
        return
    _apply(here)


try:
    _main()
except Exception:  # ComfyUI's start goes on whatever happens here
    import logging

    logging.getLogger("offline_manager").exception(
        "[offline-manager] prestartup failed; the operations scheduled for this start were not applied"
    )
