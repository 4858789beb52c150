"""Speak each translated unit so that it fills its source span (isochrony), in one synthesis.

The speaking rate is chosen before speaking, both ways: a line that would run long is spoken faster
(up to MAX_ENGINE_RATE), one that would run short slower (down to MIN_TEMPO). The prediction comes from
this voice's own pace, learned from the lines already spoken in the task (starting from the language's
typical pace), so each line is synthesized once; only a prediction so far off that the stretch in the
mixing stage could not repair it is spoken again. A line that cannot fit even at the fastest tempo is
sent back to translators that can shorten it (an LLM), once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio

from service.audio import fitting
from service.audio.fitting import SegmentTiming
from service.engines.cloud.elevenlabs import ElevenLabsSynthesizer
from service.engines.offline.voice_choice import for_job
from service.engines.protocols import Shortener, Synthesizer
from service.engines.speech_rates import chars_per_second
from service.engines.types import SynthesizedClip
from service.stages import clones, outputs, stt, timeline, voices
from service.stages.context import StageContext, run_all
from service.stages.outputs import Clip, SpeakerEntry, Synthesis, TranslatedUnit, Translation
from service.stages.voices import SpeakerVoice

PARALLEL_UNITS = 2
# Within this share of the span after the mixing stage's stretch, a second take is not worth it.
_GOOD_ENOUGH = 0.10
# The longest pause put between two words to make a short line fill its time.
MAX_WORD_PAUSE = 0.4


class VoicePace:
    """Characters a second this voice speaks at rate 1, learned from the clips spoken so far (a prior of
    the language's typical pace, worth `prior_seconds` of speech, keeps the first guesses sane)."""

    def __init__(self, language: str, prior_seconds: float = 8.0) -> None:
        self.characters = chars_per_second(language) * prior_seconds
        self.seconds = prior_seconds

    def predict(self, text: str) -> float:
        return len(text) * self.seconds / self.characters

    def learn(self, text: str, natural_seconds: float) -> None:
        if natural_seconds > 0:
            self.characters += len(text)
            self.seconds += natural_seconds


def speakable(text: str) -> bool:
    """Whether a line has anything to say: a recogniser's "..." or a lone dash has no word (and espeak-ng
    speaks it as nothing), so it stays silent instead of failing the language."""
    return any(ch.isalnum() for ch in text)


def synthesizer_of(ctx: StageContext) -> Synthesizer:
    """The voice this task speaks with: offline, the one the job asked for (natural or fast) or the server's
    default for the language; a cloud voice as configured."""
    return for_job(ctx.engine.synthesizer, ctx.task.target_language, ctx.job.offline_voice)


async def _speak(ctx: StageContext, text: str, out: Path, rate: float, usage: dict[str, float],
                 word_pause: float = 0.0, voice: str | None = None,
                 neighbours: tuple[str | None, str | None] = (None, None)) -> SynthesizedClip:
    synthesizer = synthesizer_of(ctx)
    if isinstance(synthesizer, ElevenLabsSynthesizer):  # the lines around it carry its prosody on
        return await synthesizer.synthesize(
            text, ctx.task.target_language, str(out), rate=rate, sample_rate=ctx.settings.sample_rate, usage=usage,
            voice=voice, previous_text=neighbours[0], next_text=neighbours[1])
    clip: SynthesizedClip = await synthesizer.synthesize(
        text, ctx.task.target_language, str(out), rate=rate, sample_rate=ctx.settings.sample_rate, usage=usage,
        word_pause=word_pause, voice=voice)
    return clip


def _rate_for(ctx: StageContext, natural: float, span: float) -> float:
    return fitting.choose_rate(natural, span, ctx.settings.max_engine_rate, ctx.settings.min_tempo)


def _residual(ctx: StageContext, clip: SynthesizedClip, span: float) -> float:
    """How far from its span the clip will still be after the mixing stage's stretch (0 = exact)."""
    settings = ctx.settings
    stretch = fitting.choose_stretch(clip.duration, span, settings.stretch_ceiling, rate=clip.rate,
                                     min_tempo=settings.min_tempo,
                                     max_tempo=settings.max_engine_rate * settings.stretch_ceiling)
    return abs(clip.duration / stretch / span - 1.0) if span > 0 else 0.0


async def _take(ctx: StageContext, text: str, span: float, out: Path, pace: VoicePace,
                usage: dict[str, float], voice: str | None = None,
                neighbours: tuple[str | None, str | None] = (None, None)) -> tuple[SynthesizedClip, float]:
    """Speak `text` at the predicted rate; again at the measured one if the prediction missed badly."""
    clip = await _speak(ctx, text, out, _rate_for(ctx, pace.predict(text), span), usage, voice=voice,
                        neighbours=neighbours)
    natural = clip.duration * clip.rate
    pace.learn(text, natural)
    better = _rate_for(ctx, natural, span)
    if _residual(ctx, clip, span) > _GOOD_ENOUGH and abs(better - clip.rate) > 0.02:
        clip = await _speak(ctx, text, out, better, usage, voice=voice, neighbours=neighbours)
    gaps = len(text.split()) - 1
    synthesizer = synthesizer_of(ctx)
    if (span > 0 and clip.duration < span and gaps > 0 and synthesizer.pauses_between_words
            and _residual(ctx, clip, span) > getattr(synthesizer, "pause_when_short_by", _GOOD_ENOUGH)):
        # Short even at the slowest tempo: pause between the words, as a slow reader does, rather than
        # drawing the sounds out further.
        pause = min((span - clip.duration) / gaps, MAX_WORD_PAUSE)
        clip = await _speak(ctx, text, out, clip.rate, usage, word_pause=pause, voice=voice, neighbours=neighbours)
    return clip, natural


async def _fitted(ctx: StageContext, unit: TranslatedUnit, slot: SegmentTiming, out: Path, pace: VoicePace,
                  source_language: str, usage: dict[str, float], voice: str | None = None,
                  neighbours: tuple[str | None, str | None] = (None, None)) -> Clip:
    settings = ctx.settings
    span = slot.span
    clip, natural = await _take(ctx, unit.text, span, out, pace, usage, voice, neighbours)
    fastest = settings.max_engine_rate * settings.stretch_ceiling
    translator = ctx.engine.translator
    if span <= 0 or natural / fastest <= span * (1 + _GOOD_ENOUGH) or not isinstance(translator, Shortener):
        return Clip(unit.id, clip.path, unit.text, clip.rate, clip.duration, round(natural, 4), span=span,
                    voice=voice)
    max_chars = max(int(len(unit.text) * span * fastest / natural * 0.95), 1)
    shorter = (await translator.shorten(unit.text, unit.source_text, source_language, ctx.task.target_language,
                                        max_chars, usage=usage)).strip()
    if not shorter or len(shorter) >= len(unit.text):
        return Clip(unit.id, clip.path, unit.text, clip.rate, clip.duration, round(natural, 4), span=span,
                    voice=voice)
    clip, natural = await _take(ctx, shorter, span, out, pace, usage, voice, neighbours)
    return Clip(unit.id, clip.path, shorter, clip.rate, clip.duration, round(natural, 4), shortened_from=unit.text,
                span=span, voice=voice)


async def _finished_clip(clips_dir: Path, unit: TranslatedUnit, span: float, voice: str | None) -> Clip | None:
    """The clip an earlier attempt or render made of this unit, if its text, span and voice are still the unit's."""
    clip = await outputs.load_piece(clips_dir / f"{unit.id:05d}.json", Clip)
    if (clip is None or unit.text not in (clip.text, clip.shortened_from) or clip.voice != voice
            or not await anyio.Path(clip.path).exists()):
        return None
    if clip.span is not None and abs(clip.span - span) > 1e-3:
        return None
    return clip


async def _speaker_voices(ctx: StageContext) -> dict[str, SpeakerVoice]:
    """Every speaker's voice in this language: chosen from the job's speakers (the same in every language)."""
    synthesizer = synthesizer_of(ctx)
    language = ctx.task.target_language
    found = await stt.speakers_of(ctx)
    if len(found) <= 1 and not ctx.job.speakers.voices and not ctx.job.speakers.voice_cloning:
        return {}  # one voice: the language's default, as before speakers were told apart
    palette = {lang: tuple(v.split("|")) for lang, v in ctx.settings.deepgram_tts_voices}
    chosen = voices.choose(synthesizer.name, synthesizer.voice_for(language), language, found,
                           ctx.job.speakers.voices, palette)
    if ctx.job.speakers.voice_cloning and isinstance(synthesizer, ElevenLabsSynthesizer):
        cloned = await clones.speaker_clones(ctx, synthesizer.client, found)
        for speaker, voice_id in cloned.items():
            if chosen.get(speaker) is None or chosen[speaker].chosen != "picked":
                chosen[speaker] = SpeakerVoice(speaker, voice_id, "clone")
    return chosen


async def run(ctx: StageContext) -> None:
    translation = await outputs.load(ctx.work_dir, Translation)
    slots = timeline.slots(translation.units, ctx.job)
    clips_dir = ctx.work_dir / "clips"
    clips_dir.mkdir(exist_ok=True)
    spoken = [(u, s) for u, s in zip(translation.units, slots, strict=True) if speakable(u.text)]
    clips: dict[int, Clip] = {}
    limit = asyncio.Semaphore(PARALLEL_UNITS)
    usage: dict[str, float] = {}
    chosen = await _speaker_voices(ctx)
    # Each voice has its own pace: learned apart, so one speaker's quick voice does not hurry another's.
    paces: dict[str | None, VoicePace] = {}

    def voice_of(unit: TranslatedUnit) -> str | None:
        found = chosen.get(unit.speaker or "")
        return found.voice if found is not None else None

    def pace_of(unit: TranslatedUnit) -> VoicePace:
        return paces.setdefault(voice_of(unit), VoicePace(ctx.task.target_language))

    # The text before and after each line, of the same speaker: engines that take it carry the prosody on.
    by_speaker: dict[str | None, list[TranslatedUnit]] = {}
    for unit, _ in spoken:
        by_speaker.setdefault(unit.speaker, []).append(unit)
    around: dict[int, tuple[str | None, str | None]] = {}
    for same in by_speaker.values():
        for at, unit in enumerate(same):
            around[unit.id] = (same[at - 1].text if at else None, same[at + 1].text if at + 1 < len(same) else None)

    # Clips a crashed or interrupted attempt finished are kept, with their record: reuse them.
    for unit, slot in spoken:
        done = await _finished_clip(clips_dir, unit, slot.span, voice_of(unit))
        if done is not None:
            clips[unit.id] = done
            pace_of(unit).learn(done.text, done.natural_duration)
    reused = len(clips)

    async def one(unit: TranslatedUnit, slot: SegmentTiming) -> None:
        # An earlier render's stretched copy of this unit is of other words: the mixing stage makes it afresh.
        await anyio.Path(clips_dir / f"{unit.id:05d}.fit.json").unlink(missing_ok=True)
        async with limit:
            clip = await _fitted(ctx, unit, slot, clips_dir / f"{unit.id:05d}.wav", pace_of(unit),
                                 translation.source_language, usage, voice_of(unit), around.get(unit.id, (None, None)))
        await outputs.save_piece(clips_dir / f"{unit.id:05d}.json", clip)
        clips[unit.id] = clip
        await ctx.progress(len(clips) / len(spoken), unit=unit.id)

    if reused:
        await ctx.progress(reused / len(spoken), reused=reused)
    try:
        await run_all([one(u, s) for u, s in spoken if u.id not in clips])
    finally:
        await ctx.record_usage(usage)
    ctx.figures.update(clips=len(spoken), reused_clips=reused, spoken_clips=len(spoken) - reused,
                       characters=sum(len(clips[u.id].text) for u, _ in spoken))
    synthesizer = synthesizer_of(ctx)
    await outputs.save(ctx.work_dir, Synthesis(synthesizer.name, synthesizer.voice_for(ctx.task.target_language),
                                               [clips[u.id] for u, _ in spoken],
                                               await _speaker_entries(ctx, chosen)))
    if not spoken:
        await ctx.progress(1.0, units=0)


async def _speaker_entries(ctx: StageContext, chosen: dict[str, SpeakerVoice]) -> list[SpeakerEntry]:
    """The manifest's speakers: each with its speech time, pitch and the voice it was dubbed with."""
    synthesizer = synthesizer_of(ctx)
    default = synthesizer.voice_for(ctx.task.target_language)
    entries = []
    for found in await stt.speakers_of(ctx):
        voice = chosen.get(str(found["id"]))
        entries.append(SpeakerEntry(str(found["id"]), float(found.get("speech_seconds") or 0.0),
                                    found.get("median_pitch"), synthesizer.name,
                                    voice.voice if voice else default, voice.chosen if voice else "default",
                                    cloned=voice is not None and voice.chosen == "clone"))
    return entries
