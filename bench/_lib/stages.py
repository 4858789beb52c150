"""The service's stage work replayed outside the service, to run in a pool worker or a child process
(`memory_peak`): each returns its timings and the peak resident set of the process it ran in."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import RATE
from .machine import vm_hwm_kib


def mixing_path(placed: list[Any], total: float, background: str, out_dir: str) -> dict[str, Any]:
    """What the mixing stage runs in a pool worker for a task: build_voice_track, then mix (with background).

    Returns the timings and this worker's own peak RSS (VmHWM, so a peak between two samples still shows).
    """
    from service.audio.mix import MixSettings, mix
    from service.audio.voice_track import build_voice_track

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    build_voice_track(placed, total, str(out / "voice_track.wav"), RATE)
    built = time.perf_counter()
    result = mix(str(out / "voice_track.wav"), background, str(out / "master.wav"), str(out / "master.mp3"),
                 str(out / "voice_stem.wav"), MixSettings())
    return {"build_seconds": round(built - started, 2), "mix_seconds": round(time.perf_counter() - built, 2),
            "integrated_lufs": result.integrated_lufs, "true_peak_dbtp": result.true_peak_dbtp,
            "worker_peak_rss_mib": round(vm_hwm_kib() / 1024, 1)}


def stt_front_end(path: str) -> dict[str, Any]:
    """The length-dependent part of the stt stage's memory, replayed outside the service.

    `WhisperModel.transcribe` (faster-whisper 1.2, on a whole file with VAD on, as the service once called it)
    first decodes the whole file to a 16 kHz float32 array, runs the VAD over it, concatenates the speech
    chunks, and computes the log-Mel features of all of it in one numpy STFT, before the first token is
    decoded. This runs those same calls (the model's own FeatureExtractor, 80 mels as tiny.en) and reports
    this process's peak RSS (VmHWM) after each step.
    """
    import numpy as np
    from faster_whisper.audio import decode_audio
    from faster_whisper.feature_extractor import FeatureExtractor
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    def peak() -> float:
        return round(vm_hwm_kib() / 1024, 1)

    out: dict[str, Any] = {"peak_rss_before_mib": peak()}
    started = time.perf_counter()
    audio = decode_audio(path, sampling_rate=16000)
    out.update(decode_seconds=round(time.perf_counter() - started, 2), peak_rss_after_decode_mib=peak(),
               audio_mib=round(audio.nbytes / 2**20, 1))
    started = time.perf_counter()
    chunks = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=500))
    audio = np.concatenate(collect_chunks(audio, chunks)[0], axis=0)
    out.update(vad_seconds=round(time.perf_counter() - started, 2), peak_rss_after_vad_mib=peak(),
               speech_chunks=len(chunks))
    started = time.perf_counter()
    features = FeatureExtractor(feature_size=80)(audio, chunk_length=30)
    out.update(features_seconds=round(time.perf_counter() - started, 2), peak_rss_after_features_mib=peak(),
               features_mib=round(features.nbytes / 2**20, 1))
    return out


def whisper_transcribe(path: str) -> dict[str, Any]:
    """The stt stage's engine call exactly as the service makes it in a pool worker."""
    from service.engines.offline.whisper import default_model_dir, transcribe_file

    started = time.perf_counter()
    transcript = transcribe_file(str(default_model_dir()), path, "en")
    return {"seconds": round(time.perf_counter() - started, 1), "segments": len(transcript.segments),
            "peak_rss_mib": round(vm_hwm_kib() / 1024, 1)}
