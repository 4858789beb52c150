"""A media job's separation: once per job, by the task that holds the transcript's lease (`stt.py`), beside the
transcription; every language then reads the stems.

The soundtrack is taken out of the upload at 48 kHz mono, its voice isolated (DeepFilterNet3 offline in the
process pool; ElevenLabs' voice isolator when ELEVENLABS_API_KEY is set), and the background made from what remains
with the residue under the transcript's speech masked (`audio/separation.py`). Both are published as the job's
`isolated_voice` and `background_stem` artifacts, which `StageContext.input_copy` hands the later stages as the
job's voice and background. Each step's file lands atomically in the job's scratch folder, so an attempt that
takes over after a crash starts from what is already there.

Speech recognition reads the original mix, not the isolated voice: on LibriVox speech over a music-like bed
Whisper did as well or better on the mix (docs/media.md, bench/separation.py). Voice activity (pauses, unit edges,
the sync measurement) reads the isolated voice, where the bed cannot pass for speech.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import anyio
import structlog

from service import scratch
from service.audio import separation
from service.audio.media_files import extract_soundtrack
from service.domain import ArtifactKind
from service.stages.context import StageContext, run_all
from service.stages.publish import publish

log = structlog.get_logger(__name__)

MIX = "soundtrack-48k.wav"
VOICE = "isolated_voice.wav"
BACKGROUND = "background_stem.wav"
# DeepFilterNet isolates a long soundtrack in parts of about this length, several pool workers at once.
PART_SECONDS = 120.0


def folder(ctx: StageContext) -> Path:
    return scratch.source_dir(ctx.settings.scratch_dir, ctx.task.job_id)


async def soundtrack(ctx: StageContext, media: str) -> str:
    """The upload's soundtrack at separation's rate, mono: what is recognised and separated."""
    path = folder(ctx) / MIX
    if not await anyio.Path(path).exists():
        await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        await ctx.in_pool(extract_soundtrack, media, str(path), separation.RATE, 1)
    return str(path)


async def isolate(ctx: StageContext, mix: str, transcribed: asyncio.Event | None = None) -> str:
    """The isolated voice of `mix` (kept from an earlier attempt when it finished). Offline, while `transcribed`
    is not set (speech recognition holds a pool worker) one part at a time, then in every worker."""
    path = folder(ctx) / VOICE
    if await anyio.Path(path).exists():
        return str(path)
    isolator = ctx.engines.isolator if ctx.engines is not None else None
    if isolator is not None:  # the cloud's voice isolator: the mix goes up, the voice comes back
        usage: dict[str, float] = {}
        await isolator.isolate(mix, str(path), usage=usage)
        await ctx.record_usage(usage)
    else:
        await _isolate_in_parts(ctx, mix, path, transcribed)
    log.info("separation.voice_isolated", engine=isolator.name if isolator is not None else "deepfilternet3")
    return str(path)


async def _isolate_in_parts(ctx: StageContext, mix: str, path: Path, transcribed: asyncio.Event | None) -> None:
    """DeepFilterNet in parts of about PART_SECONDS (each with its pre-roll: `audio/separation.isolate_part`): one
    part at a time until `transcribed` is set (the recogniser, submitted at the same moment, is not queued behind
    them), then as many at once as the pool has workers; each part's file is kept for an attempt that takes over."""
    bounds = await ctx.in_pool(separation.part_bounds, mix, PART_SECONDS)
    parts = [folder(ctx) / f"isolated_voice.part{index}of{len(bounds)}.wav" for index in range(len(bounds))]
    pending = iter(zip(parts, bounds, strict=True))

    async def lane(waits: bool) -> None:
        if waits and transcribed is not None:
            await transcribed.wait()
        for part, (start, end) in pending:
            if not await anyio.Path(part).exists():
                await ctx.in_pool(separation.isolate_part, mix, str(part), start, end)

    lanes = max(1, min(ctx.settings.cpu_workers, len(bounds)))
    await run_all([lane(index > 0) for index in range(lanes)])
    if len(parts) == 1:
        await anyio.Path(parts[0]).rename(path)
        return
    await ctx.in_pool(separation.join_parts, [str(part) for part in parts], str(path))
    for part in parts:
        await anyio.Path(part).unlink(missing_ok=True)


async def publish_stems(ctx: StageContext, mix: str, voice: str, speech: Sequence[tuple[float, float]]) -> None:
    """The background (mix minus the voice, masked under `speech`), then both stems as the job's artifacts."""
    background = folder(ctx) / BACKGROUND
    if not await anyio.Path(background).exists():
        await ctx.in_pool(separation.background, mix, voice, list(speech), str(background))
    await publish(ctx, ArtifactKind.ISOLATED_VOICE, voice, VOICE)
    await publish(ctx, ArtifactKind.BACKGROUND_STEM, str(background), BACKGROUND)
