"""Each speaker's own voice, cloned at the TTS provider for a job that asked for it (`voice_cloning: true`).

One clone per speaker per job, shared by all its languages: the first task to get there records the clone
(`db/voice_clones.py`) before asking the provider, makes it from the speaker's cleanest 30-120 s
(`audio/voice_sample.py`), and records its id; the job's other tasks wait for it. A speaker with less than
CLONE_MIN_SECONDS of clean speech, or whose clone the provider wants verified first (`requires_verification`),
keeps a premade voice. Clones are deleted when the job is over (`supervisor/clone_sweep.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import structlog

from service.audio.voice_sample import pick_spans, write_sample
from service.db import voice_clones
from service.domain import InputKind
from service.engines.cloud import elevenlabs
from service.errors import DubbingError, ErrorCode, StageError
from service.providers.http import ProviderClient
from service.stages import stt
from service.stages.context import StageContext
from service.stages.units import Unit

log = structlog.get_logger(__name__)

CLONE_MIN_SECONDS = 30.0
CLONE_MAX_SECONDS = 120.0
_WAIT_STEP = 0.5


async def speaker_clones(ctx: StageContext, client: ProviderClient, speakers: list[dict[str, Any]]) -> dict[str, str]:
    """{speaker: clone voice id} for the speakers that could be cloned."""
    _, units = await stt.load(ctx)
    found: dict[str, str] = {}
    for speaker in speakers:
        voice_id = await _ensure(ctx, client, str(speaker["id"]), units)
        if voice_id is not None:
            found[str(speaker["id"])] = voice_id
    return found


async def _ensure(ctx: StageContext, client: ProviderClient, speaker: str, units: list[Unit]) -> str | None:
    job_id = ctx.task.job_id
    name = elevenlabs.clone_name(str(job_id), speaker)
    clone, mine = await voice_clones.claim(ctx.pool, job_id, speaker, elevenlabs.PROVIDER, name, ctx.lease_owner)
    if not mine:
        return await _wait_for(ctx, clone)
    own = [(u.start, u.end) for u in units if u.speaker == speaker]
    others = [(u.start, u.end) for u in units if u.speaker != speaker]
    spans = pick_spans(own, others, max_seconds=CLONE_MAX_SECONDS)
    if sum(e - s for s, e in spans) < CLONE_MIN_SECONDS:
        await voice_clones.deleted(ctx.pool, clone.id, note=f"less than {CLONE_MIN_SECONDS:g} s of clean speech")
        return None
    sample = ctx.work_dir / f"clone-{speaker}.wav"
    try:
        async with ctx.input_copy(InputKind.VOICE) as voice:
            seconds = await ctx.in_pool(write_sample, voice, spans, str(sample))
        voice_id, verify = await elevenlabs.add_clone(client, name, str(sample),
                                                      f"Dubbing job {job_id}, speaker {speaker} ({seconds:g} s)")
    except BaseException:
        await _undo(ctx, client, clone.id, name)
        raise
    finally:
        await anyio.Path(sample).unlink(missing_ok=True)
    if verify:  # the provider will not speak with it until a person verifies it: no use to a dub
        await voice_clones.created(ctx.pool, clone.id, voice_id, usable=False, note="requires_verification")
        await elevenlabs.delete_clone(client, voice_id)
        await voice_clones.deleted(ctx.pool, clone.id)
        log.warning("clones.requires_verification", speaker=speaker)
        return None
    await voice_clones.created(ctx.pool, clone.id, voice_id, usable=True)
    log.info("clones.created", speaker=speaker, seconds=seconds)
    return voice_id


async def _undo(ctx: StageContext, client: ProviderClient, clone_id: int, name: str) -> None:
    """After a failed or interrupted creation: delete whatever the provider made under the name; if that cannot
    be done now, the row stays `creating` for the sweep."""
    try:
        made = (await elevenlabs.find_clones(client, name)).get(name)
        if made is not None:
            await elevenlabs.delete_clone(client, made)
        await voice_clones.deleted(ctx.pool, clone_id, note="creation failed")
    except (DubbingError, OSError) as exc:
        log.warning("clones.undo_failed", error=str(exc))


async def _wait_for(ctx: StageContext, clone: voice_clones.VoiceClone) -> str | None:
    """Another task of the job is making the clone: its voice id once made (None if it could not be)."""
    waited = 0.0
    current: voice_clones.VoiceClone | None = clone
    while current is not None and current.state == "creating":
        if waited > ctx.settings.lease_seconds:
            raise StageError(ErrorCode.PROVIDER_UNAVAILABLE, "Another task's voice clone did not come",
                             retryable=True)
        await asyncio.sleep(_WAIT_STEP)
        waited += _WAIT_STEP
        current = await voice_clones.get(ctx.pool, clone.id)
    if current is None or current.state != "ready":
        return None
    return current.voice_id
