"""Queue events to the browser through ComfyUI's ``PromptServer.instance.send_sync``.

``send_sync`` is thread-safe (it hops onto ComfyUI's loop), so the worker thread can call it.
The translation of queue events to messages lives in ``manager/api/event_forwarder.py``.
"""

from __future__ import annotations

from typing import Any


def comfy_sink(prompt_server: Any):  # noqa: ANN201  (returns a Sink)
    """A sink that hands each message to ``prompt_server.send_sync`` (sid None: every client)."""

    def sink(event: str, data: dict[str, Any], sid: str | None = None) -> None:
        if sid is None:
            prompt_server.send_sync(event, data)
        else:
            prompt_server.send_sync(event, data, sid)

    return sink
