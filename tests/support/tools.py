"""The outside tools the suite drives (git, uv, chromium, openssl, strace, unshare, ip, nginx): found, or
the test FAILS.

A missing tool is an installation error, never a reason to skip in silence: ``require(name)``
returns the tool's path or fails the test with the command that installs it (the same commands
``scripts/test.sh`` runs on a fresh machine).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

INSTALL = {
    "git": "apt-get install git   (scripts/test.sh installs it)",
    "uv": ".venv/bin/python -m pip install -e '.[test]'   (the test extra installs uv next to the test "
    "interpreter; scripts/test.sh does it)",
    "chromium": "apt-get install chromium   (scripts/test.sh installs it; or set CM_CHROMIUM to a chromium "
    "binary; never `playwright install`)",
    "openssl": "apt-get install openssl",
    "strace": "apt-get install strace   (scripts/test.sh installs it)",
    "unshare": "apt-get install util-linux   (and run the tests as root: unshare -n needs it)",
    "ip": "apt-get install iproute2   (scripts/test.sh installs it)",
    "nginx": "apt-get install nginx   (scripts/test.sh installs it; the fleet mirror tests serve with it)",
}


def chromium_path() -> str:
    """The chromium the browser tests drive: ``$CM_CHROMIUM``, else /usr/bin/chromium."""
    return os.environ.get("CM_CHROMIUM", "/usr/bin/chromium")


def find(name: str) -> str | None:
    """The tool's path, or None."""
    if name == "chromium":
        path = chromium_path()
        return path if Path(path).is_file() else None
    if name == "uv":
        from .wheels import find_uv

        return find_uv()
    if name == "nginx":  # /usr/sbin is not on every user's PATH
        return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    return shutil.which(name)


def missing_message(name: str) -> str:
    where = f" (looked for {chromium_path()})" if name == "chromium" else ""
    return f"{name} is not installed{where}; install it with: {INSTALL[name]}"


def require(name: str) -> str:
    """The tool's path; when it is missing the current test FAILS with the install command."""
    path = find(name)
    if path is None:
        import pytest

        pytest.fail(missing_message(name), pytrace=False)
    return path
