"""A media job's own part of mixing and exporting: the bed the dub is mixed over (the separated background inside
the dubbed window, the original soundtrack outside it), the dub at the original voice's loudness, and the
dubbed video (the picture copied, the dub first, the original second, the captions as a subtitle track).
"""

from __future__ import annotations

import asyncio

import anyio

from service import languages, scratch
from service.audio.loudness import measure_loudness
from service.audio.media_files import (
    CONTAINERS,
    VideoTracks,
    dub_track_name,
    encode_dub_track,
    extract_soundtrack,
    mux_video,
    scale_in_place,
    windowed_bed,
)
from service.audio.wavfiles import at_rate
from service.db.artifacts import StoredArtifact
from service.db.jobs import MediaSpec
from service.domain import ArtifactKind, BackgroundMode, InputKind
from service.stages.context import StageContext
from service.stages.publish import publish


def _spec(ctx: StageContext) -> MediaSpec:
    assert ctx.job.media is not None
    return ctx.job.media


async def bed(ctx: StageContext) -> str:
    """The bed at the working rate, made once per job."""
    media = _spec(ctx)
    rate = ctx.settings.sample_rate
    folder = scratch.source_dir(ctx.settings.scratch_dir, ctx.task.job_id)
    await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
    made = folder / f"bed-{media.background}-{rate}.wav"
    if await anyio.Path(made).exists():
        return str(made)
    original = folder / f"original-{rate}.wav"

    async def soundtrack() -> None:
        if not await anyio.Path(original).exists():
            async with ctx.input_copy(InputKind.MEDIA) as upload:
                await ctx.in_pool(extract_soundtrack, upload, str(original), rate, None)

    if media.background == BackgroundMode.KEEP:
        async with ctx.input_copy(InputKind.BACKGROUND) as separated:  # at 48 kHz already, unless RATE differs
            # The original's soundtrack and the stem at the working rate are independent: side by side.
            stem, _ = await asyncio.gather(ctx.in_pool(at_rate, separated, rate, str(folder), f"background-{rate}"),
                                           soundtrack())
            await ctx.in_pool(windowed_bed, str(original), stem, media.start_seconds, media.end_seconds, str(made))
    else:
        await soundtrack()
        await ctx.in_pool(windowed_bed, str(original), None, media.start_seconds, media.end_seconds, str(made))
    return str(made)


async def match_voice_level(ctx: StageContext, voice_track: str) -> float:
    """Bring the dubbed voice track to the original voice's loudness (the isolated voice's), so that the master
    can keep the bed at its own level (no loudness normalisation: `MixSettings.target_lufs` None). Returns the
    gain applied in dB (0 when either is silent)."""
    async with ctx.input_copy(InputKind.VOICE) as isolated:
        original = await ctx.in_pool(measure_loudness, isolated)
    dubbed = await ctx.in_pool(measure_loudness, voice_track)
    if original.integrated_lufs is None or dubbed.integrated_lufs is None:
        return 0.0
    gain = original.integrated_lufs - dubbed.integrated_lufs
    await ctx.in_pool(scale_in_place, voice_track, gain)
    return round(gain, 2)


def video_name(ctx: StageContext) -> str:
    container = _spec(ctx).container or "mp4"
    return f"dubbed{CONTAINERS[container].extension}"


def makes_video(ctx: StageContext) -> bool:
    media = ctx.job.media
    return media is not None and media.has_video and media.container is not None


async def dub_track(ctx: StageContext, master_wav: str) -> tuple[str, str]:
    """The dubbed master encoded in the video's dub codec (AAC for MP4/MOV, Opus for WebM/MKV), so that the
    remux only copies streams; exporting starts it beside the sync measurement and the uploads. (path, codec)"""
    container = _spec(ctx).container or "mp4"
    if CONTAINERS[container].dub_codec == "opus" and ctx.settings.web_format == "opus":
        return str(ctx.work_dir / "master.opus"), "opus"  # the web copy is that Ogg Opus already (mixing's)
    out = ctx.work_dir / dub_track_name(container)
    codec = await ctx.in_pool(encode_dub_track, master_wav, container, str(out))
    return str(out), codec


async def publish_video(ctx: StageContext, dubbed: tuple[str, str], captions_vtt: str, source_language: str,
                        revision: int = 1) -> StoredArtifact | None:
    """The dubbed video (`dubbed`: `dub_track`'s file and codec), when the upload had a picture (None otherwise:
    audio-only media get today's files)."""
    media = _spec(ctx)
    if not makes_video(ctx) or media.container is None:
        return None
    out = ctx.work_dir / video_name(ctx)
    tracks = VideoTracks(dubbed[0], captions_vtt, languages.iso_639_2(ctx.task.target_language),
                         languages.iso_639_2(source_language), media.audio_codec, dubbed[1])
    async with ctx.input_copy(InputKind.MEDIA) as upload:
        await ctx.in_pool(mux_video, upload, tracks, media.container, str(out))
    return await publish(ctx, ArtifactKind.VIDEO, str(out), out.name, revision,
                         content_type=CONTAINERS[media.container].content_type)
