"""service/stages/mixing.py alone: the clips the real dubbing stage spoke for a prepared translation, fitted,
laid on the timeline, ducked under and mixed with the background; what it hands the exporting stage."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import pytest
import soundfile

from service.audio.loudness import measure_loudness
from service.engines.protocols import Engines
from service.sample import Sample
from service.settings import Settings
from service.stages import outputs, timeline
from service.stages.mixing import OUTPUTS, web_name
from service.stages.outputs import Mixdown
from tests.support.stage_bench import stage_bench


@pytest.mark.parametrize("background", [True, False], ids=["with-background", "voice-only"])
async def test_the_mix_lasts_the_timeline_at_the_target_loudness(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines], background: bool) -> None:
    async with stage_bench(settings, short, *offline, background=background) as bench:
        translation = await bench.prepare_translation()
        await bench.run("dubbing")
        ctx = await bench.run("mixing")
        work = ctx.work_dir
        master, stem, web = work / OUTPUTS["master_wav"], work / OUTPUTS["voice_stem"], work / web_name(ctx)
        assert web.stat().st_size > 0
        expected = timeline.duration(bench.job)
        for path in (master, stem):
            assert abs(soundfile.info(str(path)).duration - expected) < 0.05, path
        assert soundfile.info(str(master)).channels == (2 if background else 1)
        loudness = measure_loudness(str(master))
        assert loudness.integrated_lufs is not None
        assert abs(loudness.integrated_lufs - settings.target_lufs) <= 1.0
        assert loudness.true_peak_dbtp is not None and loudness.true_peak_dbtp <= settings.true_peak_dbtp + 0.5

        mixdown = await outputs.load(work, Mixdown)
        assert [u.id for u in mixdown.units] == [u.id for u in translation.units]
        for unit in mixdown.units:
            assert unit.placed_start == pytest.approx(unit.source_start, abs=0.01)
            assert unit.placed_start < unit.placed_end <= unit.next_start
            assert 1 / settings.stretch_ceiling - 0.01 <= unit.stretch <= settings.stretch_ceiling + 0.01
        assert mixdown.mix["duration"] == pytest.approx(expected, abs=0.05)
