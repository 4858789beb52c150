"""A rough time remaining for a task, from how fast its progress has moved since this process took it.

Rough on purpose: the stages share the progress bar equally though they do not take equal time, so the
estimate settles as the task goes on. Nothing is said until there is something to go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

_MIN_PROGRESS = 0.02  # of the whole task, moved since the start here
_MIN_SECONDS = 1.0


@dataclass
class Pace:
    start_progress: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def remaining_seconds(self, progress: float) -> float | None:
        """Seconds left at the pace so far, for a task now at `progress` (0..1 of the whole task)."""
        moved, elapsed = progress - self.start_progress, time.monotonic() - self.started
        if moved < _MIN_PROGRESS or elapsed < _MIN_SECONDS:
            return None
        return round(elapsed * max(1.0 - progress, 0.0) / moved, 1)
