"""The dubbed voice track: fitted clips laid along the timeline, one block of samples at a time.

Memory stays flat for any length: numpy holds one block (1 s) plus the open clips' read positions.
Runs in the process pool on file paths.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soundfile as sf

from service.audio import ffmpeg, wavfiles
from service.audio.decode import DEFAULT_SAMPLE_RATE
from service.audio.fitting import FADE_OUT_S
from service.workpool import cancellation, progress

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class PlacedClip:
    """A fitted clip: where it starts on the output timeline and how much of it may play."""

    path: str
    placed_start: float
    max_duration: float = math.inf



@dataclass
class _ClipCursor:
    """Read state of one clip while its frames are being laid down."""

    handle: sf.SoundFile
    start: int
    limit: int
    fade_from: int  # clip-relative frame where the fade-out starts; == limit means no fade
    pos: int = 0



def build_voice_track(
    clips: Sequence[PlacedClip],
    total_duration: float,
    out_path: str,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> str:
    """Write a mono float WAV of exactly ``round(total_duration * sample_rate)`` frames.

    Each clip starts at ``placed_start``; a clip longer than ``max_duration``
    (or the track) is cut with a ~20 ms fade-out. Overlapping clips add.
    Clips at another rate are resampled by ffmpeg first. Returns ``out_path``.
    """
    total = round(total_duration * sample_rate)
    if total <= 0:
        raise ValueError(f"total_duration must be positive, got {total_duration}")
    fade = max(1, round(FADE_OUT_S * sample_rate))
    out_dir = os.path.dirname(os.path.abspath(out_path))
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".voice-") as work_dir, \
            ffmpeg.atomic_output(out_path) as tmp:
        plan = _plan(clips, total, sample_rate, fade, work_dir)
        _write(plan, total, sample_rate, fade, tmp)
    return out_path


def _plan(clips: Sequence[PlacedClip], total: int, sample_rate: int, fade: int,
          work_dir: str) -> list[tuple[int, int, int, str]]:
    """(start, limit, fade_from, path) per clip that reaches the track, in start order."""
    plan: list[tuple[int, int, int, str]] = []
    for n, clip in enumerate(clips):
        start = round(clip.placed_start * sample_rate)
        if start >= total or clip.max_duration <= 0:
            continue
        path = wavfiles.at_rate(clip.path, sample_rate, work_dir, f"clip{n}")
        frames = ffmpeg.audio_info(path).frames
        allowed = total - max(start, 0)
        if math.isfinite(clip.max_duration):
            allowed = min(allowed, round(clip.max_duration * sample_rate))
        limit = min(frames, allowed)
        if limit <= 0:
            continue
        fade_from = max(0, limit - fade) if frames > limit else limit
        plan.append((start, limit, fade_from, path))
    plan.sort(key=lambda item: item[0])
    return plan


def _write(plan: list[tuple[int, int, int, str]], total: int, sample_rate: int, fade: int, out_path: str) -> None:
    block = max(1, sample_rate)
    active: list[_ClipCursor] = []
    next_clip = 0
    try:
        with wavfiles.open_for_write(out_path, sample_rate, 1, total) as out:
            for block_start in range(0, total, block):
                cancellation.check()
                progress.report(block_start / total)
                n = min(block, total - block_start)
                buf = np.zeros(n, dtype=np.float32)
                while next_clip < len(plan) and plan[next_clip][0] < block_start + n:
                    start, limit, fade_from, path = plan[next_clip]
                    cursor = _ClipCursor(sf.SoundFile(path), start, limit, fade_from)
                    if start < 0:  # clip placed before zero: skip its head
                        cursor.pos = min(-start, limit)
                        cursor.handle.seek(cursor.pos)
                    active.append(cursor)
                    next_clip += 1
                for cursor in list(active):
                    _add_clip_block(cursor, buf, block_start, fade)
                    if cursor.pos >= cursor.limit:
                        cursor.handle.close()
                        active.remove(cursor)
                out.write(buf)
    finally:
        for cursor in active:
            cursor.handle.close()


def _add_clip_block(cursor: _ClipCursor, buf: Float32Array, block_start: int, fade: int) -> None:
    """Add the part of ``cursor``'s clip that falls into ``buf`` (which starts at ``block_start``)."""
    offset = max(0, cursor.start + cursor.pos - block_start)
    want = min(len(buf) - offset, cursor.limit - cursor.pos)
    if want <= 0:
        return
    data = cursor.handle.read(want, dtype="float32", always_2d=True)
    got = data.shape[0]
    if got == 0:
        cursor.pos = cursor.limit  # file shorter than its header said: treat as ended
        return
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if cursor.fade_from < cursor.limit:
        idx = np.arange(cursor.pos, cursor.pos + got)
        ramp = np.clip((cursor.limit - idx) / fade, 0.0, 1.0).astype(np.float32)
        mono = mono * ramp
    buf[offset : offset + got] += mono
    # A short read means the file ended before its header said: the clip is done.
    cursor.pos = cursor.pos + got if got == want else cursor.limit

