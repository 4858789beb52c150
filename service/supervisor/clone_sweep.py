"""No voice clone outlives its job: delete the clones of jobs that are over, and the ones a dead process left.

Runs at start-up (so a clone whose process was killed mid-job, and whose job then ended, is found at once) and
every SWEEP_SECONDS after, while the TTS engine is one that clones (ElevenLabs). A clone recorded without its
voice id (the process died between asking the provider and recording the answer) is looked up by its name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import structlog

from service.db import voice_clones
from service.engines.cloud import elevenlabs
from service.engines.protocols import Engines
from service.errors import DubbingError
from service.providers.http import ProviderClient
from service.supervisor.owners import is_dead_local

log = structlog.get_logger(__name__)

SWEEP_SECONDS = 15.0


async def sweep(pool: asyncpg.Pool, client: ProviderClient) -> int:
    """Delete at the provider, and mark deleted, every clone whose job is over or whose creator died; returns
    how many were deleted (clones that cannot be deleted now are tried again next sweep)."""
    finished = await voice_clones.of_finished_jobs(pool)
    orphans = [c for c in await voice_clones.creating(pool) if is_dead_local(c.owner)]
    todo = {c.id: c for c in [*finished, *orphans]}
    if not todo:
        return 0
    named: dict[str, str] | None = None
    done = 0
    for clone in todo.values():
        try:
            voice_id = clone.voice_id
            if voice_id is None:
                if named is None:
                    named = await elevenlabs.find_clones(client)
                voice_id = named.get(clone.name)
            if voice_id is not None:
                await elevenlabs.delete_clone(client, voice_id)
            await voice_clones.deleted(pool, clone.id)
            done += 1
        except DubbingError as exc:
            log.warning("clones.delete_failed", clone=clone.id, error=str(exc))
    if done:
        log.info("clones.deleted", count=done)
    return done


def cloning_client(engines: Engines | None) -> ProviderClient | None:
    synthesizer = engines.synthesizer if engines is not None else None
    return synthesizer.client if isinstance(synthesizer, elevenlabs.ElevenLabsSynthesizer) else None


@contextlib.asynccontextmanager
async def running(pool: asyncpg.Pool, engines: Engines | None) -> AsyncIterator[None]:
    """The sweep, for as long as the service runs (nothing when the TTS engine does not clone)."""
    client = cloning_client(engines)
    if client is None:
        yield
        return

    async def loop() -> None:
        while True:
            try:
                await sweep(pool, client)
            except (DubbingError, asyncpg.PostgresError, OSError) as exc:
                log.warning("clones.sweep_failed", error=str(exc))
            await asyncio.sleep(SWEEP_SECONDS)

    task = asyncio.create_task(loop(), name="clone-sweep")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):  # a last sweep for the jobs that ended while stopping
            await asyncio.wait_for(sweep(pool, client), 10)
