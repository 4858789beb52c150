"""Translate the job's timed units into the task's language, a sentence at a time.

Units that belong to one sentence (the speaker paused inside it) go to the translator as a group:
it translates the sentence whole and divides the translation among the units, so every unit keeps
its own time slot and no sentence is translated as fragments. Each unit also gets the number of
characters its span holds at a natural pace, for translators that can aim for a length.
"""

from __future__ import annotations

from service.engines.protocols import UNTRANSLATED_WORDS
from service.engines.speech_rates import char_budget
from service.errors import ErrorCode, StageError
from service.stages import outputs, stt, timeline
from service.stages.context import StageContext
from service.stages.outputs import TranslatedUnit, Translation


async def run(ctx: StageContext) -> None:
    transcript, units = await stt.load(ctx)
    source = transcript.language
    target = ctx.task.target_language
    translator = ctx.engine.translator
    translated: list[str] = []
    untranslated = 0  # words the translator did not know and left as they were (engines that can tell)
    if units:
        usage: dict[str, float] = {}
        budgets: list[int | None] = [char_budget(slot.span, target) for slot in timeline.slots(units, ctx.job)]
        translated = await translator.translate([u.text for u in units], source, target, budgets=budgets,
                                                groups=[u.group for u in units], usage=usage)
        untranslated = int(usage.pop(UNTRANSLATED_WORDS, 0))
        await ctx.record_usage(usage)
        if len(translated) != len(units):
            raise StageError(ErrorCode.TRANSLATION_MISALIGNED,
                             f"The translator returned {len(translated)} lines for {len(units)}")
    result = Translation(source, target, translator.name, [
        TranslatedUnit(u.id, u.start, u.end, u.group, u.text, text.strip(), u.speaker)
        for u, text in zip(units, translated, strict=True)], pivot=translator.pivot_for(source, target),
        untranslated_words=untranslated)
    await outputs.save(ctx.work_dir, result)
    ctx.figures.update(units=len(units), characters=sum(len(u.text) for u in units),
                       translated_characters=sum(len(t) for t in translated), untranslated_words=untranslated)
    await ctx.progress(1.0, units=len(units))
