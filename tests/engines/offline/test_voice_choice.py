"""Which offline voice speaks: the job's choice, else OFFLINE_VOICE, and espeak-ng where Kokoro cannot."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from service.engines.offline.espeak import EspeakSynthesizer
from service.engines.offline.kokoro import KokoroSynthesizer
from service.engines.offline.voice_choice import OfflineVoice, OfflineVoices, for_job


def _voices(default: OfflineVoice) -> OfflineVoices:
    fast = EspeakSynthesizer(voices=frozenset({"es", "fr-fr", "ca", "de", "eo", "en-us"}))
    return OfflineVoices(fast, KokoroSynthesizer(ThreadPoolExecutor(1), "/nowhere"), default)


@pytest.mark.parametrize(("default", "asked", "language", "engine"), [
    (OfflineVoice.AUTO, "auto", "es", "kokoro"),
    (OfflineVoice.AUTO, "auto", "de", "espeak-ng"),  # Kokoro not measured for German: espeak-ng
    (OfflineVoice.AUTO, "auto", "en", "espeak-ng"),  # measured: espeak-ng's English is understood as well
    (OfflineVoice.AUTO, "natural", "en", "kokoro"),
    (OfflineVoice.AUTO, "fast", "es", "espeak-ng"),
    (OfflineVoice.AUTO, "natural", "eo", "espeak-ng"),  # asked for, but Kokoro does not speak it
    (OfflineVoice.ESPEAK, "auto", "fr", "espeak-ng"),
    (OfflineVoice.ESPEAK, "natural", "fr", "kokoro"),
    (OfflineVoice.KOKORO, "auto", "ca", "kokoro"),
    (OfflineVoice.KOKORO, "fast", "ca", "espeak-ng"),
])
def test_the_job_s_choice_then_the_server_s_default(default: OfflineVoice, asked: str, language: str,
                                                   engine: str) -> None:
    voices = _voices(default)
    assert for_job(voices, language, asked).name == engine
    assert voices.supports(language)


def test_a_cloud_or_single_synthesizer_is_used_as_it_is() -> None:
    fast = EspeakSynthesizer(voices=frozenset({"es"}))
    assert for_job(fast, "es", "natural") is fast
