"""service/stages/stt.py alone: the real Whisper model on a short generated recording; what it hands the next
stages (the job's transcript and timed units) and the transcript artifacts it publishes."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

from service.db import artifacts, transcripts
from service.engines.protocols import Engines
from service.sample import Sample
from service.settings import Settings
from service.stages import stt
from service.stages.captions import parse_srt, parse_vtt
from tests.support.stage_bench import stage_bench


async def test_stt_leaves_timed_units_where_the_voice_speaks_and_publishes_the_transcript(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines]) -> None:
    async with stage_bench(settings, short, *offline) as bench:
        ctx = await bench.run("stt")
        transcript, units = await stt.load(ctx)
        assert transcript.language == "en" and transcript.segments
        assert units, "speech was heard"
        duration = bench.job.voice.duration_seconds
        for unit in units:
            assert 0 <= unit.start < unit.end <= duration + 0.05 and unit.text.strip()
        assert [u.start for u in units] == sorted(u.start for u in units)
        # Every spoken line is covered by some unit, and every unit lies on speech.
        for start, end in short.speech:
            assert any(u.start < end and u.end > start for u in units), (start, end, units)
        for unit in units:
            assert any(unit.start < end + 0.3 and unit.end > start - 0.3 for start, end in short.speech), unit

        published = {a.kind: a for a in await artifacts.job_level(ctx.pool, bench.job.id)}
        assert set(published) == {"transcript_json", "transcript_srt", "transcript_vtt"}
        for artifact in published.values():
            stored = bench.stored_file(artifact.object_path)
            assert stored.stat().st_size == artifact.size_bytes > 0
        srt = bench.stored_file(published["transcript_srt"].object_path)
        vtt = bench.stored_file(published["transcript_vtt"].object_path)
        for cues in (parse_srt(srt.read_text()), parse_vtt(vtt.read_text())):
            assert cues and all(0 <= c.start < c.end <= duration + 1 for c in cues)
        assert ctx.figures["units"] == len(units)


async def test_a_second_language_reuses_the_job_s_transcript(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines]) -> None:
    async with stage_bench(settings, short, *offline) as bench:
        await bench.prepare_transcript()
        ctx = await bench.run("stt")  # the transcript is ready: nothing is transcribed again
        assert ctx.figures["shared"] is True
        state = await transcripts.acquire(ctx.pool, bench.job.id, "another", 60)
        assert state.state == "ready"
