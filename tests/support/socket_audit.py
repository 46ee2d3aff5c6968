"""Suite-wide socket guard: a ``sys.addaudithook`` on ``socket.connect``/``socket.getaddrinfo``.

Any connection or name lookup outside 127.0.0.0/8 and ::1 is refused (the hook raises, so the
connect never happens) and recorded, and the test that did it fails. Every connect, loopback
included, is recorded so offline-mode tests can assert that none happened at all.
"""

from __future__ import annotations

import ipaddress
import sys
import threading
from dataclasses import dataclass, field


class ForbiddenNetworkAccess(RuntimeError):
    pass


LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback_host(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@dataclass
class SocketAudit:
    connects: list[tuple[str, object]] = field(default_factory=list)  # (kind, address)
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.connects.clear()
            self.violations.clear()

    def inet_connects(self) -> list[object]:
        return [addr for kind, addr in self.connects if kind == "connect"]

    def hook(self, event: str, args: tuple) -> None:
        if event == "socket.connect":
            address = args[1]
            if isinstance(address, (str, bytes)):  # AF_UNIX: local by definition
                return
            host = address[0] if isinstance(address, tuple) and address else address
            with self.lock:
                self.connects.append(("connect", address))
            if not _is_loopback_host(host):
                msg = f"socket.connect to {address!r} (outside loopback)"
                with self.lock:
                    self.violations.append(msg)
                raise ForbiddenNetworkAccess(msg)
        elif event == "socket.getaddrinfo":
            host = args[0]
            if not _is_loopback_host(host):
                msg = f"socket.getaddrinfo for {host!r} (outside loopback)"
                with self.lock:
                    self.violations.append(msg)
                raise ForbiddenNetworkAccess(msg)


AUDIT = SocketAudit()
_installed = False


def install() -> SocketAudit:
    """Install the hook once per process (audit hooks cannot be removed)."""
    global _installed
    if not _installed:
        sys.addaudithook(AUDIT.hook)
        _installed = True
    return AUDIT
