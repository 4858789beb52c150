"""The one ffmpeg spawn path, with the real ffmpeg: a run and a pipe that land whole files, a probe of a file
that is not audio, and cancellation (the pool's token, an asyncio cancel, a time limit) that kills the process
and leaves no partial output."""

from __future__ import annotations

import ast
import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

import service
from service.audio import ffmpeg
from service.errors import AudioError, Cancelled, ErrorCode
from service.workpool import cancellation

SR = 16000
# Generated at its own pace (`-re`): an hour of tone that is still being written when the test stops it.
ENDLESS = ["-re", "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={SR}:duration=3600", "-c:a", "pcm_s16le",
           "-f", "wav"]


def _running(marker: str) -> list[str]:
    """Command lines of live processes that name `marker` (an output path unique to the test)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if marker in text:
            found.append(text)
    return found


def _until(condition: object, seconds: float = 30.0) -> None:
    """Wait for something the ffmpeg process does (it starts writing); fail if it never happens."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "ffmpeg never got going"
        time.sleep(0.02)


@pytest.fixture
def token(tmp_path: Path) -> Iterator[Path]:
    """The process pool's cancellation token, as a pool worker holds it while running a task's work."""
    path = tmp_path / "cancel-token"
    cancellation.set_token(str(path))
    yield path
    cancellation.set_token(None)


def test_run_lands_a_whole_file(tmp_path: Path) -> None:
    out = tmp_path / "tone.wav"
    with ffmpeg.atomic_output(str(out)) as tmp:
        ffmpeg.run(["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={SR}:duration=1.5", "-f", "wav", tmp])
    assert ffmpeg.audio_info(str(out)).duration == pytest.approx(1.5, abs=0.01)
    assert [p.name for p in tmp_path.iterdir()] == ["tone.wav"]


def test_a_failing_run_says_why_and_may_be_retried(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as caught:
        ffmpeg.run(["-i", str(tmp_path / "missing.wav"), "-f", "null", "-"])
    assert caught.value.code == ErrorCode.FFMPEG_FAILED and caught.value.retryable
    assert "missing.wav" in caught.value.message


def test_a_pipe_from_one_ffmpeg_into_another(tmp_path: Path) -> None:
    out = tmp_path / "piped.wav"
    producer = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={SR}:duration=2", "-f", "f32le", "-"]
    consumer = [*ffmpeg.streaming_input(SR, 1), "-c:a", "pcm_s16le", str(out)]
    ffmpeg.run_piped(producer, consumer)
    info = ffmpeg.audio_info(str(out))
    assert (info.sample_rate, info.channels) == (SR, 1)
    assert info.duration == pytest.approx(2.0, abs=0.01)


def test_probe_and_decode_of_a_file_that_is_not_audio(tmp_path: Path) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"this is not a recording\n" * 100)
    assert isinstance(ffmpeg.probe(str(bad)), str)
    with pytest.raises(AudioError) as caught:
        ffmpeg.read_samples(str(bad), rate=SR)
    assert caught.value.code == ErrorCode.AUDIO_UNDECODABLE and not caught.value.retryable


def test_probe_of_audio(tmp_path: Path) -> None:
    out = tmp_path / "tone.wav"
    ffmpeg.run(["-f", "lavfi", "-i", f"sine=sample_rate={SR}:duration=1", "-ac", "2", str(out)])
    found = ffmpeg.probe(str(out))
    assert not isinstance(found, str)
    assert found[0] == pytest.approx(1.0, abs=0.01) and found[1:] == (SR, 2)


def test_the_pool_token_kills_ffmpeg_and_leaves_no_partial_output(tmp_path: Path, token: Path) -> None:
    out = tmp_path / "endless.wav"

    def work() -> None:
        with ffmpeg.atomic_output(str(out)) as tmp:
            ffmpeg.run([*ENDLESS, tmp])

    with ThreadPoolExecutor(1) as pool:
        running: Future[None] = pool.submit(work)
        _until(lambda: any(p.suffix == ".part" and p.stat().st_size > 0 for p in tmp_path.iterdir()))
        token.touch()  # what cancelling the task does
        with pytest.raises(Cancelled):
            running.result(timeout=10)
    assert _running(str(tmp_path)) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cancel-token"]


async def test_cancelling_the_awaiting_task_kills_ffmpeg(tmp_path: Path) -> None:
    out = tmp_path / "endless.wav"

    async def work() -> None:
        with ffmpeg.atomic_output(str(out)) as tmp:
            await ffmpeg.run_async([*ENDLESS, tmp])

    task = asyncio.create_task(work())
    while not _running(str(tmp_path)):
        assert not task.done()
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _running(str(tmp_path)) == []
    assert list(tmp_path.iterdir()) == []


def test_a_time_limit_stops_ffmpeg(tmp_path: Path) -> None:
    stop = threading.Event()
    started = time.monotonic()
    with pytest.raises(AudioError, match="took longer than"):
        with ffmpeg.atomic_output(str(tmp_path / "endless.wav")) as tmp:
            ffmpeg.run([*ENDLESS, tmp], time_limit=0.5, stop=stop)
    assert time.monotonic() - started < 10
    assert _running(str(tmp_path)) == []
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_starts_nowhere_else() -> None:
    """Every ffmpeg/ffprobe process starts in `ffmpeg.spawn`: no other module names the binaries in a call."""
    root = Path(service.__file__).parent
    starts = []
    for path in root.rglob("*.py"):
        if path == root / "audio" / "ffmpeg.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            named = (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                     and node.value.id == "ffmpeg" and node.attr in ("FFMPEG", "FFPROBE", "command"))
            listed = isinstance(node, ast.List) and any(
                isinstance(item, ast.Constant) and item.value in ("ffmpeg", "ffprobe") for item in node.elts)
            if named or listed:
                starts.append(f"{path.relative_to(root)}:{node.lineno}")
    assert starts == []
