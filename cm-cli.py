#!/usr/bin/env python3
"""Shell entry for ComfyUI Offline Manager: every operation from a shell.

Thin on purpose: it keeps this folder off the front of sys.path (so our glob/ can never
shadow the standard library's glob) and hands over to manager.cli.
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
sys.path.append(_here)

from manager.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
