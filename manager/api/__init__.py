"""The HTTP door: one route table (``routes.ROUTES``) served by ComfyUI and the standalone server.

``Api(manager, listen=...)`` holds what handlers share; ``route_defs(api)`` gives aiohttp
RouteDefs; ``EventForwarder`` pushes queue events to a sink; ``standalone.build_app`` serves it
all on its own. Importing this package does no I/O.
"""

from __future__ import annotations

from .event_forwarder import EventForwarder
from .routes import PREFIX, ROUTES, Route, route_defs, with_api_mirror
from .service import Api

__all__ = ["Api", "EventForwarder", "PREFIX", "ROUTES", "Route", "route_defs", "with_api_mirror"]
