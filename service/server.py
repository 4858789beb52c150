"""uvicorn's server, telling the app to drain the moment a shutdown signal arrives.

uvicorn on SIGTERM stops accepting connections and then waits for the open ones to finish before it
shuts the app down; progress streams never finish on their own, so without this the process would
keep claiming and running stages until an orchestrator's SIGKILL. `on_exit` runs in the signal
handler: it must only schedule work on the loop (`call_soon_threadsafe`), never do it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import FrameType

import uvicorn


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], object]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)
