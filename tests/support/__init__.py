"""What tests (and benchmarks) share: databases, the service under test, and its client."""

from service.client import SseEvent, read_events
from tests.support.database import create_template, fresh_database, scratch_database, with_database
from tests.support.service import (
    JWT_SECRET,
    ServedProcess,
    Service,
    dubbing_command,
    free_port,
    make_settings,
    running_service,
    served,
    wav_bytes,
)

__all__ = [
    "JWT_SECRET", "ServedProcess", "Service", "SseEvent", "create_template", "dubbing_command", "free_port",
    "fresh_database", "make_settings", "read_events", "running_service", "scratch_database", "served", "wav_bytes",
    "with_database",
]
