"""The one way the service runs ffmpeg and ffprobe: which binary, with which flags, how it is waited for
and stopped, how outputs land.

Every ffmpeg or ffprobe process starts in `spawn` (one set of flags: no stdin interaction, no banner, no
progress lines, errors only unless a caller asks for more, overwrite) and is waited for in `wait`, which kills
it and raises `Cancelled` when the task it works for is cancelled: the process pool's cancellation token
(`workpool/cancellation.py`) in a pool worker, or `stop` set by `run_async` when the asyncio task awaiting it
is cancelled. Blocking functions here run in the process pool (audio work) or in a worker thread; the
engines await `run_async`. Every output is written to a `partial_path` beside its target and renamed into
place (`atomic_output`), so a crash never leaves half a file under the final name, and the partial file is
removed on every failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import soundfile as sf

from service import scratch
from service.errors import AudioError, Cancelled, ErrorCode
from service.workpool import cancellation

FFMPEG = os.environ.get("DUBBING_FFMPEG", "ffmpeg")
FFPROBE = os.environ.get("DUBBING_FFPROBE", "ffprobe")
# The flags every process starts with; a later `-loglevel info` (ebur128's report) overrides the level.
FFMPEG_FLAGS = ("-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y")
FFPROBE_FLAGS = ("-hide_banner", "-loglevel", "error")
_STDERR_TAIL = 2000
_POLL_SECONDS = 0.1
_PROBE_SECONDS = 120.0

# Trim leading silence, reverse, trim again, reverse back: removes only the ends, never pauses inside.
TRIM_SILENCE = (
    "silenceremove=start_periods=1:start_threshold=-50dB:start_silence=0.02,areverse,"
    "silenceremove=start_periods=1:start_threshold=-50dB:start_silence=0.02,areverse"
)

_Stream = int | IO[bytes] | None


def spawn(args: Sequence[str], *, tool: str = FFMPEG, stdin: _Stream = subprocess.DEVNULL,
          stdout: _Stream = subprocess.DEVNULL, stderr: _Stream = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """Start `tool` (ffmpeg or ffprobe) with the common flags and `args`: the only place either starts."""
    flags = FFPROBE_FLAGS if tool == FFPROBE else FFMPEG_FLAGS
    try:
        return subprocess.Popen([tool, *flags, *args], stdin=stdin, stdout=stdout, stderr=stderr)
    except FileNotFoundError as exc:
        raise AudioError(ErrorCode.FFMPEG_FAILED, f"{os.path.basename(tool)} is not installed ({tool})") from exc


def kill(proc: subprocess.Popen[bytes]) -> None:
    """Stop `proc` now and reap it (no zombie, no process writing on after we gave up on it)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def wait(proc: subprocess.Popen[bytes], stdin: bytes | None = None, *, time_limit: float | None = None,
         stop: threading.Event | None = None) -> tuple[bytes, bytes]:
    """Feed `stdin`, wait for `proc` and return (stdout, stderr) as far as they are piped. On cancellation (the
    pool's token, or `stop`) the process is killed and `Cancelled` raised; past `time_limit`, AudioError."""
    if proc.stdin is not None and proc.stdin.closed:
        proc.stdin = None  # the caller wrote all and closed it: nothing left to feed
    deadline = None if time_limit is None else time.monotonic() + time_limit
    pending = stdin
    try:
        while True:
            try:
                out, err = proc.communicate(pending, timeout=_POLL_SECONDS)
                return out or b"", err or b""
            except subprocess.TimeoutExpired:
                pending = None  # communicate() keeps what is left of the input between calls
                if cancellation.requested() or (stop is not None and stop.is_set()):
                    raise Cancelled("cancelled") from None
                if deadline is not None and time.monotonic() > deadline:
                    tool = os.path.basename(str(proc.args[0] if isinstance(proc.args, list) else proc.args))
                    raise AudioError(ErrorCode.FFMPEG_FAILED, f"{tool} took longer than {time_limit:g}s") from None
    except BaseException:
        kill(proc)
        raise


def _failed(proc: subprocess.Popen[bytes], stderr: str, extra: str = "") -> AudioError:
    tail = stderr[-_STDERR_TAIL:].strip() + extra
    return AudioError(ErrorCode.FFMPEG_FAILED, f"ffmpeg exited with {proc.returncode}: {tail}")


def run(args: Sequence[str], *, time_limit: float | None = None, stop: threading.Event | None = None) -> str:
    """Run ffmpeg with `args`; return its stderr (where ebur128 and friends report), raise AudioError."""
    proc = spawn(args)
    _, raw = wait(proc, time_limit=time_limit, stop=stop)
    stderr = raw.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise _failed(proc, stderr)
    return stderr


async def run_async(args: Sequence[str], *, time_limit: float | None = None) -> str:
    """`run` for the event loop: waits in a thread; cancelling the awaiting task kills the process, then re-raises."""
    stop = threading.Event()
    waiting = asyncio.ensure_future(asyncio.to_thread(run, args, time_limit=time_limit, stop=stop))
    try:
        return await asyncio.shield(waiting)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(BaseException):
            await waiting
        raise


def read_samples(path: str, *, rate: int, start: float = 0.0, seconds: float | None = None) -> bytes:
    """Mono float32 little-endian samples of `path` at `rate`, from `start` for `seconds` (or to the end)."""
    args = ["-ss", f"{start:.3f}"]
    if seconds is not None:
        args += ["-t", f"{seconds:.3f}"]
    args += ["-i", path, "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
    proc = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out, _ = wait(proc)
    if proc.returncode != 0:
        raise AudioError(ErrorCode.AUDIO_UNDECODABLE, "The audio could not be decoded")
    return out


def capture(args: Sequence[str], *, probe: bool = False, time_limit: float | None = None) -> tuple[int, bytes]:
    """Run ffmpeg (or ffprobe, `probe`) with `args`; return its exit code and its stdout, whatever the code."""
    proc = spawn(args, tool=FFPROBE if probe else FFMPEG, stdout=subprocess.PIPE)
    out, _ = wait(proc, time_limit=time_limit)
    return proc.returncode, out


def run_piped(producer: Sequence[str], consumer: Sequence[str]) -> str:
    """Run ffmpeg `producer` with its stdout piped into ffmpeg `consumer`; return the producer's stderr."""
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryFile() as consumer_err:
        try:
            sink = spawn(consumer, stdin=subprocess.PIPE, stderr=consumer_err)
            procs.append(sink)
            assert sink.stdin is not None
            source = spawn(producer, stdout=sink.stdin)
            procs.append(source)
            sink.stdin.close()  # the producer holds the only write end now: the encoder sees EOF when it exits
            _, err = wait(source)
            wait(sink)
        except BaseException:
            for proc in procs:
                kill(proc)
            raise
        stderr = err.decode("utf-8", "replace")
        consumer_err.seek(0)
        encoder_tail = consumer_err.read().decode("utf-8", "replace")[-1000:].strip()
        if source.returncode != 0:
            raise _failed(source, stderr, f"; encoder: {encoder_tail}" if encoder_tail else "")
        if sink.returncode != 0:
            raise AudioError(ErrorCode.FFMPEG_FAILED, f"the encoder exited with {sink.returncode}: {encoder_tail}")
    return stderr


def streaming_input(sample_rate: int, channels: int) -> list[str]:
    """Input options for raw float32 blocks written to ffmpeg's stdin."""
    return ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0"]


def start_reading_stdin(args: Sequence[str], stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    """An ffmpeg process that reads blocks from our pipe (a meter, an encoder); finish it with `wait`."""
    return spawn(args, stdin=subprocess.PIPE, stderr=stderr)


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
        proc = spawn(["-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels,duration:format=duration",
                      "-of", "json", path], tool=FFPROBE, stdout=subprocess.PIPE)
    except AudioError:
        return "ffprobe is not installed"
    out, _ = wait(proc, time_limit=_PROBE_SECONDS)
    if proc.returncode != 0:
        return "the file is not in an audio format we can read"
    info = json.loads(out or b"{}")
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
