"""Which function runs each work stage. The pipeline's stage modules register here."""

from __future__ import annotations

from collections.abc import Mapping

from service.stages.context import StageFn


def stages() -> Mapping[str, StageFn]:
    return {}
