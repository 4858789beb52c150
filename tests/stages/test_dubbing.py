"""service/stages/dubbing.py alone: real espeak-ng on a prepared translation; the Synthesis (one clip per unit,
sized to its slot) it hands the mixing stage."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import msgspec
import soundfile

from service.engines.protocols import Engines
from service.sample import Sample
from service.settings import Settings
from service.stages import outputs, timeline
from service.stages.outputs import Synthesis, Translation
from tests.support.stage_bench import stage_bench


async def test_each_unit_is_spoken_into_a_clip_that_fits_its_slot(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines]) -> None:
    async with stage_bench(settings, short, *offline) as bench:
        translation = await bench.prepare_translation()
        ctx = await bench.run("dubbing")
        synthesis = await outputs.load(ctx.work_dir, Synthesis)
        assert synthesis.engine == offline[1].synthesizer.name and synthesis.voice
        assert [c.id for c in synthesis.clips] == [u.id for u in translation.units]
        slots = timeline.slots(translation.units, bench.job)
        for clip, unit, slot in zip(synthesis.clips, translation.units, slots, strict=True):
            assert clip.text == unit.text
            info = soundfile.info(clip.path)
            assert info.samplerate == settings.sample_rate and info.channels == 1
            assert abs(info.duration - clip.duration) < 0.05
            # Spoken at a rate chosen for the slot: what the mixing stage's stretch can finish fitting.
            ceiling = settings.stretch_ceiling
            assert slot.span / ceiling - 0.35 <= clip.duration <= slot.room * ceiling + 0.35, (clip, slot)
            assert settings.min_tempo - 0.01 <= clip.rate <= settings.max_engine_rate + 0.01


async def test_clips_a_crashed_attempt_finished_are_reused(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines]) -> None:
    async with stage_bench(settings, short, *offline) as bench:
        await bench.prepare_translation()
        ctx = await bench.run("dubbing")
        first = await outputs.load(ctx.work_dir, Synthesis)
        (ctx.work_dir / Synthesis.FILE).unlink()  # the attempt died before its output was written
        ctx = await bench.run("dubbing")
        assert ctx.figures["reused_clips"] == len(first.clips)
        assert await outputs.load(ctx.work_dir, Synthesis) == first


async def test_a_line_with_no_words_stays_silent(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines]) -> None:
    # Whisper sometimes hears "..." alone; espeak-ng says nothing for it. That line is silent, the rest dubbed.
    async with stage_bench(settings, short, *offline) as bench:
        translation = await bench.prepare_translation()
        first, *rest = translation.units
        quiet = Translation(translation.source_language, translation.target_language, translation.engine,
                            [msgspec.structs.replace(first, text="..."), *rest])
        await outputs.save(bench.work_dir, quiet)
        ctx = await bench.run("dubbing")
        synthesis = await outputs.load(ctx.work_dir, Synthesis)
        assert [c.id for c in synthesis.clips] == [u.id for u in rest]
