"""The HTTP door: one route table (``routes.ROUTES``) served by ComfyUI and the standalone server.

``HttpDoor(manager, listen=...)`` holds what handlers share; ``route_defs(api)`` gives aiohttp
RouteDefs; ``EventForwarder`` pushes queue events to a sink; ``standalone.build_app`` serves it
all on its own. Importing this package does no I/O.
"""

from __future__ import annotations

from .door import HttpDoor
from .event_forwarder import EventForwarder
from .routes import PREFIX, ROUTES, Route, route_defs, with_api_mirror

__all__ = ["HttpDoor", "EventForwarder", "PREFIX", "ROUTES", "Route", "route_defs", "with_api_mirror"]
