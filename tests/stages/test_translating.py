"""service/stages/translating.py alone: real Apertium on a prepared transcript; the Translation it hands the
dubbing stage."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

from service.engines.protocols import Engines
from service.engines.types import Transcript
from service.sample import Sample
from service.settings import Settings
from service.stages import outputs
from service.stages.outputs import Translation
from tests.support.stage_bench import stage_bench


async def test_every_unit_is_translated_in_its_own_time_slot(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines]) -> None:
    async with stage_bench(settings, short, *offline) as bench:
        units = await bench.prepare_transcript()
        ctx = await bench.run("translating")
        translation = await outputs.load(ctx.work_dir, Translation)
        assert (translation.source_language, translation.target_language) == ("en", "es")
        assert translation.engine == offline[1].translator.name
        assert [(u.id, u.start, u.end, u.group, u.source_text) for u in translation.units] == [
            (u.id, u.start, u.end, u.group, u.text) for u in units]
        for unit in translation.units:
            assert unit.text and unit.text == unit.text.strip() and unit.text != unit.source_text
        assert ctx.figures["units"] == len(units)


async def test_a_transcript_without_speech_gives_an_empty_translation(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines]) -> None:
    from service.db import transcripts

    async with stage_bench(settings, short, *offline) as bench:
        owner = f"stage-bench/{bench.task.id}"
        await transcripts.acquire(bench.services.db.pool, bench.job.id, owner, 60)
        await transcripts.complete(bench.services.db.pool, bench.job.id, owner, {
            **Transcript("en", 5.0, (), "prepared", "none").to_json(), "units": []})
        ctx = await bench.run("translating")
        assert (await outputs.load(ctx.work_dir, Translation)).units == []
