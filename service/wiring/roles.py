"""What one `dubbing serve` process does: `all` (today's single process), `api` (HTTP and progress streams,
never a stage) or `worker` (stages, and only `/healthz` and `/readyz` over HTTP)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from service.routes import health
from service.routes import table as api_routes
from service.settings import Settings

ROLES = ("all", "api", "worker")
BACKENDS = ("postgres", "dramatiq")
OFFLINE_VOICES = ("kokoro", "espeak", "auto")


def problem(settings: Settings) -> str | None:
    """Why this process cannot start as configured, in words for the person starting it."""
    if settings.role not in ROLES:
        return f"--role must be one of {', '.join(ROLES)}, not {settings.role!r}"
    if settings.queue_backend not in BACKENDS:
        return f"QUEUE_BACKEND must be one of {', '.join(BACKENDS)}, not {settings.queue_backend!r}"
    if settings.offline_voice not in OFFLINE_VOICES:
        return f"OFFLINE_VOICE must be one of {', '.join(OFFLINE_VOICES)}, not {settings.offline_voice!r}"
    if settings.role != "all" and not settings.database_url:
        return (f"--role {settings.role} needs DATABASE_URL: API and worker processes share one PostgreSQL, and "
                "the embedded database belongs to a single process (use --role all, or set DATABASE_URL)")
    return None


def serves_api(settings: Settings) -> bool:
    return settings.role != "worker"


def runs_stages(settings: Settings) -> bool:
    return settings.role != "api"


def routes(settings: Settings) -> list[BaseRoute]:
    """The whole API, or for a worker only its probes."""
    if serves_api(settings):
        return api_routes.table(settings)
    return [Route("/healthz", health.healthz, methods=["GET"]), Route("/readyz", health.readyz, methods=["GET"])]
