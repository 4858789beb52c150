"""The one way the service runs ffmpeg and ffprobe: which binary, how it is run, how outputs land.

Blocking functions here run in the process pool (audio work) or in a worker thread; the engines'
asynchronous calls go through `service.engines.process.run` with `command()`. Every output is written
to a `partial_path` beside its target and renamed into place, so a crash never leaves half a file
under the final name, and the partial file is removed on every failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import soundfile as sf

from service import scratch
from service.errors import AudioError, Cancelled, ErrorCode
from service.workpool import cancellation

FFMPEG = os.environ.get("DUBBING_FFMPEG", "ffmpeg")
FFPROBE = os.environ.get("DUBBING_FFPROBE", "ffprobe")
_COMMON = ("-nostdin", "-hide_banner", "-nostats", "-y")
_STDERR_TAIL = 2000
_POLL_SECONDS = 0.1

# Trim leading silence, reverse, trim again, reverse back: removes only the ends, never pauses inside.
TRIM_SILENCE = (
    "silenceremove=start_periods=1:start_threshold=-50dB:start_silence=0.02,areverse,"
    "silenceremove=start_periods=1:start_threshold=-50dB:start_silence=0.02,areverse"
)


def command(*args: str) -> list[str]:
    """The full command line for ffmpeg with `args` after the common flags."""
    return [FFMPEG, *_COMMON, *args]


def _wait(proc: subprocess.Popen[bytes], stdin: bytes | None = None) -> tuple[bytes, bytes]:
    """Wait for `proc` while watching for cancellation (then it is killed and `Cancelled` raised)."""
    pending = stdin
    while True:
        try:
            out, err = proc.communicate(pending, timeout=_POLL_SECONDS)
            return out or b"", err or b""
        except subprocess.TimeoutExpired:
            pending = None  # communicate() keeps what is left of the input between calls
            if cancellation.requested():
                proc.kill()
                proc.communicate()
                raise Cancelled("cancelled") from None


def run(args: Sequence[str]) -> str:
    """Run ffmpeg with `args`; return its stderr (where ebur128 and friends report), raise AudioError."""
    try:
        proc = subprocess.Popen(command(*args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise AudioError(ErrorCode.FFMPEG_FAILED, f"ffmpeg is not installed ({FFMPEG})") from exc
    _, raw = _wait(proc)
    stderr = raw.decode("utf-8", "replace")
    if proc.returncode != 0:
        tail = stderr[-_STDERR_TAIL:].strip()
        raise AudioError(ErrorCode.FFMPEG_FAILED, f"ffmpeg exited with {proc.returncode}: {tail}")
    return stderr


def read_samples(path: str, *, rate: int, start: float = 0.0, seconds: float | None = None) -> bytes:
    """Mono float32 little-endian samples of `path` at `rate`, from `start` for `seconds` (or to the end)."""
    args = ["-v", "error", "-ss", f"{start:.3f}"]
    if seconds is not None:
        args += ["-t", f"{seconds:.3f}"]
    args += ["-i", path, "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
    proc = subprocess.Popen([FFMPEG, "-nostdin", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    out, _ = _wait(proc)
    if proc.returncode != 0:
        raise AudioError(ErrorCode.AUDIO_UNDECODABLE, "The audio could not be decoded")
    return out


def run_piped(producer: Sequence[str], consumer: Sequence[str]) -> str:
    """Run ffmpeg `producer` with its stdout piped into ffmpeg `consumer`; return the producer's stderr."""
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryFile() as consumer_err:
        try:
            sink = subprocess.Popen(command(*consumer), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=consumer_err)
            procs.append(sink)
            assert sink.stdin is not None
            source = subprocess.Popen(command(*producer), stdin=subprocess.DEVNULL, stdout=sink.stdin,
                                      stderr=subprocess.PIPE)
            procs.append(source)
            sink.stdin.close()  # the producer holds the only write end now: the encoder sees EOF when it exits
            sink.stdin = None
            _, err = _wait(source)
            _wait(sink)
        except BaseException:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            raise
        stderr = err.decode("utf-8", "replace")
        consumer_err.seek(0)
        encoder_tail = consumer_err.read().decode("utf-8", "replace")[-1000:].strip()
        if source.returncode != 0:
            tail = stderr[-_STDERR_TAIL:].strip() + (f"; encoder: {encoder_tail}" if encoder_tail else "")
            raise AudioError(ErrorCode.FFMPEG_FAILED, f"ffmpeg exited with {source.returncode}: {tail}")
        if sink.returncode != 0:
            raise AudioError(ErrorCode.FFMPEG_FAILED, f"the encoder exited with {sink.returncode}: {encoder_tail}")
    return stderr


def streaming_input(sample_rate: int, channels: int) -> list[str]:
    """Input options for raw float32 blocks written to ffmpeg's stdin."""
    return ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0"]


def start_reading_stdin(args: Sequence[str], stderr: int | object) -> subprocess.Popen[bytes]:
    """An ffmpeg process that reads blocks from our pipe (a meter, an encoder)."""
    return subprocess.Popen([FFMPEG, *_COMMON, *args], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=stderr)  # type: ignore[arg-type]


# -- files ------------------------------------------------------------------------------------------


partial_path = scratch.partial_path


def remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_output(out_path: str) -> Iterator[str]:
    """Yield a partial path to write; it becomes `out_path` if the block succeeds, and is removed if not."""
    tmp = partial_path(out_path)
    try:
        yield tmp
    except BaseException:
        remove_quietly(tmp)
        raise
    os.replace(tmp, out_path)


@dataclass(frozen=True)
class AudioInfo:
    """What a decoded file holds; small enough to cross a process boundary."""

    duration: float
    sample_rate: int
    channels: int
    frames: int


def audio_info(path: str) -> AudioInfo:
    """Header facts of a file libsndfile can read (WAV/FLAC/...)."""
    info = sf.info(path)
    return AudioInfo(
        duration=info.frames / info.samplerate if info.samplerate else 0.0,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
    )


def probe(path: str) -> tuple[float, int, int] | str:
    """(duration, sample rate, channels) of the first audio stream, by ffprobe; or why not."""
    try:
        proc = subprocess.run(
            [FFPROBE, "-v", "error", "-select_streams", "a:0", "-show_entries",
             "stream=sample_rate,channels,duration:format=duration", "-of", "json", path],
            capture_output=True, text=True, timeout=120, check=False,
        )
    except FileNotFoundError:
        return "ffprobe is not installed"
    if proc.returncode != 0:
        return "the file is not in an audio format we can read"
    info = json.loads(proc.stdout or "{}")
    streams = info.get("streams") or []
    if not streams:
        return "no audio stream"
    stream = streams[0]
    duration = stream.get("duration") or info.get("format", {}).get("duration")
    if duration in (None, "N/A"):
        return "unknown duration"
    return float(duration), int(stream.get("sample_rate", 0)), int(stream.get("channels", 0))


def duration_of(path: str) -> float:
    """Seconds of audio in `path` (0.0 when it cannot be read)."""
    try:
        return float(sf.info(path).duration)
    except Exception:
        found = probe(path)
        return 0.0 if isinstance(found, str) else found[0]
