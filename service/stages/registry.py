"""Which function runs each work stage (their order lives in `order.py`)."""

from __future__ import annotations

from collections.abc import Mapping

from service.stages import dubbing, exporting, mixing, stt, translating
from service.stages.context import StageFn


def stages() -> Mapping[str, StageFn]:
    return {
        "stt": stt.run,
        "translating": translating.run,
        "dubbing": dubbing.run,
        "mixing": mixing.run,
        "exporting": exporting.run,
    }
