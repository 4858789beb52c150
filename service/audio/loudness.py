"""EBU R128 / BS.1770 measurement through ffmpeg's ``ebur128`` filter (streamed, any length).

Silence convention: figures that do not exist for silence are ``None``, never
a floor value — ``integrated_lufs`` is ``None`` when nothing passes the
-70 LUFS absolute gate, ``true_peak_dbtp`` is ``None`` for digital silence.
Callers must therefore not normalise silence (there is nothing to aim at).
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.audio import ffmpeg
from service.errors import AudioError, ErrorCode

ABSOLUTE_GATE_LUFS = -70.0

_NUMBER = r"(-?(?:inf|nan|\d+(?:\.\d+)?))"
_I = re.compile(r"^\s*I:\s+" + _NUMBER + r"\s+LUFS", re.MULTILINE | re.IGNORECASE)
_LRA = re.compile(r"^\s*LRA:\s+" + _NUMBER + r"\s+LU\b", re.MULTILINE | re.IGNORECASE)
_PEAK = re.compile(r"^\s*Peak:\s+" + _NUMBER + r"\s+dBFS", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class Loudness:
    """Integrated loudness (LUFS), true peak (dBTP) and loudness range (LU); see module doc for ``None``."""

    integrated_lufs: float | None
    true_peak_dbtp: float | None
    lra: float

    @property
    def is_silent(self) -> bool:
        return self.integrated_lufs is None


def parse_ebur128_summary(stderr: str, name: str | None = None) -> Loudness:
    """Pull I / LRA / peak out of the summary ffmpeg prints when the stream ends.

    `name` picks the summary of the instance `ebur128@name` when a graph measures several streams. The
    peak is the true peak with ``peak=true``, the sample peak with ``peak=sample``, None without a peak.
    """
    marker = f"[ebur128@{name} @" if name else ""
    at = stderr.rfind("Summary:") if not name else stderr.rfind(marker)
    if at < 0:
        raise AudioError(ErrorCode.LOUDNESS_FAILED, "ebur128 printed no summary")
    summary = stderr[at:]
    if name:
        following = summary.find("[ebur128@", len(marker))
        summary = summary[: following if following > 0 else len(summary)]
    i_match, lra_match, peak_match = _I.search(summary), _LRA.search(summary), _PEAK.search(summary)
    if i_match is None or lra_match is None:
        raise AudioError(ErrorCode.LOUDNESS_FAILED, f"cannot parse ebur128 summary: {summary[:400]!r}")
    integrated = float(i_match.group(1))
    # No peak section when the filter ran without peak=true: report the peak as unknown (None).
    peak = float(peak_match.group(1)) if peak_match is not None else math.nan
    lra = float(lra_match.group(1))
    return Loudness(
        integrated_lufs=integrated if math.isfinite(integrated) and integrated > ABSOLUTE_GATE_LUFS else None,
        true_peak_dbtp=peak if math.isfinite(peak) else None,
        lra=lra if math.isfinite(lra) else 0.0,
    )


def measure_loudness(path: str) -> Loudness:
    """Measure a whole file (first audio stream) in one streamed ffmpeg pass."""
    try:
        stderr = ffmpeg.run(["-loglevel", "info", "-i", path, "-map", "0:a:0",
                             "-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"])
    except AudioError as exc:
        raise AudioError(ErrorCode.LOUDNESS_FAILED, f"Measuring loudness failed: {exc.message}") from exc
    return parse_ebur128_summary(stderr)


class StreamingLoudness:
    """Measure audio as it is produced: blocks are piped to an ffmpeg ``ebur128`` process.

    Lets a numpy pass that writes a file get its loudness on the second core
    for free instead of re-reading the file afterwards. Use as a context
    manager; call `feed` with float32 ``(frames, channels)`` blocks, then `finish`.
    """

    def __init__(self, sample_rate: int, channels: int, true_peak: bool = True) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+b")
        peak = ":peak=true" if true_peak else ""
        self._proc = ffmpeg.start_reading_stdin(
            ["-loglevel", "info", *ffmpeg.streaming_input(sample_rate, channels),
             "-af", f"ebur128=framelog=verbose{peak}", "-f", "null", "-"],
            stderr=self._stderr,
        )
        self._channels = channels

    def feed(self, block: npt.NDArray[np.float32]) -> None:
        if block.ndim != 2 or block.shape[1] != self._channels:
            raise ValueError(f"expected (frames, {self._channels}) block, got {block.shape}")
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
        except BrokenPipeError as exc:
            raise AudioError(ErrorCode.LOUDNESS_FAILED,
                             f"ebur128 process ended early: {self._stderr_text()[-500:]}") from exc

    def finish(self) -> Loudness:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        ffmpeg.wait(self._proc)  # killed, and Cancelled raised, if the task is cancelled meanwhile
        code = self._proc.returncode
        text = self._stderr_text()
        self._stderr.close()
        if code != 0:
            raise AudioError(ErrorCode.LOUDNESS_FAILED, f"ebur128 process exited with {code}: {text[-500:]}")
        return parse_ebur128_summary(text)

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def close(self) -> None:
        """Abandon the measurement (error path); safe to call after `finish`."""
        ffmpeg.kill(self._proc)
        if not self._stderr.closed:
            self._stderr.close()

    def __enter__(self) -> StreamingLoudness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
