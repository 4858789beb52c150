"""The engines a process runs the pipeline with, checked once at start-up, and the stages it registers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from functools import partial
from typing import Any

import structlog

from service.engines.protocols import Engines
from service.errors import EngineError
from service.settings import Settings
from service.stages.context import StageFn
from service.wiring import roles
from service.workpool import cpu_pool

log = structlog.get_logger(__name__)

EngineFactory = Callable[[Executor], Engines]


def default_registry() -> Mapping[str, StageFn]:
    """The stage functions the service runs; the pipeline's stages register here."""
    from service.stages import registry

    return registry.stages()


_background: set[asyncio.Task[Any]] = set()


def _warmers(engines: Engines) -> list[Callable[[], object]]:
    """What every pool worker loads ahead of the first job: the Whisper model, Kokoro's when it may speak."""
    from service.engines.offline import kokoro_lib, whisper
    from service.engines.offline.voice_choice import OfflineVoices

    warmers: list[Callable[[], object]] = []
    model_dir = getattr(engines.transcriber, "model_dir", None)
    if model_dir is not None:
        warmers.append(partial(whisper.warm, model_dir))
    if isinstance(engines.synthesizer, OfflineVoices):
        warmers.append(partial(kokoro_lib.warm, engines.synthesizer.natural.model_dir))
    return warmers


def _warm_in_background(settings: Settings, executor: Executor, warmers: list[Callable[[], object]]) -> None:
    """Load the models into every worker in the background: start-up does not wait for them."""
    warming = asyncio.create_task(cpu_pool.warm(executor, settings.cpu_workers, warmers))
    warming.add_done_callback(lambda t: t.cancelled() or t.exception() is None or log.warning(
        "engines.warm_failed", error=repr(t.exception())))
    _background.add(warming)
    warming.add_done_callback(_background.discard)


async def load_engines(settings: Settings, executor: Executor, factory: EngineFactory) -> Engines | None:
    """The engines, checked once at start-up; None (and a warning) when one is missing."""
    from service.engines.selection import describe

    try:
        engines = await asyncio.to_thread(factory, executor)
    except EngineError as exc:
        log.warning("engines.unavailable", code=exc.code, error=exc.message)
        return None
    log.info("engines.selected", **describe(engines))
    warmers = _warmers(engines)
    if warmers and roles.runs_stages(settings):  # an API process never transcribes nor speaks
        _warm_in_background(settings, executor, warmers)
    return engines
