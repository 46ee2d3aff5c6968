"""The fleet mirror: this box's offline stores laid out as plain static files, and a small server.

``build.build_mirror`` writes the local channel, the git mirror (git's dumb HTTP protocol), a
PEP 503 ``simple/`` index over the wheelhouse, the registry archives with static answers to the
registry calls the client makes, the model store and an ``index.html`` into a folder any web
server or object store can serve; ``static_server`` serves it for small sites (docs/fleet.md).
"""
