"""What tests (and benchmarks) share: databases, the service under test, and its client."""

from service.client import SseEvent, read_events
from tests.support.database import (
    admin_url_of,
    create_template,
    database_name,
    fresh_database,
    scratch_database,
    with_database,
)
from tests.support.service import (
    JWT_SECRET,
    ServedProcess,
    Service,
    dubbing_command,
    free_port,
    kokoro_dir,
    make_settings,
    running_service,
    served,
    wav_bytes,
    whisper_base_dir,
)

__all__ = [
    "JWT_SECRET", "ServedProcess", "Service", "SseEvent", "admin_url_of", "create_template", "database_name",
    "dubbing_command", "free_port", "fresh_database", "kokoro_dir", "make_settings", "read_events", "running_service",
    "scratch_database", "served", "wav_bytes", "whisper_base_dir", "with_database",
]
