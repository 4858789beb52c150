"""Subtitles for the dubbed track: SRT and WebVTT within common readability limits.

Limits follow broadcast practice: 42 characters a line, 2 lines, between 5/6 s and 7 s on screen, and
no faster than 17 characters a second. The 17 cps rule is for alphabetic scripts (Latin, and Cyrillic,
Greek, Arabic or Hebrew are read alike); lines mostly in Chinese or Japanese characters (Han, kana) are
held to 9 characters a second, Korean (Hangul) to 12 and Thai to 15, as subtitle style guides do for
scripts that pack a word into one or two characters (`max_cps_for`). Long segments are cut at
punctuation where possible, else at word boundaries, and their time is shared out in proportion to
characters, since that is how the speech fills the slot. A cue that would flash by faster than a person
reads stays up longer, into the silence after its speech; when the next cue's speech comes first, that
cue waits (its lag behind the speech is reported by `reading_lag`), so every cue can be read and none
overlaps another.
"""

from __future__ import annotations

import dataclasses
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

MAX_LINE = 42
MAX_LINES = 2
MAX_DURATION = 7.0
MIN_DURATION = 5 / 6
MAX_CPS = 17.0

_BREAK_AFTER = (".", "!", "?", "…", ";", ":", ",", "\u2014", "\u2013")  # em and en dash
_TIMING_RE = re.compile(
    r"^\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s*-->\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})(?:\s.*)?$"
)


@dataclass(frozen=True, slots=True)
class Cue:
    start: float
    end: float
    text: str  # at most MAX_LINES lines joined by "\n"
    speaker: str | None = None  # S1, S2, ... when speakers were told apart

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")


def build_cues(segments: list[tuple[float, float, str]], *, max_cps: float | None = MAX_CPS,
               timeline_end: float | None = None, speakers: Sequence[str | None] | None = None) -> list[Cue]:
    """Turn timed segments into cues within the line, line-count, duration and reading-speed limits.

    `max_cps` None keeps the speech's own timing (no reading-speed rule, no minimum duration);
    `timeline_end` is where the last cue must be gone; `speakers` (one per segment) marks each cue with who
    speaks it, and lines of two speakers never share a cue.
    """
    cues: list[Cue] = []
    who = list(speakers) if speakers is not None else [None] * len(segments)
    ordered = sorted(zip(segments, who, strict=True), key=lambda s: s[0][0])
    if max_cps is not None:
        ordered = _joined_when_hurried(ordered, max_cps)
    for (start, end, text), speaker in ordered:
        words = _words(text)
        if not words:
            continue
        start, end = max(0.0, float(start)), float(end)
        if end - start <= 0:
            end = start + MIN_DURATION
        cues.extend(dataclasses.replace(c, speaker=speaker) for c in _split_segment(start, end, words))
    if max_cps is None:
        return _no_overlap(cues)
    return _readable(cues, max_cps, timeline_end)


# Lines this close together can share a cue.
_JOIN_GAP = 0.6


_Spoken = tuple[tuple[float, float, str], str | None]


def _joined_when_hurried(segments: list[_Spoken], max_cps: float) -> list[_Spoken]:
    """Neighbouring lines of one speaker that would each be up too briefly to read become one cue (when it fits
    on two lines and 7 s): one reading time for both, instead of each pushing the next later."""
    out: list[_Spoken] = []
    for (start, end, text), speaker in segments:
        if not text.strip():
            continue
        if out and out[-1][1] == speaker:
            (p_start, p_end, p_text), _ = out[-1]
            joined = f"{p_text.strip()} {text.strip()}"
            hurried = (reading_time(p_text, max_cps) > p_end - p_start
                       or reading_time(text, max_cps) > end - start)
            if (hurried and start - p_end <= _JOIN_GAP and end - p_start <= MAX_DURATION
                    and wrap(_words(joined)) is not None):
                out[-1] = ((p_start, max(p_end, end), joined), speaker)
                continue
        out.append(((start, end, text), speaker))
    return out


# Reading speeds (characters a second) for scripts denser than the alphabets, by Unicode ranges.
_DENSE_SCRIPTS = (
    (re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"), 9.0),  # kana, Han
    (re.compile(r"[\u1100-\u11ff\uac00-\ud7af]"), 12.0),  # Hangul
    (re.compile(r"[\u0e00-\u0e7f]"), 15.0),  # Thai
)


def max_cps_for(text: str, max_cps: float = MAX_CPS) -> float:
    """The reading-speed limit for `text`: `max_cps` for alphabetic scripts, less for a line mostly written
    in a denser script."""
    letters = sum(1 for c in text if c.isalpha())
    if letters:
        for pattern, cps in _DENSE_SCRIPTS:
            if 2 * len(pattern.findall(text)) >= letters:
                return min(max_cps, cps)
    return max_cps


def reading_time(text: str, max_cps: float = MAX_CPS) -> float:
    """How long a cue must stay up to be read: at most `max_cps` characters a second (less for dense
    scripts, `max_cps_for`), at least 5/6 s."""
    flat = text.replace("\n", " ")
    return max(MIN_DURATION, len(flat) / max_cps_for(flat, max_cps))


def _readable(cues: list[Cue], max_cps: float, timeline_end: float | None) -> list[Cue]:
    """Give every cue its reading time, in order, without overlaps: a cue ends when its speech ends or
    when it has been read, whichever is later (within 7 s), and starts no earlier than the one before ends."""
    out: list[Cue] = []
    previous_end = 0.0
    for cue in cues:
        start = max(cue.start, previous_end)
        need = min(reading_time(cue.text, max_cps), MAX_DURATION)
        end = min(max(cue.end, start + need), start + MAX_DURATION)
        out.append(Cue(round(start, 3), _ceil_ms(end), cue.text, cue.speaker))
        previous_end = out[-1].end
    if timeline_end is not None and out and out[-1].end > timeline_end:
        out = _pull_back(out, timeline_end, max_cps)
    return out


def _ceil_ms(seconds: float) -> float:
    """Rounded up to the millisecond, so rounding never takes reading time away."""
    return math.ceil(round(seconds * 1000, 6)) / 1000


def _pull_back(cues: list[Cue], timeline_end: float, max_cps: float) -> list[Cue]:
    """Cues that run past the end of the mix, moved earlier (never overlapping) so the last ends there."""
    out = list(cues)
    limit = timeline_end
    for i in range(len(out) - 1, -1, -1):
        cue = out[i]
        if cue.end <= limit:
            break
        duration = max(min(reading_time(cue.text, max_cps), MAX_DURATION), min(cue.end - cue.start, limit))
        end = limit
        start = max(0.0, end - duration)
        out[i] = Cue(math.floor(start * 1000) / 1000, round(end, 3), cue.text, cue.speaker)
        limit = out[i].start
    return out


def reading_lag(cues: list[Cue], segments: list[tuple[float, float, str]]) -> float:
    """The longest a cue started after the speech it shows began (0 when every cue is on time)."""
    starts = sorted(max(0.0, s) for s, _, text in segments if text.strip())
    lag = 0.0
    for cue in cues:
        spoken = max((s for s in starts if s <= cue.start + 1e-6), default=cue.start)
        lag = max(lag, cue.start - spoken) if cue.start - spoken < MAX_DURATION else lag
    return round(lag, 3)


def _words(text: str) -> list[str]:
    """Whitespace tokens; a token longer than a line is hard-wrapped into line-sized pieces."""
    out: list[str] = []
    for word in text.split():
        out.extend(word[i : i + MAX_LINE] for i in range(0, len(word), MAX_LINE))
    return out


def wrap(words: list[str]) -> list[str] | None:
    """Best split of `words` into at most MAX_LINES lines, or None if they cannot fit.

    Two lines are balanced, with a small preference for breaking after punctuation.
    """
    joined = " ".join(words)
    if len(joined) <= MAX_LINE:
        return [joined]
    best: tuple[float, list[str]] | None = None
    for i in range(1, len(words)):
        top, bottom = " ".join(words[:i]), " ".join(words[i:])
        if len(top) > MAX_LINE or len(bottom) > MAX_LINE:
            continue
        score = abs(len(top) - len(bottom)) - (8 if words[i - 1].endswith(_BREAK_AFTER) else 0)
        if best is None or score < best[0]:
            best = (score, [top, bottom])
    return None if best is None else best[1]


def _chunks(words: list[str]) -> list[list[str]]:
    """Greedy fill of cue-sized chunks, stepping back to the last punctuation when it is not too early."""
    chunks: list[list[str]] = []
    current: list[str] = []
    for word in words:
        if wrap([*current, word]) is not None:
            current.append(word)
            continue
        cut = next((i for i in range(len(current) - 1, 0, -1) if current[i - 1].endswith(_BREAK_AFTER)), 0)
        if cut and len(" ".join(current[:cut])) >= MAX_LINE * MAX_LINES // 3:
            chunks.append(current[:cut])
            current = [*current[cut:], word]
            if wrap(current) is None:  # the carried-over tail plus word still overflows
                chunks.append(current[:-1])
                current = [word]
        else:
            chunks.append(current)
            current = [word]
    if current:
        chunks.append(current)
    return chunks


def _balanced(words: list[str], parts: int) -> list[list[str]]:
    """Split words into `parts` runs of roughly equal characters (for cues that run too long)."""
    total = sum(len(w) + 1 for w in words)
    out: list[list[str]] = [[]]
    used = 0
    for word in words:
        boundary = total * len(out) / parts
        if out[-1] and len(out) < parts and used + (len(word) + 1) / 2 > boundary:
            out.append([])
        out[-1].append(word)
        used += len(word) + 1
    return out


def _fit_time(chunk: list[str], per_char: float) -> list[list[str]]:
    """Split a chunk until each part is on screen at most MAX_DURATION (a lone word cannot split)."""
    parts = min(len(chunk), math.ceil(len(" ".join(chunk)) * per_char / MAX_DURATION - 1e-9))
    if parts <= 1:
        return [chunk]
    return [p for part in _balanced(chunk, parts) for p in _fit_time(part, per_char)]


def _split_segment(start: float, end: float, words: list[str]) -> list[Cue]:
    chunks = _chunks(words)
    total_chars = sum(len(" ".join(c)) for c in chunks)
    per_char = (end - start) / total_chars
    refined = [part for chunk in chunks for part in _fit_time(chunk, per_char)]
    weights = [len(" ".join(c)) for c in refined]
    total = sum(weights)
    cues: list[Cue] = []
    t = start
    for chunk, weight in zip(refined, weights, strict=True):
        t_end = t + (end - start) * weight / total
        lines = wrap(chunk) or [" ".join(chunk)]
        # A single word spoken for longer than the limit: show it for the limit only.
        cues.append(Cue(round(t, 3), round(min(t_end, t + MAX_DURATION), 3), "\n".join(lines)))
        t = t_end
    return cues


def _no_overlap(cues: list[Cue]) -> list[Cue]:
    """Clip a cue at the next one's start, unless that would leave it no time at all."""
    out: list[Cue] = []
    for i, cue in enumerate(cues):
        nxt = cues[i + 1].start if i + 1 < len(cues) else None
        if nxt is not None and cue.start < nxt < cue.end:
            cue = Cue(cue.start, nxt, cue.text, cue.speaker)
        out.append(cue)
    return out


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _span(cue: Cue, sep: str) -> str:
    start_ms = max(0, round(cue.start * 1000))
    end_ms = max(start_ms + 1, round(cue.end * 1000))  # players drop zero-length cues
    return f"{_stamp(start_ms / 1000, sep)} --> {_stamp(end_ms / 1000, sep)}"


def several_speakers(cues: list[Cue]) -> bool:
    """Whether the cues are spoken by more than one person: only then do captions name who speaks."""
    return len({c.speaker for c in cues if c.speaker}) > 1


def to_srt(cues: list[Cue]) -> str:
    """SRT; a cue starts with its speaker ("S1: ...") when more than one person speaks."""
    named = several_speakers(cues)
    blocks = [f"{i}\n{_span(c, ',')}\n{f'{c.speaker}: ' if named and c.speaker else ''}{c.text}\n"
              for i, c in enumerate(cues, start=1)]
    return "\n".join(blocks)


def to_vtt(cues: list[Cue]) -> str:
    """WebVTT; a cue carries its speaker as a voice span (`<v S1>...`) when more than one person speaks."""
    named = several_speakers(cues)
    blocks = [f"{_span(c, '.')}\n{f'<v {c.speaker}>' if named and c.speaker else ''}"
              f"{html.escape(c.text, quote=False)}\n" for c in cues]
    return "\n".join(["WEBVTT\n", *blocks])


def _seconds(stamp: str) -> float:
    parts = stamp.replace(",", ".").split(":")
    value = 0.0
    for part in parts:
        value = value * 60 + float(part)
    return round(value, 3)


def _blocks(text: str) -> list[list[str]]:
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return [[ln for ln in block.split("\n")] for block in re.split(r"\n\s*\n", text.strip()) if block.strip()]


def _parse(text: str, unescape: bool) -> list[Cue]:
    cues: list[Cue] = []
    for block in _blocks(text):
        for i, line in enumerate(block):
            match = _TIMING_RE.match(line)
            if match:
                body = "\n".join(ln.strip() for ln in block[i + 1 :] if ln.strip())
                body = html.unescape(body) if unescape else body
                cues.append(Cue(_seconds(match.group(1)), _seconds(match.group(2)), body))
                break
    return cues


def parse_srt(text: str) -> list[Cue]:
    return _parse(text, unescape=False)


def parse_vtt(text: str) -> list[Cue]:
    """Cues only: the header, NOTE, STYLE and REGION blocks have no timing line and are skipped."""
    return _parse(text, unescape=True)
