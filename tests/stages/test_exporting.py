"""service/stages/exporting.py alone, after the real dubbing and mixing stages on a prepared translation: the
captions (within the reading limits), the manifest, and every artifact stored and recorded."""

from __future__ import annotations

import itertools
from concurrent.futures import ProcessPoolExecutor

from service.db import artifacts
from service.engines.protocols import Engines
from service.sample import Sample
from service.settings import Settings
from service.stages import captions
from service.stages.workfiles import read_json
from tests.support.stage_bench import stage_bench

PER_LANGUAGE = {"master_wav", "master_web", "voice_stem", "captions_srt", "captions_vtt", "manifest"}


async def test_exporting_stores_every_artifact_with_captions_within_limits_and_a_manifest(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines]) -> None:
    async with stage_bench(settings, short, *offline) as bench:
        translation = await bench.prepare_translation()
        await bench.run("dubbing", "mixing")
        ctx = await bench.run("exporting")

        rows = {a.kind: a for a in await artifacts.for_job(ctx.pool, bench.job.id)}
        assert set(rows) == PER_LANGUAGE
        for row in rows.values():
            assert row.target_language == "es" and row.task_id == bench.task.id
            assert bench.stored_file(row.object_path).stat().st_size == row.size_bytes > 0

        manifest = await read_json(ctx.work_dir / "manifest.json")
        duration = manifest["duration_seconds"]
        assert abs(duration - bench.job.background.duration_seconds) < 0.05  # type: ignore[union-attr]
        for text, parse in ((bench.stored_file(rows["captions_srt"].object_path).read_text(), captions.parse_srt),
                            (bench.stored_file(rows["captions_vtt"].object_path).read_text(), captions.parse_vtt)):
            cues = parse(text)
            assert cues
            for cue in cues:
                assert 0 <= cue.start < cue.end <= duration + 0.001
                assert cue.end - cue.start <= captions.MAX_DURATION + 0.001
                assert len(cue.lines) <= captions.MAX_LINES
                assert all(len(line) <= captions.MAX_LINE for line in cue.lines)
                assert len(cue.text.replace("\n", " ")) / (cue.end - cue.start) <= settings.caption_max_cps + 0.5
            assert all(a.end <= b.start for a, b in itertools.pairwise(cues))

        assert (manifest["source_language"], manifest["target_language"]) == ("en", "es")
        assert [s["id"] for s in manifest["segments"]] == [u.id for u in translation.units]
        assert abs(manifest["loudness"]["integrated_lufs"] - settings.target_lufs) <= 1.0
        listed = {a["kind"] for a in manifest["artifacts"]}
        assert listed == PER_LANGUAGE - {"manifest"}
        assert manifest["captions"]["cues"] == len(captions.parse_srt(
            bench.stored_file(rows["captions_srt"].object_path).read_text()))
