"""Sync quality of the dub, measured from the audio the service hands back, on real and synthetic speech.

Two English voices of N minutes, each uploaded with an N-minute stereo music-like bed as its background, as a user
does, and dubbed into Spanish and Catalan by the real `dubbing serve` process over HTTP (signed uploads,
`POST /v1/jobs`, the SSE progress stream, then every artifact downloaded):

* real: read speech from Debian packages (`_lib/real_speech.py`): IVR prompts read by Allison Smith
  (asterisk-core-sounds-en-g722; "Allison Smith / Digium, CC-BY-SA-3.0") and five LibriVox sentences
  (pocketsphinx-testdata; LibriVox recordings are in the public domain), with their reference transcripts. The
  audio is installed with apt and assembled under /tmp; it is never committed.
* synthetic: espeak-ng English sentences with natural pauses (`_lib/inputs.py`), which knows its own text.

Everything is measured here, independently of the service's own measuring code (`service.audio.sync` and
`voice_activity` are not imported): this script's own energy voice-activity detector on 10 ms frames (a frame
is speech when it is above max(speech level - 35 dB, noise floor + 10 dB, -60 dBFS), speech level and floor
being the recording's 95th and 10th percentile frame levels; gaps under 250 ms bridged, blips under 50 ms
dropped), run on the source voice and on the dubbed voice stem. Per manifest segment:

* source span: the detected speech runs that overlap the segment's planned [source_start, source_end], kept
  between the previous segment's end and the next one's start;
* dub: the stem's speech inside [source_start - 0.2 s, next source_start) (not before the previous dub ended);
  duration ratio = dubbed duration / source span (target: >= 90 % within +-10 %), onset offset = dubbed onset -
  source onset (target: p95 <= 100 ms);
* running into the next segment: the dub sounds right up to the next segment's start, with no break before the
  next dub, and more than 100 ms past the end of its own source speech (target: none). Dubs that reach the next
  start only because the source itself runs on without a pause there are counted apart (`reaches_next_start`).

Over the whole timeline: speech-activity IoU of stem vs source (target >= 0.85); the captions (WebVTT, and SRT
checked to match): <= 42 characters a line, <= 2 lines, 5/6 s to 7 s, <= 17 characters a second, no overlaps
(target: 100 %); the transcript's word error rate against the reference (case and punctuation dropped, digits
spelled out; target: no worse than the same Whisper model run with the settings the service used before this
work: beam 5, word timestamps, Silero VAD 500 ms, 300 s windows); the master's integrated loudness and true
peak by ffmpeg's ebur128 (target: -16 +- 0.5 LUFS, <= -1 dBTP). The manifest's own figures are reported beside
them, and the worst segments with the manifest's rate, stretch and texts, and the reference words said there.

    .venv/bin/python bench/sync_quality.py             # 10-minute voices, es and ca  (~10 min on 2 cores)
    .venv/bin/python bench/sync_quality.py --quick     # 1.5-minute voices
    .venv/bin/python bench/sync_quality.py --sets real --languages es --no-baseline
    .venv/bin/python bench/sync_quality.py --source fr --languages es   # real French prompts, source "auto"

`--source es|fr|it|ru`: the real voice is the Asterisk prompts read in that language (`real_speech`, language=...),
the job says `source_language: "auto"` (detection, the multilingual Whisper base), one warm-up job of 30 s of that
language runs first, the synthetic set and the English-only baseline are skipped, the WER compares
accent-folded words (the Spanish texts are packaged without accents; digits left as digits), and the figures go
to sync_quality_<lang>.json (downloads under .../<full|quick>_<lang>/).

Downloads are kept in /tmp/dubbing-bench-sync-quality/<full|quick>/<set>/ for a closer look; `--reuse` measures
them again without running the service.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import re
import shutil
import subprocess
import tempfile
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from _lib import ADMIN_URL, inputs, machine, real_speech, servers
from _lib.results import median, percentile, write_results

from service.settings import Settings
from tests.support import scratch_database

SETS = ("real", "synthetic")
LANGUAGES = ("es", "ca")
KINDS = {"voice_stem": "voice_stem.wav", "master_wav": "master.wav", "captions_vtt": "captions.vtt",
         "captions_srt": "captions.srt", "manifest": "manifest.json"}
OUT_DIR = Path(tempfile.gettempdir()) / "dubbing-bench-sync-quality"

TARGETS = {"within_10_percent": 0.90, "onset_p95_ms": 100.0, "speech_iou": 0.85, "captions_ok": 1.0,
           "caption_overlaps": 0, "runs_into_next": 0, "lufs": -16.0, "lufs_tolerance": 0.5, "true_peak_dbtp": -1.0}

# ----------------------------------------------------------------------------- voice activity (own)
FRAME = 0.010
VAD_RATE = 16000
BELOW_SPEECH_DB, ABOVE_FLOOR_DB, SILENCE_DBFS = 35.0, 10.0, -60.0
BRIDGE_FRAMES, MIN_RUN_FRAMES = 25, 5
PRE_ROLL = 0.2  # how far before its segment's start a dub is looked for


def decode(path: Path | str, rate: int = VAD_RATE) -> npt.NDArray[np.float32]:
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(rate),
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32)


def frame_levels(path: Path | str) -> npt.NDArray[np.float64]:
    samples = decode(path)
    hop = round(FRAME * VAD_RATE)
    count = len(samples) // hop
    power = np.square(samples[: count * hop].reshape(count, hop).astype(np.float64)).mean(axis=1)
    return 10.0 * np.log10(np.maximum(power, 1e-12))


def runs_of(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Start and end (exclusive) frame of every run of True."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


@dataclass
class Activity:
    raw: npt.NDArray[np.bool_]  # frames above the threshold
    active: npt.NDArray[np.bool_]  # gaps bridged, blips dropped: what counts as speech
    core: npt.NDArray[np.bool_]  # active and above the threshold: where speech really starts and stops
    threshold_db: float
    speech_db: float
    floor_db: float

    def first_last(self, lo: int, hi: int) -> tuple[int, int] | None:
        lo, hi = max(lo, 0), min(hi, len(self.core))
        found = np.flatnonzero(self.core[lo:hi]) if hi > lo else np.zeros(0, dtype=np.int64)
        return None if found.size == 0 else (lo + int(found[0]), lo + int(found[-1]) + 1)


def detect(levels: npt.NDArray[np.float64], below_speech_db: float = BELOW_SPEECH_DB) -> Activity:
    speech, floor = float(np.percentile(levels, 95)), float(np.percentile(levels, 10))
    threshold = max(speech - below_speech_db, floor + ABOVE_FLOOR_DB, SILENCE_DBFS)
    raw = levels > threshold
    active = raw.copy()
    starts, ends = runs_of(raw)
    for gap_start, gap_end in zip(ends[:-1], starts[1:], strict=True):
        if gap_end - gap_start < BRIDGE_FRAMES:
            active[gap_start:gap_end] = True
    for start, end in zip(*runs_of(active), strict=True):
        if end - start < MIN_RUN_FRAMES:
            active[start:end] = False
    return Activity(raw, active, active & raw, round(threshold, 1), round(speech, 1), round(floor, 1))


def iou(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    n = max(len(a), len(b))
    a, b = np.pad(a, (0, n - len(a))), np.pad(b, (0, n - len(b)))
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def _f(seconds: float) -> int:
    return max(0, round(seconds / FRAME))


# ------------------------------------------------------------------------------------- per segment
def measure_segments(segments: list[dict[str, Any]], total: float, source: Activity,
                     stem: Activity) -> list[dict[str, Any]]:
    run_starts, run_ends = runs_of(source.active)
    out: list[dict[str, Any]] = []
    previous_dub_end = 0
    for i, seg in enumerate(segments):
        s, e = _f(seg["source_start"]), _f(seg["source_end"])
        nxt = _f(segments[i + 1]["source_start"]) if i + 1 < len(segments) else _f(total)
        prev_end = _f(segments[i - 1]["source_end"]) if i else 0
        row: dict[str, Any] = {"id": seg["id"], "planned_start": seg["source_start"],
                               "planned_span": round(seg["source_end"] - seg["source_start"], 3),
                               "next_start": round(nxt * FRAME, 3)}
        # The source: speech runs overlapping the planned span, kept between the neighbours.
        overlapping = np.flatnonzero((run_starts < max(e, s + 1)) & (run_ends > s))
        heard = None
        if overlapping.size:
            lo = max(int(run_starts[overlapping[0]]), prev_end)
            hi = min(int(run_ends[overlapping[-1]]), nxt)
            heard = source.first_last(lo, hi)
        row["source_onset"] = None if heard is None else round(heard[0] * FRAME, 3)
        row["source_span"] = None if heard is None else round((heard[1] - heard[0]) * FRAME, 3)
        # The dub: the stem's speech in its window, after the previous dub.
        dub = stem.first_last(max(s - _f(PRE_ROLL), previous_dub_end), nxt)
        row["dubbed_onset"] = None if dub is None else round(dub[0] * FRAME, 3)
        row["dubbed_duration"] = 0.0 if dub is None else round((dub[1] - dub[0]) * FRAME, 3)
        row["duration_ratio"] = (None if dub is None or heard is None
                                 else round(row["dubbed_duration"] / max(row["source_span"], FRAME), 4))
        row["onset_offset"] = None if dub is None or heard is None else round(
            row["dubbed_onset"] - row["source_onset"], 3)
        # Running into the next: the dub sounds up to the next start and the next dub follows with no break.
        # (Units that abut with no pause in the source are not counted when the dub fits its own span.)
        reaches = bool(dub is not None and i + 1 < len(segments) and dub[1] >= nxt - 2
                       and stem.raw[nxt:nxt + 3].any())
        row["reaches_next_start"] = reaches
        row["runs_into_next"] = bool(reaches and dub is not None and (heard is None or dub[1] - heard[1] > 10))
        row["source_continuous_at_next"] = bool(i + 1 < len(segments) and source.raw[max(nxt - 3, 0):nxt + 3].all())
        if dub is not None:
            previous_dub_end = dub[1]
        out.append(row)
    for i, row in enumerate(out[:-1]):  # the dub still sounding when the next segment's source speech begins
        onset = out[i + 1]["source_onset"]
        row["overlaps_next_source_speech"] = bool(
            row["dubbed_onset"] is not None and onset is not None
            and row["dubbed_onset"] + row["dubbed_duration"] > onset + 0.01)
    if out:
        out[-1]["overlaps_next_source_speech"] = False
    return out


def never_dubbed(lines: Sequence[tuple[float, float, str]], segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Reference lines (what was said) that no manifest segment overlaps: speech the recogniser dropped, which
    the per-segment figures cannot see (they measure only what was dubbed)."""
    missed = [(start, end) for start, end, _ in lines
              if not any(seg["source_start"] < end - 0.1 and seg["source_end"] > start + 0.1 for seg in segments)]
    return {"lines": len(missed), "of": len(lines), "seconds": round(sum(e - s for s, e in missed), 1),
            "starts": [round(s, 1) for s, _ in missed]}


def segment_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["duration_ratio"] for r in rows if r["duration_ratio"] is not None]
    offsets = sorted(abs(r["onset_offset"]) * 1000 for r in rows if r["onset_offset"] is not None)
    within = sum(1 for r in ratios if abs(r - 1.0) <= 0.10)
    return {
        "segments": len(rows),
        "no_source_speech_measured": sum(1 for r in rows if r["source_span"] is None),
        "no_dub_measured": sum(1 for r in rows if r["dubbed_onset"] is None),
        "within_10_percent": round(within / len(rows), 4) if rows else 1.0,
        "duration_ratio_p10": round(percentile(sorted(ratios), 10), 3) if ratios else None,
        "duration_ratio_median": round(median(ratios), 3) if ratios else None,
        "duration_ratio_p90": round(percentile(sorted(ratios), 90), 3) if ratios else None,
        "shorter_than_0_8": round(sum(1 for r in ratios if r < 0.8) / len(rows), 4) if rows else 0.0,
        "longer_than_1_1": round(sum(1 for r in ratios if r > 1.1) / len(rows), 4) if rows else 0.0,
        "onset_p50_ms": round(percentile(offsets, 50)) if offsets else None,
        "onset_p95_ms": round(percentile(offsets, 95)) if offsets else None,
        "onset_max_ms": round(offsets[-1]) if offsets else None,
        "reaches_next_start": sum(1 for r in rows if r["reaches_next_start"]),
        "runs_into_next": sum(1 for r in rows if r["runs_into_next"]),
        "reaches_next_where_source_has_no_pause": sum(1 for r in rows if r["reaches_next_start"]
                                                      and r["source_continuous_at_next"]),
        "overlaps_next_source_speech": sum(1 for r in rows if r.get("overlaps_next_source_speech")),
    }


# ----------------------------------------------------------------------------------------- captions
_TIMING = re.compile(r"((?:\d+:)?\d{1,2}:\d{2}[.,]\d{3})\s*-->\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{3})")


def _stamp(text: str) -> float:
    value = 0.0
    for part in text.replace(",", ".").split(":"):
        value = value * 60 + float(part)
    return value


def parse_cues(text: str) -> list[tuple[float, float, list[str]]]:
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = block.split("\n")
        for k, line in enumerate(lines):
            match = _TIMING.search(line)
            if match:
                body = [ln.strip() for ln in lines[k + 1:] if ln.strip()]
                cues.append((_stamp(match.group(1)), _stamp(match.group(2)), body))
                break
    return cues


def caption_figures(vtt: str, srt: str) -> dict[str, Any]:
    import html

    cues = [(s, e, [html.unescape(ln) for ln in body]) for s, e, body in parse_cues(vtt)]
    fails = {"line_length": 0, "lines": 0, "too_long": 0, "too_short": 0, "cps": 0}
    overlaps, ok, worst_cps = 0, 0, 0.0
    previous_end = -1.0
    for start, end, lines in cues:
        duration = end - start
        chars = len(" ".join(lines))
        bad = {"line_length": any(len(ln) > 42 for ln in lines), "lines": len(lines) > 2,
               "too_long": duration > 7.0 + 0.0015, "too_short": duration < 5 / 6 - 0.0015,
               "cps": duration < chars / 17.0 - 0.0015}
        for key, flag in bad.items():
            fails[key] += flag
        ok += not any(bad.values())
        worst_cps = max(worst_cps, chars / max(duration, 1e-3))
        overlaps += start < previous_end - 0.0005
        previous_end = end
    srt_cues = [(round(s, 3), round(e, 3), body) for s, e, body in parse_cues(srt)]
    same = srt_cues == [(round(s, 3), round(e, 3), body) for s, e, body in cues]
    return {"cues": len(cues), "within_limits": round(ok / len(cues), 4) if cues else 1.0, "failures": fails,
            "overlaps": overlaps, "max_cps": round(worst_cps, 2), "srt_matches_vtt": same}


# ------------------------------------------------------------------------------------- word errors
_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
# Abbreviations, and British spellings in the synthetic set's sentences that the recogniser writes American.
_SPELLING = {"mr": "mister", "mrs": "missus", "dr": "doctor", "ok": "okay", "neighbour": "neighbor",
             "traveller": "traveler", "colour": "color"}


def number_words(n: int) -> list[str]:
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (number_words(n % 100) if n % 100 else [])
    if n < 1_000_000:
        return number_words(n // 1000) + ["thousand"] + (number_words(n % 1000) if n % 1000 else [])
    return [_ONES[int(d)] for d in str(n)]


SOURCE = {"language": "en"}  # the voice's language: set by main (--source), read by normalise


def normalise_other(text: str) -> list[str]:
    """Any language but English: lower case, no punctuation, accents folded (the packaged Spanish texts have
    none; Cyrillic short i and yo fold to their base letters on both sides alike), digits kept as written."""
    text = unicodedata.normalize("NFKD", text.lower().replace("\u2019", "'"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return [tok.strip("'") for tok in re.findall(r"[\w']+", re.sub(r"[-\u2013\u2014/._]", " ", text))
            if tok.strip("'")]


def normalise(text: str) -> list[str]:
    """Lower case, no punctuation, digits spelled out (as the reference texts mostly are), one spelling of a word."""
    if SOURCE["language"] != "en":
        return normalise_other(text)
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(\d),(\d)", r"\1\2", text)
    text = text.replace("%", " percent ").replace("&", " and ").replace("#", " pound ").replace("*", " star ")
    out: list[str] = []
    for token in re.findall(r"[a-z0-9']+", re.sub(r"[-\u2013\u2014/.]", " ", text)):
        token = token.strip("'")
        if not token:
            continue
        if token.isdigit():
            out.extend(number_words(int(token)) if (len(token) < 7 and not token.startswith("0")) or token == "0"
                       else [_ONES[int(d)] for d in token])
        else:
            out.append(_SPELLING.get(token, token))
    return out


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """Levenshtein alignment: (ref index, hyp index) pairs; None on one side for an insertion or deletion."""
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    hyp_arr = np.array(hyp, dtype=object)
    for i in range(1, n + 1):
        sub = cost[i - 1, :-1] + (hyp_arr != ref[i - 1])
        row = np.minimum(cost[i - 1, 1:] + 1, sub)
        # insertions run along the row: a cumulative minimum of (row[j] - j) + j
        full = np.concatenate(([cost[i, 0]], row))
        cost[i] = np.minimum.accumulate(full - np.arange(m + 1)) + np.arange(m + 1)
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return pairs[::-1]


def wer(ref: Sequence[str], hyp: Sequence[str]) -> float:
    errors = sum(1 for r, h in align(ref, hyp) if r is None or h is None or ref[r] != hyp[h])
    return errors / max(len(ref), 1)


def transcript_words(transcript: dict[str, Any]) -> list[tuple[str, int]]:
    """The transcript's normalised words, each with the unit it was dubbed in (units are runs of words)."""
    words = [w["text"] for seg in transcript["segments"] for w in seg.get("words", [])]
    units = transcript.get("units") or []
    counts = [len(u["text"].split()) for u in units]
    if not words or sum(counts) != len(words):  # units do not account for the words: assign by time
        starts = [u["start"] for u in units]
        timed = [(w["text"], w["start"]) for seg in transcript["segments"] for w in seg.get("words", [])]
        owner = [max(0, int(np.searchsorted(starts, t + 0.3, side="right")) - 1) for _, t in timed]
        return [(tok, units[k]["id"] if units else -1) for (text, _), k in zip(timed, owner, strict=True)
                for tok in normalise(text)]
    out: list[tuple[str, int]] = []
    it = iter(words)
    for unit, count in zip(units, counts, strict=True):
        for word in itertools.islice(it, count):
            out.extend((tok, unit["id"]) for tok in normalise(word))
    return out


def recognition(transcript: dict[str, Any], lines: Sequence[tuple[float, float, str]]) -> dict[str, Any]:
    """WER of the service's transcript, and per unit: the reference words said there and the errors made."""
    ref = [(tok, k) for k, (_, _, text) in enumerate(lines) for tok in normalise(text)]
    hyp = transcript_words(transcript)
    pairs = align([t for t, _ in ref], [t for t, _ in hyp])
    per_unit: dict[int, dict[str, list[str]]] = {}
    errors = 0
    deleted: list[str] = []  # reference words nobody heard since the last recognised word
    previous: int | None = None

    def note(unit: int, words: list[str], wrong: list[str]) -> None:
        slot = per_unit.setdefault(unit, {"reference": [], "errors": []})
        slot["reference"] += words
        slot["errors"] += wrong

    for r, h in pairs:
        if h is None:
            assert r is not None
            deleted.append(ref[r][0])
            errors += 1
            continue
        unit = hyp[h][1]
        if deleted:  # words missed between two units belong to either: shown with both
            for owner in {unit} if previous in (None, unit) else {previous, unit}:
                note(owner, deleted, [f"-{w}" for w in deleted])
            deleted = []
        if r is None:
            note(unit, [], [f"+{hyp[h][0]}"])
            errors += 1
        else:
            wrong = ref[r][0] != hyp[h][0]
            note(unit, [ref[r][0]], [f"{ref[r][0]}>{hyp[h][0]}"] if wrong else [])
            errors += wrong
        previous = unit
    if deleted and previous is not None:
        note(previous, deleted, [f"-{w}" for w in deleted])
    return {"wer": round(errors / max(len(ref), 1), 4), "reference_words": len(ref), "hypothesis_words": len(hyp),
            "per_unit": {k: {"reference": " ".join(v["reference"]), "errors": v["errors"]}
                         for k, v in per_unit.items()}}


def whisper_before(path: Path) -> tuple[str, float]:
    """The same model with the settings the service used before this work (commit 1cfff53): beam 5, word
    timestamps, Silero VAD with 500 ms silences, no conditioning on previous text, files over 360 s in 300 s
    windows cut at the quietest 100 ms within 5 s of each boundary."""
    from faster_whisper import WhisperModel

    from service.engines.offline.whisper import default_model_dir

    started = time.perf_counter()
    model = WhisperModel(default_model_dir(), device="cpu", compute_type="int8", local_files_only=True)
    audio = decode(path)
    options: dict[str, Any] = {"language": "en", "task": "transcribe", "beam_size": 5, "word_timestamps": True,
                               "vad_filter": True, "vad_parameters": {"min_silence_duration_ms": 500},
                               "condition_on_previous_text": False}
    windows: list[Any] = [str(path)]  # a short file goes to faster-whisper as a path (it decodes it itself)
    if len(audio) > 360 * VAD_RATE:  # a long one in windows decoded by ffmpeg
        windows, start = [], 0
        hop = VAD_RATE // 10
        while start < len(audio) - VAD_RATE // 20:
            cut = 300 * VAD_RATE
            if start + cut < len(audio):
                lo = start + cut - 5 * VAD_RATE
                frames = (min(start + cut + 5 * VAD_RATE, len(audio)) - lo) // hop
                rms = np.sqrt(np.square(audio[lo:lo + frames * hop].reshape(frames, hop)).mean(axis=1))
                cut = lo + int(np.argmin(rms)) * hop + hop // 2 - start
            windows.append(audio[start:start + cut])
            start += max(cut, VAD_RATE)
    texts = []
    for window in windows:
        segments, _ = model.transcribe(window, **options)
        texts.extend(s.text for s in segments)
    return " ".join(texts), time.perf_counter() - started


# --------------------------------------------------------------------------------------- diagnosis
def natural_duration(seg: dict[str, Any]) -> float:
    """How long the line lasts at tempo 1, from what the manifest says was played (plus what was cut)."""
    return (seg["dubbed_duration"] + seg["cut_seconds"]) * seg["stretch"] * seg["rate"]


def diagnose(seg: dict[str, Any], mine: dict[str, Any], unit_recognition: dict[str, Any] | None,
             settings: Settings) -> list[str]:
    """Why a segment misses, from the manifest's plan and this script's measurements."""
    why: list[str] = []
    planned = seg["source_span"]
    tempo = seg["rate"] * seg["stretch"]
    fastest = settings.max_engine_rate * settings.stretch_ceiling
    wanted = natural_duration(seg) / planned if planned > 0 else math.inf
    if mine["source_span"] is not None and planned > 0 and abs(mine["source_span"] / planned - 1) > 0.10:
        why.append(f"planned span {planned:.2f}s != measured source speech {mine['source_span']:.2f}s")
    if wanted > fastest * 1.02 and tempo >= fastest - 0.02:
        why.append(f"translation too long: needs tempo {wanted:.2f}, ceiling {fastest:.2f}")
    elif wanted < settings.min_tempo * 0.98 and tempo <= settings.min_tempo + 0.02:
        why.append(f"translation too short: needs tempo {wanted:.2f}, floor {settings.min_tempo:.2f}")
    if seg["overflowed"]:
        why.append(f"cut {seg['cut_seconds']:.2f}s at the next segment"
                   + (" (left unstretched: within the fitting tolerance)" if seg["stretch"] == 1.0 else ""))
    placed = seg["placed_end"] - seg["placed_start"]
    if mine["dubbed_onset"] is not None and placed > 0 and abs(mine["dubbed_duration"] / placed - 1) > 0.10:
        why.append(f"clip {placed:.2f}s placed, speech heard in it {mine['dubbed_duration']:.2f}s")
    if mine["dubbed_onset"] is not None and mine["dubbed_onset"] - seg["placed_start"] > 0.05:
        why.append(f"dub starts {mine['dubbed_onset'] - seg['placed_start']:.2f}s into its clip")
    if mine["source_onset"] is not None and abs(mine["source_onset"] - seg["source_start"]) > 0.05:
        why.append(f"source onset {mine['source_onset']:.2f}s vs planned start {seg['source_start']:.2f}s")
    if unit_recognition and unit_recognition["errors"]:
        why.append("recogniser: " + " ".join(unit_recognition["errors"][:6]))
    return why


def worst(segments: list[dict[str, Any]], rows: list[dict[str, Any]], recog: dict[str, Any] | None,
          settings: Settings, count: int) -> dict[str, list[dict[str, Any]]]:
    def entry(k: int) -> dict[str, Any]:
        seg, mine = segments[k], rows[k]
        unit_rec = (recog or {}).get("per_unit", {}).get(seg["id"])
        return {
            "id": seg["id"], "source_start": seg["source_start"], "planned_span": seg["source_span"],
            "measured": {x: mine[x] for x in ("source_onset", "source_span", "dubbed_onset", "dubbed_duration",
                                              "duration_ratio", "onset_offset", "runs_into_next")},
            "manifest_measured": seg.get("measured"),
            "placed": [seg["placed_start"], seg["placed_end"]], "natural_duration": round(natural_duration(seg), 3),
            "rate": seg["rate"], "stretch": seg["stretch"], "tempo": round(seg["rate"] * seg["stretch"], 3),
            "needed_tempo": round(natural_duration(seg) / seg["source_span"], 3) if seg["source_span"] else None,
            "overflowed": seg["overflowed"], "cut_seconds": seg["cut_seconds"],
            "source_text": seg["source_text"], "reference_there": (unit_rec or {}).get("reference"),
            "target_text": seg["target_text"], "shortened_from": seg["shortened_from"],
            "why": diagnose(seg, mine, unit_rec, settings),
        }

    by_ratio = sorted((k for k, r in enumerate(rows) if r["duration_ratio"] is not None),
                      key=lambda k: -abs(math.log(max(rows[k]["duration_ratio"], 1e-3))))
    by_onset = sorted((k for k, r in enumerate(rows) if r["onset_offset"] is not None),
                      key=lambda k: -abs(rows[k]["onset_offset"]))
    missing = [k for k, r in enumerate(rows) if r["duration_ratio"] is None]
    return {"duration": [entry(k) for k in by_ratio[:count]], "onset": [entry(k) for k in by_onset[:count]],
            "unmeasured": [entry(k) for k in missing[:count]]}


def floor_what_if(segments: list[dict[str, Any]], rows: list[dict[str, Any]], settings: Settings) -> dict[str, float]:
    """Share within +-10 % if the tempo floor were lower: segments held at today's floor and still short are
    slowed further (their measured duration taken as proportional to 1 / tempo); nothing else changes."""
    out: dict[str, float] = {}
    for floor in sorted({settings.min_tempo, 0.8, 0.75, 0.7, 0.65}, reverse=True):
        within = 0
        for seg, row in zip(segments, rows, strict=True):
            ratio = row["duration_ratio"]
            if ratio is None:
                continue
            tempo = seg["rate"] * seg["stretch"]
            if ratio < 1.0 and tempo <= settings.min_tempo + 0.01:
                slower = max(floor, tempo * ratio)
                ratio = ratio * tempo / slower
            within += abs(ratio - 1.0) <= 0.10
        out[f"{floor:g}"] = round(within / max(len(rows), 1), 4)
    return out


def miss_causes(segments: list[dict[str, Any]], rows: list[dict[str, Any]], recog: dict[str, Any] | None,
                settings: Settings) -> dict[str, int]:
    """How many of the segments outside +-10 % carry each kind of reason."""
    counts: dict[str, int] = {}
    for seg, mine in zip(segments, rows, strict=True):
        ratio = mine["duration_ratio"]
        if ratio is not None and abs(ratio - 1) <= 0.10:
            continue
        why = diagnose(seg, mine, (recog or {}).get("per_unit", {}).get(seg["id"]), settings)
        for reason in why or ["(none found)"]:
            key = re.sub(r"\s+", " ", re.sub(r"[-\d.]+s?\b|\(.*\)", "", reason.split(":")[0])).strip()
            counts[key] = counts.get(key, 0) + 1
        counts["longer" if ratio is not None and ratio > 1 else "shorter"] = counts.get(
            "longer" if ratio is not None and ratio > 1 else "shorter", 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


# ------------------------------------------------------------------------------------- the service
async def download(client: httpx.AsyncClient, url: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    async with client.stream("GET", url, timeout=120) as response:
        response.raise_for_status()
        with open(path, "wb") as out:
            async for chunk in response.aiter_bytes(1 << 20):
                out.write(chunk)


async def run_sets(voices: dict[str, inputs.VoiceInput], background: Path, languages: list[str],
                   out_dir: Path, source: str = "en") -> dict[str, Any]:
    runs: dict[str, Any] = {}
    async with scratch_database(ADMIN_URL, "bench_sync") as url:
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
            async with servers.serving("dubbing", url, Path(tmp), CPU_WORKERS="2") as server, \
                    httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
                headers = servers.auth("bench")
                catalog = (await client.get("/v1/languages", headers=headers)).json()
                offered = {s["code"]: s["targets"] for s in catalog["sources"]}
                runs["_catalog"] = catalog
                print(f"targets offered from {source}: {', '.join(offered.get(source, []))}", flush=True)
                await inputs.warm_up(client, headers, Path(tmp) / "warmup",
                                     languages[0] if source == "en" else offered.get("en", ["es"])[0])
                if source != "en":
                    await inputs.warm_up_language(client, headers, source, languages[0])
                for name, voice in voices.items():
                    objects = await inputs.upload_files(client, headers, {"voice": voice.path,
                                                                          "background": background})
                    load = machine.load_average()
                    run = await inputs.run_job(client, headers, {
                        "voice_object": objects["voice"], "background_object": objects["background"],
                        "source_language": "en" if source == "en" else "auto", "target_languages": languages},
                        timeout=3600)
                    job = (await client.get(f"/v1/jobs/{run.job_id}", headers=headers)).json()
                    listed = (await client.get(f"/v1/jobs/{run.job_id}/artifacts", headers=headers)).json()
                    folder = out_dir / name
                    shutil.rmtree(folder, ignore_errors=True)
                    files: dict[str, dict[str, str]] = {}
                    for art in listed["artifacts"]:
                        lang = art["target_language"]
                        if art["kind"] == "transcript_json":
                            await download(client, art["download_url"], folder / "transcript.json")
                            files.setdefault("_job", {})["transcript_json"] = str(folder / "transcript.json")
                        elif lang and art["kind"] in KINDS:
                            path = folder / lang / KINDS[art["kind"]]
                            await download(client, art["download_url"], path)
                            files.setdefault(lang, {})[art["kind"]] = str(path)
                    conn = await _connect(url)
                    try:
                        timing = await inputs.stage_times(conn, run.job_id)
                    finally:
                        await conn.close()
                    runs[name] = {
                        "job_id": run.job_id, "status": run.status, "wall_seconds": round(run.wall_seconds, 1),
                        "load_average_before": load,
                        "job_languages": {k: v for k, v in job.items() if "language" in k},
                        "tasks": [{k: t.get(k) for k in ("target_language", "status", "pivot", "error")}
                                  for t in job.get("tasks", [])],
                        "stage_seconds": {lang: t["stages"] for lang, t in timing["tasks"].items()},
                        "task_errors": {t["target_language"]: t.get("error") for t in job.get("tasks", [])
                                        if t.get("error")},
                        "files": files}
                    print(f"{name}: job {run.status} in {run.wall_seconds:.1f} s; stages "
                          + "; ".join(f"{lang} " + ", ".join(f"{s} {v:.1f}" for s, v in t["stages"].items())
                                      for lang, t in timing["tasks"].items()), flush=True)
    return runs


async def _connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(url)


# ------------------------------------------------------------------------------------- measurement
def measure_language(voice: inputs.VoiceInput, source: Activity, files: dict[str, str],
                     recog: dict[str, Any] | None, settings: Settings, worst_count: int) -> dict[str, Any]:
    manifest = json.loads(Path(files["manifest"]).read_text())
    segments = manifest["segments"]
    total = float(manifest["duration_seconds"])
    stem = detect(frame_levels(files["voice_stem"]))
    rows = measure_segments(segments, total, source, stem)
    figures = segment_figures(rows)
    figures["speech_iou"] = round(iou(source.active, stem.active), 4)
    figures["lines_never_dubbed"] = never_dubbed(voice.lines, segments)
    sensitivity = {}
    for below in (30.0, 40.0):  # how much the figures move with the detector's threshold
        src, stm = detect(frame_levels(voice.path), below), detect(frame_levels(files["voice_stem"]), below)
        alt = segment_figures(measure_segments(segments, total, src, stm))
        sensitivity[f"{below:g}_dB_below_speech"] = {
            "within_10_percent": alt["within_10_percent"], "onset_p95_ms": alt["onset_p95_ms"],
            "speech_iou": round(iou(src.active, stm.active), 4)}
    captions = caption_figures(Path(files["captions_vtt"]).read_text(), Path(files["captions_srt"]).read_text())
    loud = inputs.ebur128(files["master_wav"])
    sync = manifest.get("sync", {})
    ms_loud = manifest.get("loudness", {})
    measured_units = [s["measured"] for s in segments if s.get("measured")]
    return {
        "mine": {**figures, "captions": captions, "loudness": loud,
                 "detector": {"source": {"threshold_db": source.threshold_db, "speech_db": source.speech_db,
                                         "floor_db": source.floor_db},
                              "stem": {"threshold_db": stem.threshold_db, "speech_db": stem.speech_db,
                                       "floor_db": stem.floor_db}},
                 "threshold_sensitivity": sensitivity},
        "manifest": {
            "speech_iou": sync.get("speech_iou"), "within_10_percent": sync.get("within_10_percent"),
            "duration_ratio_p50": sync.get("duration_ratio_p50"),
            "onset_p50_ms": sync.get("onset_offset_p50_ms"), "onset_p95_ms": sync.get("onset_offset_p95_ms"),
            "units": sync.get("units"), "units_dubbed": sync.get("units_dubbed"),
            "planned": sync.get("planned"),
            "shorter_than_0_8": round(sum(1 for m in measured_units if m["duration_ratio"] is not None
                                          and m["duration_ratio"] < 0.8) / max(len(segments), 1), 4),
            "respoken_or_rate_changed": sum(1 for s in segments if s["rate"] != 1.0),
            "stretched": sum(1 for s in segments if s["stretch"] != 1.0),
            "at_tempo_ceiling": sum(1 for s in segments if s["rate"] * s["stretch"]
                                    >= settings.max_engine_rate * settings.stretch_ceiling - 0.01),
            "at_tempo_floor": sum(1 for s in segments if s["rate"] * s["stretch"] <= settings.min_tempo + 0.01),
            "overflowed": sum(1 for s in segments if s["overflowed"]),
            "shortened": sum(1 for s in segments if s["shortened_from"]),
            "captions": manifest.get("captions"),
            "loudness": {"integrated_lufs": ms_loud.get("integrated_lufs"),
                         "true_peak_dbtp": ms_loud.get("true_peak_dbtp")},
        },
        "miss_causes": miss_causes(segments, rows, recog, settings),
        "within_10_percent_if_tempo_floor_were": floor_what_if(segments, rows, settings),
        "worst": worst(segments, rows, recog, settings, worst_count),
        "per_segment": rows,
    }


def verdict(lang: dict[str, Any], wer_now: float | None, wer_before: float | None) -> dict[str, bool | None]:
    mine = lang["mine"]
    loud = mine["loudness"]
    return {
        "within_10_percent": mine["within_10_percent"] >= TARGETS["within_10_percent"],
        "onset_p95": mine["onset_p95_ms"] is not None and mine["onset_p95_ms"] <= TARGETS["onset_p95_ms"],
        "speech_iou": mine["speech_iou"] >= TARGETS["speech_iou"],
        "captions": mine["captions"]["within_limits"] >= 1.0 and mine["captions"]["overlaps"] == 0,
        "no_run_into_next": mine["runs_into_next"] == 0,
        "wer_no_worse": None if wer_now is None or wer_before is None else wer_now <= wer_before + 0.005,
        "loudness": loud["integrated_lufs"] is not None
        and abs(loud["integrated_lufs"] - TARGETS["lufs"]) <= TARGETS["lufs_tolerance"],
        "true_peak": loud["true_peak_dbtp"] is not None and loud["true_peak_dbtp"] <= TARGETS["true_peak_dbtp"],
    }


# ----------------------------------------------------------------------------------------- printing
def _pct(x: float | None) -> str:
    return "  -  " if x is None else f"{100 * x:5.1f}"


def print_table(results: dict[str, Any]) -> None:
    print("\n=== sync quality: this script's measurement | the manifest's own")
    columns = [("set/lang", 13), ("±10 %", 13), ("median", 13), ("<0.8x", 13), ("onset p50/p95/max ms", 24),
               ("IoU", 13), ("cues ok", 8), ("ovl", 4), ("into", 5), ("WER now/before", 15), ("LUFS", 7),
               ("TP", 6), ("job s", 6)]
    print("".join(f"{title:>{width}}" if k else f"{title:<{width}}" for k, (title, width) in enumerate(columns)))
    for name, data in results["sets"].items():
        rec = data.get("recognition") or {}
        wer_now, wer_before = rec.get("wer"), (data.get("whisper_before") or {}).get("wer")
        for lang, figures in data["languages"].items():
            m, s = figures["mine"], figures["manifest"]
            median_s = "-" if s["duration_ratio_p50"] is None else f"{s['duration_ratio_p50']:.2f}"
            cells = [f"{name}/{lang}", f"{_pct(m['within_10_percent'])}|{_pct(s['within_10_percent'])}",
                     f"{m['duration_ratio_median']:.3f}|{median_s}",
                     f"{_pct(m['shorter_than_0_8'])}|{_pct(s['shorter_than_0_8'])}",
                     f"{m['onset_p50_ms']}/{m['onset_p95_ms']}/{m['onset_max_ms']}|{s['onset_p95_ms']}",
                     f"{m['speech_iou']:.3f}|{s['speech_iou'] or 0:.3f}", _pct(m["captions"]["within_limits"]),
                     str(m["captions"]["overlaps"]), str(m["runs_into_next"]),
                     f"{_pct(wer_now)}/{_pct(wer_before)}", f"{m['loudness']['integrated_lufs']:.1f}",
                     f"{m['loudness']['true_peak_dbtp']:.1f}", f"{data['job']['wall_seconds']:.0f}"]
            print("".join(f"{cell:>{width}}" if k else f"{cell:<{width}}"
                          for k, (cell, (_, width)) in enumerate(zip(cells, columns, strict=True))))
    print(f"targets: ±10 % >= {100 * TARGETS['within_10_percent']:.0f} %, onset p95 <= "
          f"{TARGETS['onset_p95_ms']:.0f} ms, IoU >= {TARGETS['speech_iou']}, cues 100 % and no overlaps (ovl), "
          f"none running into the next (into), WER no worse, {TARGETS['lufs']:g} ± {TARGETS['lufs_tolerance']} LUFS, "
          f"TP <= {TARGETS['true_peak_dbtp']:g} dBTP; WER in %, job s = one job for both languages")
    for name, data in results["sets"].items():
        for lang, figures in data["languages"].items():
            failed = [k for k, ok in figures["verdict"].items() if ok is False]
            print(f"  {name}/{lang}: {'all targets met' if not failed else 'NOT MET: ' + ', '.join(failed)}; "
                  f"segments {figures['mine']['segments']}, reference lines never dubbed "
                  f"{figures['mine']['lines_never_dubbed']['lines']} of {figures['mine']['lines_never_dubbed']['of']} "
                  f"({figures['mine']['lines_never_dubbed']['seconds']} s), reaching the next start "
                  f"{figures['mine']['reaches_next_start']}, manifest overflowed {figures['manifest']['overflowed']}, "
                  f"at tempo ceiling {figures['manifest']['at_tempo_ceiling']}, floor "
                  f"{figures['manifest']['at_tempo_floor']}; misses by cause: {figures['miss_causes']}; ±10 % if the "
                  f"tempo floor were: {figures['within_10_percent_if_tempo_floor_were']}")


def print_worst(results: dict[str, Any], count: int) -> None:
    for name, data in results["sets"].items():
        for lang, figures in data["languages"].items():
            for kind in ("duration", "onset"):
                print(f"\n--- {name}/{lang}: worst by {kind}")
                for w in figures["worst"][kind][:count]:
                    m = w["measured"]
                    print(f"  #{w['id']} at {w['source_start']:.2f}s: planned span {w['planned_span']:.2f}s, "
                          f"source heard {m['source_span']}s, dub heard {m['dubbed_duration']}s "
                          f"(ratio {m['duration_ratio']}, onset {m['onset_offset']}s; manifest ratio "
                          f"{(w['manifest_measured'] or {}).get('duration_ratio')}); rate {w['rate']} x stretch "
                          f"{w['stretch']} = {w['tempo']} (needed {w['needed_tempo']}), natural "
                          f"{w['natural_duration']:.2f}s, cut {w['cut_seconds']}s")
                    print(f"      {results.get('source_language', 'en')}: {w['source_text']!r}\n"
                          f"      ref: {w['reference_there']!r}\n"
                          f"      {lang}: {w['target_text']!r}\n      why: {'; '.join(w['why']) or '?'}")


# --------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1.5-minute voices")
    parser.add_argument("--minutes", type=float, default=None, help="voice length (default 10, quick 1.5)")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: real,synthetic")
    parser.add_argument("--languages", default=None, help="target languages (default es,ca; from another "
                        "source: ca for es, es for fr and it, en for ru)")
    parser.add_argument("--source", default="en", choices=real_speech.LANGUAGES,
                        help="language of the real voice (default en); others are sent as source_language auto")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the Whisper run with the settings used before (WER compared against nothing)")
    parser.add_argument("--worst", type=int, default=5, help="worst segments printed per set and language")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the previous run's downloads again instead of running the service")
    args = parser.parse_args()
    minutes = args.minutes or (1.5 if args.quick else 10.0)
    seconds = round(minutes * 60.0)
    source_language = args.source
    SOURCE["language"] = source_language
    sets = [s for s in args.sets.split(",") if s]
    if source_language != "en":
        sets = ["real"]  # the synthetic voice is English
        args.no_baseline = True  # the baseline runs tiny.en with language en
    default_targets = {"en": LANGUAGES, "es": ("ca",), "fr": ("es",), "it": ("es",), "ru": ("en",)}
    languages = [lang for lang in (args.languages or ",".join(default_targets[source_language])).split(",") if lang]
    settings = Settings.from_env()
    suffix = "" if source_language == "en" else f"_{source_language}"
    out_dir = OUT_DIR / (("quick" if args.quick else "full") + suffix)

    started = time.perf_counter()
    print(f"preparing {seconds} s inputs (cached under {inputs.INPUTS_DIR})...", flush=True)
    makers = {"real": lambda: real_speech.make_real_voice(seconds, language=source_language),
              "synthetic": lambda: inputs.make_voice(seconds)}
    voices = {name: makers[name]() for name in sets}
    background = inputs.make_background(seconds)
    for name, voice in voices.items():
        words = sum(len(normalise(text)) for _, _, text in voice.lines)
        print(f"  {name}: {len(voice.lines)} lines, {voice.speech_seconds:.0f} s of speech, {words} reference words")

    results: dict[str, Any] = {
        "benchmark": "sync_quality", "source_language": source_language, "quick": args.quick,
        "environment": machine.environment(),
        "input_seconds": seconds, "languages": languages, "targets": TARGETS,
        "credits": real_speech.credit(source_language),
        "service_settings": {k: getattr(settings, k) for k in (
            "max_engine_rate", "stretch_ceiling", "min_tempo", "unit_pause_seconds", "caption_max_cps",
            "target_lufs", "true_peak_dbtp", "duck_db")},
        "detector": {"frame_seconds": FRAME, "below_speech_db": BELOW_SPEECH_DB, "above_floor_db": ABOVE_FLOOR_DB,
                     "silence_dbfs": SILENCE_DBFS, "bridge_seconds": BRIDGE_FRAMES * FRAME,
                     "min_run_seconds": MIN_RUN_FRAMES * FRAME, "pre_roll_seconds": PRE_ROLL},
        "sets": {}}
    if args.reuse:
        runs = json.loads((out_dir / "runs.json").read_text())
    else:
        runs = asyncio.run(run_sets(voices, background, languages, out_dir, source_language))
        (out_dir / "runs.json").write_text(json.dumps(runs, indent=1))

    for name, voice in voices.items():
        run = runs[name]
        source = detect(frame_levels(voice.path))
        transcript = json.loads(Path(run["files"]["_job"]["transcript_json"]).read_text())
        recog = recognition(transcript, voice.lines)
        data: dict[str, Any] = {
            "input": {"seconds": seconds, "lines": len(voice.lines), "speech_seconds": round(voice.speech_seconds, 1),
                      "units": len(transcript.get("units") or [])},
            "job": {k: v for k, v in run.items() if k != "files"},
            "recognition": {k: v for k, v in recog.items() if k != "per_unit"}, "languages": {}}
        if not args.no_baseline:
            text, took = whisper_before(voice.path)
            ref = [tok for _, _, line in voice.lines for tok in normalise(line)]
            data["whisper_before"] = {"wer": round(wer(ref, normalise(text)), 4), "seconds": round(took, 1)}
        for lang in languages:
            if lang not in run["files"]:
                print(f"{name}/{lang}: no artifacts ({run['task_errors'].get(lang)})")
                continue
            figures = measure_language(voice, source, run["files"][lang], recog, settings, args.worst)
            figures["verdict"] = verdict(figures, recog["wer"], (data.get("whisper_before") or {}).get("wer"))
            data["languages"][lang] = figures
        results["sets"][name] = data
    results["seconds_total"] = round(time.perf_counter() - started, 1)
    results["downloads"] = str(out_dir)

    print_worst(results, args.worst)
    print_table(results)
    results["catalog"] = runs.get("_catalog")
    write_results(f"sync_quality{suffix}", results, quick=args.quick)


if __name__ == "__main__":
    main()
