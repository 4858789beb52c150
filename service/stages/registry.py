"""Which function runs each work stage (their order is `domain.WORK_STAGES`)."""

from __future__ import annotations

from collections.abc import Mapping

from service.domain import WORK_STAGES, Stage
from service.stages import dubbing, exporting, mixing, stt, translating
from service.stages.context import StageFn

_FUNCTIONS: dict[Stage, StageFn] = {
    Stage.STT: stt.run,
    Stage.TRANSLATING: translating.run,
    Stage.DUBBING: dubbing.run,
    Stage.MIXING: mixing.run,
    Stage.EXPORTING: exporting.run,
}


def stages() -> Mapping[str, StageFn]:
    """Every work stage's function, in pipeline order."""
    return {stage: _FUNCTIONS[stage] for stage in WORK_STAGES}
