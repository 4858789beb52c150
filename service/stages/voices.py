"""A voice per speaker: chosen once per job from the speakers' measured pitch, the same in every language.

Each engine has a palette of its own voices, each marked as low (a man's register) or high. Speakers are taken
in order of first appearance; a speaker whose median pitch is below `LOW_PITCH_HZ` gets the next unused low
voice, any other the next unused high one (the other register when one runs out), so no two speakers share a
voice while the palette lasts. The choice depends only on the job's transcript (the speakers and their pitch),
so every language's task makes the same choice. A voice the person picked (`voices: {"S1": ...}`) wins.

Palettes map a speaker to an engine's own voice id for a language:
- espeak-ng: a variant and a pitch (`es+m3@40`: espeak-ng voice, variant, pitch 0-100), the pitch spread so
  two speakers of one register stay apart;
- Deepgram Aura-2: the documented voices of the target language (`DEEPGRAM_TTS_VOICES` may list several per
  language); a language with one voice gives every speaker that voice;
- ElevenLabs: its documented premade voices (multilingual: one voice id for every language).
An engine without a palette here (a new one, e.g. Kokoro styles) speaks every line with its default voice
until a palette is added to `PALETTES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.engines.offline import kokoro

LOW_PITCH_HZ = 165.0

# espeak-ng variants (`espeak-ng --voices=variant`) by register, with the pitch each is given. Measured (median
# pitch of one Spanish sentence, audio/speakers.pitch): 80, 103, 132, 163 Hz low; 195, 262, 333 Hz high: any two
# of the seven at least 19 % apart. An eighth speaker shares a voice (the palette starts again).
_ESPEAK_LOW = (("m3", 20), ("m1", 60), ("m2", 75), ("m6", 95))
_ESPEAK_HIGH = (("f2", 50), ("f4", 85), ("f3", 99))

# Aura-2 voices by language and register, from Deepgram's "Voices and Languages" page.
AURA2_PALETTE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (("aura-2-apollo-en", "aura-2-arcas-en", "aura-2-orion-en", "aura-2-zeus-en"),
           ("aura-2-thalia-en", "aura-2-andromeda-en", "aura-2-helena-en", "aura-2-athena-en")),
    "es": (("aura-2-nestor-es", "aura-2-sirio-es", "aura-2-alvaro-es", "aura-2-javier-es"),
           ("aura-2-celeste-es", "aura-2-estrella-es", "aura-2-carina-es", "aura-2-diana-es")),
    "it": (("aura-2-cesare-it", "aura-2-dionisio-it"), ("aura-2-livia-it", "aura-2-cinzia-it", "aura-2-demetra-it")),
    "nl": ((), ("aura-2-rhea-nl", "aura-2-beatrix-nl", "aura-2-daphne-nl", "aura-2-cornelia-nl")),
    "de": ((), ("aura-2-aurelia-de", "aura-2-elara-de")),
    "ja": (("aura-2-ebisu-ja",), ("aura-2-ama-ja",)),
}

# ElevenLabs premade voices (multilingual with eleven_multilingual_v2), by register.
ELEVENLABS_PREMADE: tuple[tuple[str, ...], tuple[str, ...]] = (
    # Adam, Antoni, Josh, Arnold
    ("pNInz6obpgDQGcFmaJgB", "ErXwobaYiN019PkySvjV", "TxGEqnHWrfWFTfGW9XjX", "VR6AewLTigWG4xSOukaG"),
    # Rachel, Bella, Domi, Elli
    ("21m00Tcm4TlvDq8ikWAM", "EXAVITQu4vr4xnSDxMaL", "AZnzlk1XvdvUeBnXmlld", "MF3mGyEYCl7XYWbV9V6O"),
)


@dataclass(frozen=True, slots=True)
class SpeakerVoice:
    """The voice a speaker is dubbed with in one language: the engine's voice id, and how it was chosen."""

    speaker: str
    voice: str
    chosen: str  # "pitch" (from the palette by the speaker's pitch), "picked" (the person's), "default", "clone"


def _registers(speakers: Sequence[Mapping[str, Any]]) -> list[tuple[str, bool]]:
    """(speaker id, low register) in order of first appearance (S1, S2, ...)."""
    ordered = sorted(speakers, key=lambda s: int(str(s["id"])[1:]))
    return [(str(s["id"]), s.get("median_pitch") is not None and float(s["median_pitch"]) < LOW_PITCH_HZ)
            for s in ordered]


def assign(speakers: Sequence[Mapping[str, Any]], low: Sequence[str], high: Sequence[str]) -> dict[str, str]:
    """Each speaker's entry of the palette: unused ones of its register first, then of the other, then again
    from the start (more speakers than voices)."""
    used: set[str] = set()
    chosen: dict[str, str] = {}
    for speaker, is_low in _registers(speakers):
        first, second = (low, high) if is_low else (high, low)
        pick = next((v for v in [*first, *second] if v not in used), None)
        if pick is None:
            everything = [*first, *second]
            pick = everything[len(chosen) % len(everything)] if everything else None
        if pick is not None:
            used.add(pick)
            chosen[speaker] = pick
    return chosen


def espeak_voice(base: str, variant_pitch: str) -> str:
    return f"{base}+{variant_pitch}"


def choose(engine: str, default_voice: str, language: str, speakers: Sequence[Mapping[str, Any]],
           picked: Mapping[str, str], extra_palette: Mapping[str, Sequence[str]] | None = None,
           ) -> dict[str, SpeakerVoice]:
    """The voice of every speaker for `language` on `engine` (its `name`); `default_voice` is the engine's
    `voice_for(language)`. `extra_palette` adds configured voices (DEEPGRAM_TTS_VOICES lists) for a language."""
    if not speakers:
        return {}
    code = language.split("-")[0].lower()
    palette: dict[str, str] = {}
    if engine == "espeak-ng":
        entries = assign(speakers, [f"{v}@{p}" for v, p in _ESPEAK_LOW], [f"{v}@{p}" for v, p in _ESPEAK_HIGH])
        palette = {s: espeak_voice(default_voice, entry) for s, entry in entries.items()}
    elif engine == "deepgram-aura":
        low, high = AURA2_PALETTE.get(code, ((), ()))
        configured = [v for v in (extra_palette or {}).get(code, ()) if v not in low and v not in high]
        palette = assign(speakers, list(low), [default_voice, *configured, *[v for v in high if v != default_voice]])
    elif engine == "elevenlabs":
        palette = assign(speakers, *ELEVENLABS_PREMADE)
    elif engine == "kokoro":  # its styles: one male (the default), four female
        styles = kokoro.voices(language)
        palette = assign(speakers, [s for s in styles if s.startswith("jm_")],
                         [s for s in styles if s.startswith("jf_")])
    out: dict[str, SpeakerVoice] = {}
    for speaker, _ in _registers(speakers):
        if speaker in picked:
            out[speaker] = SpeakerVoice(speaker, _picked(engine, default_voice, picked[speaker]), "picked")
        elif speaker in palette:
            out[speaker] = SpeakerVoice(speaker, palette[speaker], "pitch")
        else:
            out[speaker] = SpeakerVoice(speaker, default_voice, "default")
    return out


def _picked(engine: str, default_voice: str, voice: str) -> str:
    """A person's pick: for espeak-ng a variant (`m3`, `f2@70`) is added to the language's voice."""
    if engine == "espeak-ng" and "+" not in voice and not voice.startswith(default_voice):
        return espeak_voice(default_voice, voice.lstrip("+"))
    return voice
