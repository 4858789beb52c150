"""Speech to text, once per job: the first task to get here transcribes, the others reuse it.

With `source_language: "auto"` the recogniser first tells the language from the first minute of speech
(when it can do that ahead of transcription; Deepgram does it within its request); the detection is
recorded on the job. A job that named its language is checked too: a confident disagreement is kept for
the manifest. A task whose target cannot be reached from the detected language fails, naming the language.

Besides the recogniser's segments and words, the stage finds where the voice pauses (voice activity,
when the file is here to read) and cuts the words into the timed units the dub is made of
(`units.py`). Transcript and units are kept in the `transcripts` table (for the other tasks) and
published as the job's `transcript_json`, `transcript_srt` and `transcript_vtt` artifacts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import structlog

from service import scratch
from service.audio.speakers import Diarization, decide, embed, split_regions
from service.audio.voice_activity import FRAME_SECONDS, energy_activity, speech_regions
from service.db import jobs, segments, tasks, transcripts
from service.db.events import Event
from service.domain import ArtifactKind, EventKind, InputKind, Stage
from service.engines.capabilities import cannot_dub_detected
from service.engines.types import LanguageGuess, Transcript
from service.errors import DubbingError, EngineError, ErrorCode, StageError
from service.stages import captions, separation, speakers
from service.stages.context import StageContext
from service.stages.publish import publish
from service.stages.units import Unit, build_units, refine_edges
from service.stages.workfiles import write_json

log = structlog.get_logger(__name__)

_RECHECK_SECONDS = 5.0
# A named source language the detection contradicts this surely is reported (the manifest's `detection`).
DISAGREEMENT_CONFIDENCE = 0.8
TRANSCRIBED = 0.9  # the stage's progress once the recogniser is done (voice activity and publishing follow)


async def load(ctx: StageContext) -> tuple[Transcript, list[Unit]]:
    """The job's finished transcript and its timed units, for the stages after this one: the units as people
    edited them (`db/segments.py`, made from the recogniser's on first use)."""
    data = await transcripts.ready(ctx.pool, ctx.task.job_id)
    editable = await segments.load(ctx.pool, ctx.task.job_id)
    if data is None or editable is None:
        raise StageError(ErrorCode.TRANSCRIPT_MISSING, "The transcript is not ready", retryable=True)
    units = [Unit(s.id, s.start, s.end, s.text, s.group, s.speaker) for s in editable.segments]
    media = ctx.job.media
    if media is not None:  # a media job dubs the units wholly inside its window; the original plays elsewhere
        units = [u for u in units if u.start >= media.start_seconds and u.end <= media.end_seconds]
    return Transcript.from_json(data), units


async def speakers_of(ctx: StageContext) -> list[dict[str, Any]]:
    """The job's speakers (id, speech_seconds, median_pitch), in order of first appearance; [] when one voice
    was never told apart (transcripts made before speakers were)."""
    data = await transcripts.ready(ctx.pool, ctx.task.job_id)
    found = (data or {}).get("speakers")
    return [dict(s) for s in found] if isinstance(found, list) else []


async def detection(ctx: StageContext) -> dict[str, Any] | None:
    """The source language as asked for and as heard (with a note when they disagree), for the manifest."""
    data = await transcripts.ready(ctx.pool, ctx.task.job_id)
    found = (data or {}).get("detection")
    return dict(found) if isinstance(found, dict) else None


def transcript_owner(ctx: StageContext) -> str:
    """Who holds the job's transcription lease: this task, not just this process (which runs the
    job's other languages too, and would otherwise be told "mine" for each of them)."""
    return f"{ctx.lease_owner}/{ctx.task.id}"


async def run(ctx: StageContext) -> None:
    lease = ctx.settings.lease_seconds
    while True:
        state = await transcripts.acquire(ctx.pool, ctx.task.job_id, transcript_owner(ctx), lease)
        if state.state == "ready":
            count = len((state.data or {}).get("segments", []))
            _check_detected(ctx, state.data or {})
            ctx.figures.update(segments=count, shared=True)
            await ctx.progress(1.0, segments=count, shared=True)
            return
        if state.state == "failed":
            # The stored failure is final for every language of the job, whatever its code would say alone.
            raise StageError(state.error_code or ErrorCode.STT_FAILED, state.error_message or "Transcription failed",
                             retryable=False)
        if state.state == "mine":
            data = await _transcribe(ctx)
            _check_detected(ctx, data)
            return
        await _wait_for_other_task(ctx)


async def _wait_for_other_task(ctx: StageContext) -> None:
    """Sleep until this job's next event (the transcriber finishing), or a slow re-check. The transcribing
    task's progress is this task's too: shown as it comes, so every language's bar moves."""
    if ctx.listener is None:
        await asyncio.sleep(_RECHECK_SECONDS)
        return
    subscription = ctx.listener.subscribe(str(ctx.task.job_id))
    try:
        with contextlib.suppress(TimeoutError):
            event = await asyncio.wait_for(subscription.queue.get(), _RECHECK_SECONDS)
            if (isinstance(event, Event) and event.kind == EventKind.PROGRESS and event.stage == Stage.STT
                    and event.task_id != str(ctx.task.id) and "stage_progress" in event.data
                    and not event.data.get("shared")):
                await ctx.progress(float(event.data["stage_progress"]), shared=True)
    finally:
        ctx.listener.unsubscribe(subscription)


async def _keep_lease(ctx: StageContext) -> None:
    lease = ctx.settings.lease_seconds
    while True:
        await asyncio.sleep(lease / 3)
        await transcripts.extend(ctx.pool, ctx.task.job_id, transcript_owner(ctx), lease)


def _check_detected(ctx: StageContext, data: dict[str, Any]) -> None:
    """For `auto` jobs: this task's target must be reachable from the language heard, else a clear failure."""
    if ctx.job.source_language != "auto" or not data.get("segments"):
        return
    problem = cannot_dub_detected(ctx.engine, str(data.get("language")), data.get("language_confidence"),
                                  ctx.task.target_language)
    if problem is not None:
        raise StageError(ErrorCode.UNSUPPORTED_LANGUAGE, problem)


async def _detect(ctx: StageContext, voice: str) -> LanguageGuess | None:
    """The language heard ahead of transcription (None: the engine detects while transcribing, or cannot).
    For `auto` jobs whose targets are all out of reach, fails the transcript for every task at once."""
    try:
        guess = await ctx.engine.transcriber.detect(voice)
    except EngineError as exc:
        if ctx.job.source_language == "auto":
            raise
        # The job named its language: detection only checks it, and its failure must not cost the dub.
        log.warning("stt.detection_failed", code=exc.code, requested=ctx.job.source_language)
        return None
    if guess is None:
        return None
    await jobs.record_detection(ctx.pool, ctx.task.job_id, guess.language, guess.confidence)
    if ctx.job.source_language == "auto":
        targets = [t.target_language for t in await tasks.for_job(ctx.pool, ctx.task.job_id)]
        problems = [cannot_dub_detected(ctx.engine, guess.language, guess.confidence, t) for t in targets]
        if problems and all(problems):
            raise StageError(ErrorCode.UNSUPPORTED_LANGUAGE, "; ".join(sorted({str(p) for p in problems})))
    log.info("stt.detected", language=guess.language, confidence=guess.confidence,
             requested=ctx.job.source_language)
    return guess


async def _transcribe(ctx: StageContext) -> dict[str, Any]:
    source = ctx.job.source_language
    keeper = asyncio.create_task(_keep_lease(ctx))
    language = None if source == "auto" else source
    transcriber = ctx.engine.transcriber
    usage: dict[str, float] = {}
    speech: list[tuple[float, float]] | None = None
    activity: Any = None
    found: Diarization | None = None
    guess: LanguageGuess | None = None
    try:
        if transcriber.accepts_url and ctx.storage.is_remote and ctx.job.media is None:
            # The provider fetches the file itself through a short-lived URL: no download here (its
            # word timings then mark the pauses on their own).
            signed = await ctx.storage.create_download_url(ctx.job.voice.object_path, 15 * 60)
            transcript: Transcript = await transcriber.transcribe(None, language, audio_url=signed.url, usage=usage)
        else:
            async with _heard(ctx) as (voice, isolated, transcribed):
                checking: asyncio.Task[LanguageGuess | None] | None = None
                if transcriber.detects and language is None:
                    guess = await _detect(ctx, voice)
                elif transcriber.detects:  # a named language is only checked: beside the transcription, not first
                    checking = asyncio.create_task(_detect(ctx, voice))
                try:
                    spoken = guess.language if guess is not None and language is None else language
                    # Progress by the audio decoded so far, up to TRANSCRIBED; finding the pauses takes the rest.
                    async with ctx.reporting(0.0, TRANSCRIBED) as on_progress:
                        transcript = await transcriber.transcribe(voice, spoken, usage=usage, on_progress=on_progress)
                    transcribed.set()  # the recogniser's worker is free: separation may take every worker now
                    await ctx.progress(TRANSCRIBED)
                    if guess is not None and language is None:
                        transcript = dataclasses.replace(transcript, language_confidence=guess.confidence)
                    # A media job's pauses are found in its isolated voice, where the bed cannot pass for speech.
                    active = await isolated if isolated is not None else voice
                    if transcript.segments:
                        speech, activity = await asyncio.gather(
                            ctx.in_pool(speech_regions, active, ctx.settings.unit_pause_seconds),
                            ctx.in_pool(energy_activity, active, 0.0))
                        found = speakers.from_transcript(transcript)
                        if found is None and speech:
                            found = await _diarize(ctx, active, speech)
                    if isolated is not None:
                        await separation.publish_stems(ctx, voice, active,
                                                       [(s.start, s.end) for s in transcript.segments])
                    if checking is not None:
                        guess = await checking
                finally:
                    if checking is not None and not checking.done():
                        checking.cancel()
    except DubbingError as exc:
        if exc.retryable:  # let the next attempt (of any of the job's tasks) take over
            await transcripts.give_up_lease(ctx.pool, ctx.task.job_id, transcript_owner(ctx))
        else:  # every language of the job fails with the same reason
            await transcripts.fail(ctx.pool, ctx.task.job_id, transcript_owner(ctx), exc.code, exc.message)
        raise
    except BaseException:
        await transcripts.give_up_lease(ctx.pool, ctx.task.job_id, transcript_owner(ctx))
        raise
    finally:
        keeper.cancel()

    await ctx.record_usage(usage)
    if guess is None and language is None and transcript.segments:  # detected within the transcription
        await jobs.record_detection(ctx.pool, ctx.task.job_id, transcript.language, transcript.language_confidence)
    if found is None:
        found = speakers.from_transcript(transcript)
    turns = speakers.turns_of(found) if found is not None else None
    if turns:
        transcript = speakers.mark_segments(transcript, turns)
    timed = build_units(transcript.segments, speech, language=transcript.language,
                        pause_seconds=ctx.settings.unit_pause_seconds, turns=turns)
    if activity is not None:
        timed = refine_edges(timed, activity, FRAME_SECONDS)
    data = {**transcript.to_json(), "units": [_unit_json(u) for u in timed],
            "speakers": speakers.profiles_json(found, timed) if found is not None else [],
            "speech": [list(region) for region in speech] if speech is not None else None,
            "detection": _detection(source, guess, transcript)}
    await _publish_transcript(ctx, timed, data)
    await transcripts.complete(ctx.pool, ctx.task.job_id, transcript_owner(ctx), data)
    note: dict[str, Any] = {"segments": len(transcript.segments), "units": len(timed),
                            "language": transcript.language}
    if not transcript.segments:
        note["note"] = "no speech found in the voice recording"
    log.info("stt.done", **note)
    ctx.figures.update(segments=len(transcript.segments), units=len(timed),
                       characters=sum(len(s.text) for s in transcript.segments))
    await ctx.progress(1.0, **note)
    return data


@contextlib.asynccontextmanager
async def _heard(ctx: StageContext) -> AsyncIterator[tuple[str, asyncio.Task[str] | None, asyncio.Event]]:
    """What the recogniser reads, and for a media job the voice being isolated beside it: a voice job's voice
    recording; a media job's soundtrack (the mix: see `separation.py` for why), its separation started at once
    in one pool worker, in all of them once the returned event says the transcription is done."""
    transcribed = asyncio.Event()
    if ctx.job.media is None:
        async with ctx.input_copy(InputKind.VOICE) as voice:
            yield voice, None, transcribed
        return
    async with ctx.input_copy(InputKind.MEDIA) as media:
        mix = await separation.soundtrack(ctx, media)
    isolating = asyncio.create_task(separation.isolate(ctx, mix, transcribed))
    try:
        yield mix, isolating, transcribed
    finally:
        if not isolating.done():
            isolating.cancel()
            with contextlib.suppress(BaseException):
                await isolating
async def _diarize(ctx: StageContext, voice: str, speech: list[tuple[float, float]]) -> Diarization:
    """Who speaks when: the speech described by two pool workers side by side (each half of it), then grouped."""
    started = time.perf_counter()
    parts = await asyncio.gather(*(ctx.in_pool(embed, voice, part) for part in split_regions(speech, 2)))
    found: Diarization = await ctx.in_pool(decide, list(parts), speech, ctx.job.speakers.num_speakers)
    ctx.figures.update(diarization_seconds=round(time.perf_counter() - started, 3), speakers=len(found.speakers))
    return found


def _detection(source: str, guess: LanguageGuess | None, transcript: Transcript) -> dict[str, Any] | None:
    """What the manifest says about the source language: asked for, heard, and whether they disagree."""
    if guess is None and source == "auto" and transcript.language_confidence is not None:
        guess = LanguageGuess(transcript.language, transcript.language_confidence)
    if guess is None:
        return None
    entry: dict[str, Any] = {"requested": source, "detected": guess.language, "confidence": guess.confidence}
    if source != "auto" and guess.language != source and guess.confidence >= DISAGREEMENT_CONFIDENCE:
        entry["note"] = (f"The job names {source} as the source language, but the recording sounds like "
                         f"{guess.language} ({guess.confidence:.0%} sure); it was transcribed as {source}, "
                         f"as asked")
    return entry


def _unit_json(unit: Unit) -> dict[str, Any]:
    return {"id": unit.id, "start": unit.start, "end": unit.end, "text": unit.text, "group": unit.group,
            "speaker": unit.speaker}


async def _publish_transcript(ctx: StageContext, timed: list[Unit], data: dict[str, Any]) -> None:
    folder = scratch.source_dir(ctx.settings.scratch_dir, ctx.task.job_id)
    await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
    cues = captions.build_cues([(u.start, u.end, u.text) for u in timed], max_cps=ctx.settings.caption_max_cps,
                               speakers=[u.speaker for u in timed])
    files = {
        ArtifactKind.TRANSCRIPT_JSON: ("transcript.json", None),
        ArtifactKind.TRANSCRIPT_SRT: ("transcript.srt", captions.to_srt(cues)),
        ArtifactKind.TRANSCRIPT_VTT: ("transcript.vtt", captions.to_vtt(cues)),
    }
    for kind, (name, text) in files.items():
        path = folder / name
        if text is None:
            await write_json(path, data)
        else:
            await anyio.Path(path).write_text(text)
        await publish(ctx, kind, str(path), name)
