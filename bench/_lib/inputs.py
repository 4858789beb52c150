"""Inputs for the pipeline benchmarks, made on the spot, and jobs run through the API.

Cached under `BENCH_INPUTS` (default /tmp/dubbing-bench-inputs):

* an English voice: many generated sentences (varied templates, seeded) spoken by espeak-ng through
  `service.sample._speak` (the same voice and level as `service.sample.make_sample`), separated by natural
  pauses (0.3-1.2 s, a longer 1.5-3 s breath every few sentences), mono 48 kHz PCM_16, exactly N seconds;
* a stereo 48 kHz background bed with the formula of `make_sample` (chord x pulse + noise, right channel
  delayed 5 ms), written in blocks so an hour of it needs no more than a few MB of RAM;
* target-language clips: the same sentences translated by the service's Apertium engine and spoken by its
  espeak-ng engine (48 kHz mono, silence-trimmed: exactly what the dubbing stage hands to the mixing stage).

Not cached: a "buzz" voice (a voiced buzz where each utterance is, for benchmarks whose speech-to-text is
faked), cheap to make at any length.

Jobs go through the API with `service.client` (signed uploads, the job, its progress stream), as a browser
and `dubbing demo` do.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from service import client as api
from service.errors import ApiRefused
from service.sample import make_sample

from . import RATE

INPUTS_DIR = Path(os.environ.get("BENCH_INPUTS", Path(tempfile.gettempdir()) / "dubbing-bench-inputs"))
INPUT_VERSION = 2  # bump when the generators change, so cached inputs are remade

# --------------------------------------------------------------------------------------- sentences
_SUBJECTS = ["The old farmer", "My sister", "The young doctor", "Our teacher", "The small dog", "A tired traveller",
             "The city council", "Every student", "The new manager", "My neighbour", "The children",
             "The engineer", "Her grandfather", "The quiet musician", "A local baker", "The police officer"]
_VERBS = ["opened", "painted", "found", "repaired", "carried", "sold", "cleaned", "described", "bought",
          "visited", "built", "closed", "watched", "borrowed", "moved", "checked"]
_ADJECTIVES = ["red", "heavy", "beautiful", "broken", "strange", "large", "wooden", "famous", "cheap", "quiet",
               "green", "ancient", "modern", "empty", "warm", "dark"]
_NOUNS = ["door", "window", "bicycle", "house", "letter", "table", "garden", "bridge", "car", "book", "machine",
          "boat", "piano", "kitchen", "market", "map"]
_PLACES = ["near the river", "in the morning", "after the storm", "behind the school", "before dinner",
           "in the village", "during the winter", "next to the station", "at the end of the street",
           "on a cold evening", "in the old town", "after work"]
_TOPICS = ["the weather", "the new road", "the price of bread", "the football match", "the summer holiday",
           "the election", "the broken bridge", "the library", "the train timetable", "the festival"]
_TEMPLATES = [
    "{S} {V} the {A} {N} {P}.",
    "{S} {V} the {N}.",
    "Yesterday {s} {V} a {A} {N} and then went home.",
    "Do you know why {s} {V} the {N} {P}?",
    "Nobody expected that {s} would talk about {T} for so long.",
    "{S} said that {T} was more important than the {A} {N}.",
    "We waited for an hour, but {s} never {V} the {N}.",
    "Please tell me about {T}.",
    "{S} {V} a {A} {N}, and everybody was happy {P}.",
    "It is difficult to understand {T} without a good {N}.",
    "Thank you very much.",
    "{S} likes {T} and the {A} {N} {P}.",
]


def sentences(count: int, seed: int = 11) -> list[str]:
    """`count` varied English sentences, deterministic for a seed; consecutive ones never repeat."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        subject = rng.choice(_SUBJECTS)
        text = rng.choice(_TEMPLATES).format(
            S=subject, s=subject[0].lower() + subject[1:], V=rng.choice(_VERBS), A=rng.choice(_ADJECTIVES),
            N=rng.choice(_NOUNS), P=rng.choice(_PLACES), T=rng.choice(_TOPICS))
        if not out or out[-1] != text:
            out.append(text)
    return out


# --------------------------------------------------------------------------------------- the voice
@dataclass(frozen=True)
class VoiceInput:
    path: Path
    seconds: float
    lines: tuple[tuple[float, float, str], ...]  # (start, end, text) of each spoken sentence

    @property
    def speech_seconds(self) -> float:
        return sum(end - start for start, end, _ in self.lines)


def _pauses(rng: random.Random) -> Iterator[float]:
    n = 0
    while True:
        n += 1
        yield rng.uniform(1.5, 3.0) if n % rng.randint(4, 7) == 0 else rng.uniform(0.3, 1.2)


def make_voice(seconds: float, seed: int = 11, folder: Path | None = None) -> VoiceInput:
    """Mono 48 kHz PCM_16 English speech of exactly `seconds` (cached by length and seed)."""
    from service.sample import _speak  # the demo/test sample's own espeak voice, resampling and trimming

    folder = folder or INPUTS_DIR / f"voice_{int(seconds)}s_seed{seed}_v{INPUT_VERSION}"
    meta_path, wav_path = folder / "voice.json", folder / "voice.wav"
    if meta_path.is_file() and wav_path.is_file():
        meta = json.loads(meta_path.read_text())
        return VoiceInput(wav_path, meta["seconds"], tuple(tuple(x) for x in meta["lines"]))
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    pauses = _pauses(rng)
    texts = sentences(int(seconds / 2.5) + 20, seed)  # more than enough: a line and its pause last > 2.5 s
    lines: list[tuple[float, float, str]] = []
    total = round(seconds * RATE)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool, \
            sf.SoundFile(str(wav_path) + ".part", "w", RATE, 1, "PCM_16", format="WAV") as out:
        position = round(0.6 * RATE)
        out.write(np.zeros(position, dtype=np.float32))
        clips = pool.map(lambda text: (text, _speak(text, RATE)), texts)
        for text, clip in clips:
            pause = round(next(pauses) * RATE)
            if position + len(clip) + round(0.5 * RATE) > total:
                break
            out.write((0.6 * clip / max(float(np.abs(clip).max()), 1e-6)).astype(np.float32))
            lines.append((round(position / RATE, 4), round((position + len(clip)) / RATE, 4), text))
            position += len(clip)
            gap = min(pause, total - position)
            out.write(np.zeros(gap, dtype=np.float32))
            position += gap
        out.write(np.zeros(total - position, dtype=np.float32))
    os.replace(str(wav_path) + ".part", wav_path)
    meta_path.write_text(json.dumps({"seconds": seconds, "seed": seed, "lines": lines}, indent=1))
    return VoiceInput(wav_path, seconds, tuple(lines))


def make_background(seconds: float, folder: Path | None = None, channels: int = 2) -> Path:
    """Stereo 48 kHz PCM_16 music-like bed (the formula of `make_sample`), written block by block."""
    folder = folder or INPUTS_DIR / f"background_{int(seconds)}s_v{INPUT_VERSION}"
    path = folder / "background.wav"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    total = round(seconds * RATE)
    rng = np.random.default_rng(7)
    delay = 240
    carry = np.zeros(delay, dtype=np.float64)
    block = 10 * RATE
    fmt = "RF64" if total * channels * 2 > 0xFFFF_0000 else "WAV"
    with sf.SoundFile(str(path) + ".part", "w", RATE, channels, "PCM_16", format=fmt) as out:
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / RATE
            chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
            pulse = 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t)
            bed = 0.15 * chord * pulse + 0.01 * rng.standard_normal(n)
            right = np.concatenate([carry, bed])[:n]
            carry = np.concatenate([carry, bed])[n:][-delay:]
            frame = np.stack([bed, right], axis=1) if channels == 2 else bed[:, None]
            out.write(frame.astype(np.float32))
    os.replace(str(path) + ".part", path)
    return path


# --------------------------------------------------------------------------------- target-language clips
@dataclass(frozen=True)
class TargetClips:
    language: str
    clips: tuple[tuple[str, float, str], ...]  # (path, duration, translated text) per voice line, in order


def make_target_clips(voice: VoiceInput, language: str = "es") -> TargetClips:
    """Translate every line (service Apertium engine) and speak it (service espeak-ng engine), re-spoken
    faster when too long for its source span, up to the service's engine-rate limit, as the dubbing stage
    does: these are the clips the mixing stage receives."""
    folder = voice.path.parent / f"clips_{language}"
    meta_path = folder / "clips.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return TargetClips(language, tuple(tuple(c) for c in meta["clips"]))
    folder.mkdir(parents=True, exist_ok=True)

    async def build() -> list[tuple[str, float, str]]:
        from service.audio import fitting
        from service.engines.offline.apertium import ApertiumTranslator
        from service.engines.offline.espeak import EspeakSynthesizer
        from service.settings import Settings

        max_rate = Settings().max_engine_rate
        texts = [text for _, _, text in voice.lines]
        translated = await ApertiumTranslator().translate(texts, "en", language)
        synth = EspeakSynthesizer()
        limit = asyncio.Semaphore(os.cpu_count() or 2)

        async def one(i: int, text: str, span: float) -> tuple[str, float, str]:
            out = str(folder / f"{i:05d}.wav")
            async with limit:
                clip = await synth.synthesize(text, language, out, sample_rate=RATE)
                rate = fitting.choose_rate(clip.duration, span, max_rate)
                if rate > 1.0:
                    clip = await synth.synthesize(text, language, out, rate=rate, sample_rate=RATE)
            return clip.path, clip.duration, text

        return list(await asyncio.gather(*(
            one(i, t, end - start) for i, (t, (start, end, _)) in enumerate(zip(translated, voice.lines,
                                                                                strict=True)))))

    clips = asyncio.run(build())
    meta_path.write_text(json.dumps({"language": language, "clips": clips}, indent=1, ensure_ascii=False))
    return TargetClips(language, tuple(clips))


def placed_clips(voice: VoiceInput, target: TargetClips, total: float) -> list[Any]:
    """Place each clip at its source line as the mixing stage does (cut at the next line's start; no stretch)."""
    from service.audio import fitting
    from service.audio.voice_track import PlacedClip

    timings = fitting.slots_from_segments([(s, e) for s, e, _ in voice.lines], total)
    out = []
    for timing, (path, duration, _) in zip(timings, target.clips, strict=True):
        placement = fitting.place(timing, duration)
        out.append(PlacedClip(path, placement.placed_start, placement.placed_end - placement.placed_start))
    return out


def cycled_placement(target: TargetClips, total: float, seed: int = 5) -> list[Any]:
    """Clips laid end to end with natural pauses, cycling through `target`'s clips, over `total` seconds."""
    from service.audio.voice_track import PlacedClip

    rng = random.Random(seed)
    pauses = _pauses(rng)
    out: list[Any] = []
    position, i = 0.6, 0
    while True:
        path, duration, _ = target.clips[i % len(target.clips)]
        if position + duration + 0.5 > total:
            return out
        out.append(PlacedClip(path, round(position, 4), duration))
        position += duration + next(pauses)
        i += 1


# ------------------------------------------------------------------------------------ measurement
_I = re.compile(r"I:\s+(-?[\d.]+|-inf) LUFS")
_TP = re.compile(r"Peak:\s+(-?[\d.]+|-inf) dBFS")
_LRA = re.compile(r"LRA:\s+(-?[\d.]+) LU")


def ebur128(path: str | Path) -> dict[str, float | None]:
    """Integrated loudness, true peak and LRA of a file, measured by ffmpeg's ebur128 (not the service's code)."""
    proc = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a:0",
                           "-af", "ebur128=peak=true", "-f", "null", "-"], capture_output=True, text=True, check=True)
    summary = proc.stderr[proc.stderr.rindex("Summary:"):]

    def grab(rx: re.Pattern[str]) -> float | None:
        match = rx.search(summary)
        return None if match is None or match.group(1) == "-inf" else float(match.group(1))

    return {"integrated_lufs": grab(_I), "true_peak_dbtp": grab(_TP), "lra_lu": grab(_LRA)}


# ------------------------------------------------------------------------------------- the buzz voice
_WORDS = ("the", "a", "river", "morning", "station", "teacher", "garden", "quickly", "never", "always", "yellow",
          "window", "market", "evening", "brother", "mountain", "quiet", "people", "remember", "tomorrow",
          "kitchen", "letter", "village", "holiday", "bright", "cold", "music", "forest", "little", "answer",
          "together", "doctor", "travel", "summer", "story", "careful", "between", "because", "children", "road")


def buzz_lines(seconds: float, seed: int = 11) -> list[tuple[float, float, str]]:
    """Utterances of 1.2-4.5 s separated by 0.25-1.2 s pauses (a 1.5-2.5 s breath every few), ~2.6 words/s."""
    rng = random.Random(seed)
    lines: list[tuple[float, float, str]] = []
    t = 0.4
    while True:
        length = rng.uniform(1.2, 4.5)
        if t + length > seconds - 0.6:
            break
        words = max(2, round(length * rng.uniform(2.3, 2.9)))
        text = " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + rng.choice("..?!")
        lines.append((round(t, 3), round(t + length, 3), text))
        t += length + (rng.uniform(1.5, 2.5) if rng.random() < 0.15 else rng.uniform(0.25, 1.2))
    return lines


def make_buzz_voice(seconds: float, folder: Path, seed: int = 11) -> VoiceInput:
    """Mono 48 kHz PCM_16: a voiced buzz (not real speech) where each of `buzz_lines` is."""
    lines = buzz_lines(seconds, seed)
    total = round(seconds * RATE)
    voice = np.zeros(total, dtype=np.float32)
    rng = np.random.default_rng(3)
    for start, end, _ in lines:
        a, b = round(start * RATE), round(end * RATE)
        t = np.arange(b - a, dtype=np.float32) / RATE
        f0 = 110 + 40 * rng.random()
        buzz = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3, 4))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
        voice[a:b] = (0.25 * buzz * envelope).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "voice.wav"
    sf.write(path, voice, RATE, subtype="PCM_16")
    return VoiceInput(path, seconds, tuple(lines))


# ------------------------------------------------------------------------------ jobs through the API
async def upload_files(client: httpx.AsyncClient, headers: dict[str, str], paths: dict[str, Path]) -> dict[str, str]:
    """What a browser does (`service.client.upload`): signed URLs, then a PUT of each file; {kind: object path}."""
    return await api.upload(client, headers, {
        kind: (path.name, path.read_bytes(), api.content_type_of(path)) for kind, path in paths.items()})


@dataclass
class JobRun:
    job_id: str
    status: str  # the `done` event's
    submitted_at: float  # clock() just before POST /v1/jobs
    created_at: float  # clock() when the POST answered 201
    done_at: float  # clock() when the `done` event arrived
    events: int  # events read from the progress stream, `done` included

    @property
    def wall_seconds(self) -> float:
        return self.done_at - self.submitted_at


async def run_job(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any],
                  clock: Callable[[], float] = time.time, timeout: float = 600) -> JobRun:
    """Create a job and follow its progress stream (`service.client.follow`) until `done`."""
    submitted = clock()
    response = await client.post("/v1/jobs", headers=headers, json=body, timeout=timeout)
    if response.status_code != 201:
        raise ApiRefused(response)
    created = clock()
    job_id = response.json()["id"]
    events = 0
    async for event in api.follow(client, job_id, headers):
        events += 1
        if event.event == "done":
            return JobRun(job_id, str(event.data.get("status", "?")), submitted, created, clock(), events)
    raise RuntimeError(f"the event stream of job {job_id} ended without `done`")


async def warm_up(client: httpx.AsyncClient, headers: dict[str, str], folder: Path, target: str) -> JobRun:
    """One job on the 15 s demo sample before the measured ones, so they do not pay for first-use costs."""
    sample = make_sample(folder)
    objects = await upload_files(client, headers, {"voice": sample.voice, "background": sample.background})
    started = time.perf_counter()
    warm = await run_job(client, headers, {"voice_object": objects["voice"], "background_object": objects["background"],
                                           "source_language": "en", "target_languages": [target]})
    print(f"warm-up job (the 15 s demo sample): {warm.status} in {time.perf_counter() - started:.1f} s", flush=True)
    return warm


async def stage_times(pool: Any, job_id: str) -> dict[str, Any]:
    """From `task_events`: per task, when each `stage` event was written and how long each stage lasted; when
    `done` was written; and the rows themselves (seq order)."""
    rows = await pool.fetch(
        "SELECT seq, kind, task_id, target_language, stage, data, created_at FROM task_events WHERE job_id = $1 "
        "ORDER BY seq", uuid.UUID(job_id))
    per_task: dict[str, dict[str, Any]] = {}
    done_at = None
    for row in rows:
        if row["kind"] == "done":
            done_at = row["created_at"].timestamp()
        if row["kind"] != "stage" or row["target_language"] is None:
            continue
        task = per_task.setdefault(row["target_language"], {"entered": []})
        task["entered"].append((row["stage"], row["created_at"].timestamp()))
    for task in per_task.values():
        pairs = list(itertools.pairwise(task["entered"]))
        task["stages"] = {}
        for (stage, at), (_, next_at) in pairs:
            task["stages"][stage] = round(task["stages"].get(stage, 0.0) + next_at - at, 3)
        task["windows"] = {stage: (at, next_at) for (stage, at), (_, next_at) in pairs}
    return {"tasks": per_task, "done_at": done_at, "rows": rows}


def scratch_figures(scratch: Path, job_id: str, language: str) -> dict[str, Any]:
    """What a task did, from the outputs its stages left in its scratch directory (`service.stages.outputs`):
    units spoken, re-spoken at another rate, time-stretched, shortened; planned sync; the mix's loudness."""
    import msgspec

    from service.stages.outputs import Mixdown, Synthesis

    folder = scratch / job_id / language
    try:
        clips = msgspec.json.decode((folder / Synthesis.FILE).read_bytes(), type=Synthesis).clips
        mixdown = msgspec.json.decode((folder / Mixdown.FILE).read_bytes(), type=Mixdown)
    except FileNotFoundError:  # the task did not get that far
        return {}
    sync, mix = mixdown.planned_sync, mixdown.mix
    return {"segments": len(clips), "respoken_faster": sum(1 for c in clips if c.rate > 1.0),
            "respoken_slower": sum(1 for c in clips if c.rate < 1.0),
            "time_stretched": sum(1 for u in mixdown.units if u.stretch != 1.0),
            "shortened": sum(1 for c in clips if c.shortened_from),
            "overflowed": sync["overflow_count"], "sync_iou": round(float(sync["iou"]), 3),  # type: ignore[arg-type]
            "mix_integrated_lufs": mix["integrated_lufs"], "mix_true_peak_dbtp": mix["true_peak_dbtp"],
            "mix_corrections": mix["corrections"]}
