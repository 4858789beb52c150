"""What the routes work with: the process's `Services`, built once at start-up (service/wiring), and the one way
a route reaches them."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from starlette.requests import Request

from service.db.connection import DatabaseLocation
from service.engines.capabilities import LanguageCheck
from service.retention_schedule import RetentionSchedule
from service.stages.context import StageServices
from service.supervisor.dramatiq_worker import DramatiqWorker
from service.supervisor.supervisor import Supervisor

if TYPE_CHECKING:  # auth reads the verifier through `services`
    from service.routes.auth import TokenVerifier


class JobDispatch(Protocol):
    """What `POST /v1/jobs` calls once a job is committed (QUEUE_BACKEND decides what that sets in motion)."""

    async def job_created(self, job_id: UUID) -> None: ...


@dataclass(frozen=True, eq=False)
class Services(StageServices):
    """Everything one `dubbing serve` process started: the stages' services and what only HTTP needs."""

    database: DatabaseLocation
    verifier: TokenVerifier
    language_check: LanguageCheck | None
    probe_lane: Executor  # a few threads for probing uploads, never behind the pipeline's CPU work
    dispatch: JobDispatch
    stage_loop: Supervisor | DramatiqWorker | None  # None in --role api (and in tests that run no stages)
    retention: RetentionSchedule | None  # None when RETENTION_INTERVAL_MINUTES is 0


def services(request: Request) -> Services:
    """The process's services, for a route handling `request`."""
    found = getattr(request.app.state, "services", None)  # State raises AttributeError for what was never set
    assert isinstance(found, Services), "the app's lifespan has not run"
    return found
