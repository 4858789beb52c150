"""Translate the job's timed units into the task's language, a sentence at a time; on a re-render, only what
changed.

Units that belong to one sentence (the speaker paused inside it) go to the translator as a group:
it translates the sentence whole and divides the translation among the units, so every unit keeps
its own time slot and no sentence is translated as fragments. Each unit also gets the number of
characters its span holds at a natural pace, for translators that can aim for a length.

A unit whose source text is the one its kept text was made from (`db/translations.py`) keeps that text, a
person's hand edit included; only the sentences with a unit whose source changed (or that is new) go to the
translator again, and of those only the changed units take the new translation.
"""

from __future__ import annotations

from service.db import translations
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
    kept = await translations.kept(ctx.pool, ctx.task.job_id, target)
    texts = {u.id: kept[u.id].text for u in units if u.id in kept and kept[u.id].source_text == u.text}
    edited = {u.id for u in units if u.id in texts and kept[u.id].edited}
    changed_groups = {u.group for u in units if u.id not in texts}
    todo = [(u, slot) for u, slot in zip(units, timeline.slots(units, ctx.job), strict=True)
            if u.group in changed_groups]
    untranslated = 0  # words the translator did not know and left as they were (engines that can tell)
    if todo:
        usage: dict[str, float] = {}
        budgets: list[int | None] = [char_budget(slot.span, target) for _, slot in todo]
        translated = await translator.translate([u.text for u, _ in todo], source, target, budgets=budgets,
                                                groups=[u.group for u, _ in todo], usage=usage)
        untranslated = int(usage.pop(UNTRANSLATED_WORDS, 0))
        await ctx.record_usage(usage)
        if len(translated) != len(todo):
            raise StageError(ErrorCode.TRANSLATION_MISALIGNED,
                             f"The translator returned {len(translated)} lines for {len(todo)}")
        for (unit, _), text in zip(todo, translated, strict=True):
            texts.setdefault(unit.id, text.strip())
    if await outputs.exists(ctx.work_dir, Translation) and len(todo) < len(units):  # a re-render: earlier counts
        untranslated += (await outputs.load(ctx.work_dir, Translation)).untranslated_words
    result = Translation(source, target, translator.name, [
        TranslatedUnit(u.id, u.start, u.end, u.group, u.text, texts[u.id], u.speaker) for u in units],
        pivot=translator.pivot_for(source, target), untranslated_words=untranslated)
    await translations.store(ctx.pool, ctx.task.job_id, target,
                             [(u.id, u.text, texts[u.id], u.id in edited) for u in units])
    await outputs.save(ctx.work_dir, result)
    ctx.figures.update(units=len(units), translated_units=len(todo), kept_units=len(units) - len(todo),
                       characters=sum(len(u.text) for u, _ in todo),
                       translated_characters=sum(len(texts[u.id]) for u, _ in todo), untranslated_words=untranslated)
    await ctx.progress(1.0, units=len(units), translated=len(todo))
