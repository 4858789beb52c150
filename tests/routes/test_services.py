"""service/routes/services.py: the one typed `Services` object the lifespan builds, and `services(request)`, the
one way a route reaches it."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from service.app import create_app
from service.routes.services import Services, services
from service.settings import Settings
from service.stages.context import StageServices
from service.supervisor.supervisor import Supervisor
from service.wiring.backends import NotifyOnly
from tests.support import running_service


def request_to(app: object) -> Request:
    return Request({"type": "http", "app": app, "method": "GET", "path": "/", "headers": []})


async def test_a_route_gets_the_services_the_lifespan_started(settings: Settings) -> None:
    async with running_service(settings, registry={}) as svc:
        found = services(request_to(svc.app))
        assert found is svc.app.state.services
        assert isinstance(found, Services) and isinstance(found, StageServices)  # the stages get the same core
        assert found.settings.public_base_url == svc.settings.public_base_url
        assert await found.db.pool.fetchval("SELECT 1") == 1
        assert isinstance(found.dispatch, NotifyOnly)  # QUEUE_BACKEND=postgres: the job's NOTIFY is the dispatch
        assert isinstance(found.stage_loop, Supervisor) and found.stage_loop.running
        assert found.engines is None  # a registry given: no engines loaded
        response = await svc.client.get("/healthz")
        assert response.status_code == 200


async def test_without_a_stage_loop_the_services_say_so(settings: Settings) -> None:
    async with running_service(settings, registry={}, run_supervisor=False) as svc:
        assert services(request_to(svc.app)).stage_loop is None


def test_before_the_lifespan_a_route_is_told_clearly(settings: Settings) -> None:
    app = create_app(settings, registry={})
    with pytest.raises(AssertionError, match="lifespan has not run"):
        services(request_to(app))
