"""The dub's timing in the dubbed *video* of a media job, measured on the audio track the video carries, and the
video's picture against the input's (issue 20).

Input: real read English speech (`_lib/real_speech.py`: Asterisk prompts and LibriVox, Debian packages) mixed 6 dB
over a generated music-like bed (`tests/support/media.music_bed`; RMS of the speech over the bed's), both
channels, in an MP4 with a 320x180 test-pattern picture (h264 ultrafast, 25 fps) and an AAC track. The real
`dubbing serve` (CPU_WORKERS=2) dubs it into Spanish as a media job, once per offline voice (`"offline_voice":
"fast"` first, `natural` with `--voices fast natural`), and every artifact is downloaded.

Measured from the returned video:

* the dub track (audio track 1) decoded with ffmpeg; its lag against the downloaded `master.wav` (cross-correlation,
  +-100 ms; 0 when the remux neither shifts nor pads the dub) and the correlation there;
* the dubbed voice as the video plays it: the video's dub track minus the bed that the master carries (`master.wav -
  voice_stem.wav`: the service writes the stem at the master's gain, so that stem + ducked bed = master); what is
  left is the dub as encoded in the video (with the codec's noise). Its timing against the clean original voice
  with `bench/sync_quality.py`'s own voice-activity detector and per-segment measurement (imported, not copied),
  the clean voice's lines with their room-noise lead-ins taken out (`speech_levels` says why):
  share of segments whose dubbed duration is within +-10 % of the source speech (target >= 90 %) and the onset
  offset's p95 (target <= 100 ms). Beside it the same figures on the downloaded voice stem, and the manifest's;
* the picture: codec, frame count (packets) and the video stream's duration against the input's (within one
  frame), and the audio codecs (the dub AAC in MP4).

    .venv/bin/python bench/media_sync.py                          # 180 s, fast voice
    .venv/bin/python bench/media_sync.py --voices fast natural    # both offline voices
    .venv/bin/python bench/media_sync.py --seconds 60 --quick
    .venv/bin/python bench/media_sync.py --reuse                  # measure the last downloads again

A control runs last (skip it with --no-control): the same clean voice and the same bed uploaded apart, as a voice
job with the fast voice, its voice stem measured the same way: the timing "as today" for this very speech.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from _lib import ADMIN_URL, RATE, machine, real_speech, servers
from _lib.inputs import run_job, stage_times, upload_files
from _lib.results import write_results
from media_memory import tree_cpu_seconds
from sync_quality import (
    ABOVE_FLOOR_DB,
    FRAME,
    TARGETS,
    decode,
    detect,
    frame_levels,
    iou,
    measure_segments,
    segment_figures,
)

from tests.support import scratch_database
from tests.support.media import music_bed

SPEECH_OVER_BED_DB = 6.0
OUT_DIR = Path(tempfile.gettempdir()) / "dubbing-bench-media-sync"
WANTED = {"video": "dubbed.mp4", "master_wav": "master.wav", "voice_stem": "voice_stem.wav",
          "manifest": "manifest.json", "background_stem": "background_stem.wav"}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def make_input(seconds: float, folder: Path, reuse: bool = False) -> tuple[real_speech.VoiceInput, Path]:
    """The real voice (clean, for reference) and the MP4 made of it over the bed."""
    voice = real_speech.make_real_voice(seconds)
    if reuse and (folder / "talk.mp4").is_file() and (folder / "bed.wav").is_file():
        return voice, folder / "talk.mp4"
    speech, rate = sf.read(voice.path, dtype="float32")
    assert rate == RATE
    spoken = np.zeros(len(speech), dtype=bool)
    for start, end, _ in voice.lines:
        spoken[int(start * RATE):int(end * RATE)] = True
    bed = music_bed(len(speech) / RATE)[: len(speech)]
    bed = bed * _rms(speech[spoken]) / _rms(bed) / 10 ** (SPEECH_OVER_BED_DB / 20)
    mixed = speech + bed
    gain = 0.9 / max(float(np.max(np.abs(mixed))), 0.9)
    mixed *= gain
    folder.mkdir(parents=True, exist_ok=True)
    # The same bed alone, for the control: a voice job of the clean voice over it (today's way in).
    sf.write(folder / "bed.wav", np.stack([bed, bed], axis=1) * gain, RATE, subtype="PCM_16")
    wav, video = folder / "mix.wav", folder / "talk.mp4"
    sf.write(wav, np.stack([mixed, mixed], axis=1), RATE, subtype="PCM_16")
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc=size=320x180:rate=25:duration={len(speech) / RATE:.3f}",
                    "-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", "-shortest", str(video)], check=True)
    wav.unlink()
    return voice, video


def probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries",
                          "format=format_name,duration:stream=index,codec_type,codec_name,nb_read_packets,duration,"
                          "avg_frame_rate:stream_tags=language,DURATION", "-of", "json", str(path)],
                         check=True, capture_output=True).stdout
    return dict(json.loads(out))


def _stream_seconds(stream: dict[str, Any]) -> float:
    if stream.get("duration") not in (None, "N/A"):
        return float(stream["duration"])
    h, m, s = stream["tags"]["DURATION"].split(":")  # Matroska keeps it as a tag
    return int(h) * 3600 + int(m) * 60 + float(s)


def picture_identity(source: Path, dubbed: Path) -> dict[str, Any]:
    """The returned picture against the input's: codec, frame count, duration (within one frame)."""
    before, after = probe(source), probe(dubbed)
    v_in = next(s for s in before["streams"] if s["codec_type"] == "video")
    v_out = [s for s in after["streams"] if s["codec_type"] == "video"]
    num, den = (int(x) for x in v_in["avg_frame_rate"].split("/"))
    frame = den / num
    gap = abs(_stream_seconds(v_out[0]) - _stream_seconds(v_in))
    return {"codec_in": v_in["codec_name"], "codec_out": v_out[0]["codec_name"],
            "frames_in": int(v_in["nb_read_packets"]), "frames_out": int(v_out[0]["nb_read_packets"]),
            "duration_gap_ms": round(gap * 1000, 2), "frame_ms": round(frame * 1000, 2),
            "video_streams": len(v_out),
            "audio": [(s["codec_name"], s.get("tags", {}).get("language")) for s in after["streams"]
                      if s["codec_type"] == "audio"],
            "identical": len(v_out) == 1 and v_out[0]["codec_name"] == v_in["codec_name"]
            and v_out[0]["nb_read_packets"] == v_in["nb_read_packets"] and gap <= frame + 1e-6}


def lag_against(track: np.ndarray, reference: np.ndarray, max_lag: int) -> tuple[int, float]:
    """The lag (samples; positive: `track` late) with the best normalised correlation, and that correlation."""
    n = min(len(track), len(reference)) - 2 * max_lag
    ref = reference[max_lag:max_lag + n].astype(np.float64)
    best, best_lag = -2.0, 0
    for lag in range(-max_lag, max_lag + 1):
        seg = track[max_lag + lag:max_lag + lag + n].astype(np.float64)
        c = float(np.dot(seg, ref) / np.sqrt(np.dot(seg, seg) * np.dot(ref, ref) + 1e-30))
        if c > best:
            best, best_lag = c, lag
    return best_lag, best


def speech_levels(voice: real_speech.VoiceInput) -> np.ndarray:
    """The clean voice's frame levels with each line's own room noise taken out: a frame within ABOVE_FLOOR_DB of
    its line's noise floor (the 10th-percentile frame of the line) is silence.

    sync_quality's detector takes one noise floor for the whole recording, which here is the digital silence
    between the prompts; the LibriVox lines bring ~250 ms of room noise (-45 dB) before their first word, which
    that floor counts as speech. A voice job's dub is placed by the same detector on that same recording, so
    there the two agree; a media job places its dub on the *isolated* voice, from which DeepFilterNet3 took the
    room noise away, so its dub starts at the first word and the recorded lead-in reads as a 250 ms late onset.
    The speech, not the room noise of the recording it came from, is what the dub should follow."""
    levels = frame_levels(voice.path).copy()
    for start, end, _ in voice.lines:
        lo, hi = int(start / FRAME), min(int(np.ceil(end / FRAME)), len(levels))
        if hi - lo > 10:
            line = levels[lo:hi]
            line[line <= np.percentile(line, 10) + ABOVE_FLOOR_DB] = -120.0
    return levels


def measure(voice: real_speech.VoiceInput, source_video: Path, files: dict[str, Path], folder: Path) -> dict[str, Any]:
    manifest = json.loads(files["manifest"].read_text())
    segments = manifest["segments"]
    total = float(manifest["duration_seconds"])
    rate = 16000
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(files["video"]), "-map", "0:a:0", "-ac", "1",
                    "-ar", str(rate), "-c:a", "pcm_f32le", str(folder / "video-dub-track.wav")], check=True)
    track = sf.read(folder / "video-dub-track.wav", dtype="float32")[0]
    master = decode(files["master_wav"], rate)
    stem = decode(files["voice_stem"], rate)
    lag, corr = lag_against(track, master, rate // 10)
    n = min(len(track), len(master), len(stem))
    bed = master[:n] - stem[:n]
    dub = track[:n] - bed
    sf.write(folder / "video-dub-voice.wav", dub, rate, subtype="FLOAT")
    residue = _rms(track[:n] - master[:n]) / max(_rms(master[:n]), 1e-12)
    out: dict[str, Any] = {"track_lag_vs_master_samples_16k": lag, "track_correlation_vs_master": round(corr, 5),
                           "track_minus_master_db": round(20 * np.log10(max(residue, 1e-9)), 1),
                           "track_seconds": round(len(track) / rate, 3), "master_seconds": round(len(master) / rate, 3)}
    # sync_quality's detector threshold (35 dB under the speech level) and, as its own sensitivity check does, 30
    # dB: on the video's track the bed's AAC noise left after the subtraction (~-55 dB) reaches -45 dB in single
    # 10-ms frames, which the 250-ms bridging then joins to the dub's runs.
    # The reference is the speech of the clean voice (`speech_levels`); "_room_noise" rows take the recording as
    # it is, lead-ins of room noise included, as sync_quality does.
    speech, recorded = speech_levels(voice), frame_levels(voice.path)
    for below, suffix, reference in ((35.0, "", speech), (30.0, "_30_db", speech), (35.0, "_room_noise", recorded)):
        source = detect(reference, below)
        for name, path in (("video_track", folder / "video-dub-voice.wav"), ("voice_stem", files["voice_stem"])):
            activity = detect(frame_levels(path), below)
            rows = measure_segments(segments, total, source, activity)
            figures = segment_figures(rows)
            figures["speech_iou"] = round(iou(source.active, activity.active), 4)
            figures["detector_threshold_db"] = activity.threshold_db
            out[name + suffix] = figures
            if name == "video_track" and not suffix:
                out["per_segment"] = rows
    sync = manifest.get("sync", {})
    out["manifest"] = {k: sync.get(k) for k in ("within_10_percent", "onset_offset_p50_ms", "onset_offset_p95_ms",
                                                 "speech_iou", "units", "units_dubbed")}
    out["picture"] = picture_identity(source_video, files["video"])
    mine = out["video_track"]
    out["verdict"] = {"within_10_percent": mine["within_10_percent"] >= TARGETS["within_10_percent"],
                      "onset_p95": mine["onset_p95_ms"] is not None
                      and mine["onset_p95_ms"] <= TARGETS["onset_p95_ms"],
                      "picture_identical": out["picture"]["identical"]}
    return out


def measure_control(voice: real_speech.VoiceInput, files: dict[str, Path]) -> dict[str, Any]:
    """The control job's voice stem (the clean voice and the bed uploaded apart), measured as the media job's."""
    manifest = json.loads(files["manifest"].read_text())
    segments, total = manifest["segments"], float(manifest["duration_seconds"])
    activity = detect(frame_levels(files["voice_stem"]))
    out: dict[str, Any] = {}
    for name, reference in (("voice_stem", speech_levels(voice)), ("voice_stem_room_noise", frame_levels(voice.path))):
        source = detect(reference)
        figures = segment_figures(measure_segments(segments, total, source, activity))
        figures["speech_iou"] = round(iou(source.active, activity.active), 4)
        out[name] = figures
    sync = manifest.get("sync", {})
    out["manifest"] = {k: sync.get(k) for k in ("within_10_percent", "onset_offset_p50_ms", "onset_offset_p95_ms",
                                                 "speech_iou", "units", "units_dubbed")}
    return out


async def dub(voices: list[str], video: Path, out_dir: Path, done: Callable[[str, dict[str, Any]], None],
              control: tuple[Path, Path] | None = None) -> None:
    async with scratch_database(ADMIN_URL, "bench_media_sync") as url:
        with tempfile.TemporaryDirectory(prefix="bench-media-sync-") as tmp:
            async with servers.serving("dubbing", url, Path(tmp), CPU_WORKERS="2") as server, \
                    httpx.AsyncClient(base_url=server.base_url, timeout=600) as client:
                headers = servers.auth("bench")
                runs = [(voice, voice) for voice in voices] + ([("control", "fast")] if control else [])
                for name, offline_voice in runs:
                    if name == "control":  # today's way in: the clean voice and the bed as two uploads
                        assert control is not None
                        objects = await upload_files(client, headers, {"voice": control[0], "background": control[1]})
                        request = {"voice_object": objects["voice"], "background_object": objects["background"]}
                    else:
                        objects = await upload_files(client, headers, {"media": video})
                        request = {"media_object": objects["media"]}
                    load = machine.load_average()
                    cpu = tree_cpu_seconds(server.pid)
                    run = await run_job(client, headers, {
                        **request, "source_language": "en", "target_languages": ["es"],
                        "offline_voice": offline_voice}, timeout=3 * 3600)
                    cpu = tree_cpu_seconds(server.pid) - cpu
                    listed = (await client.get(f"/v1/jobs/{run.job_id}/artifacts", headers=headers)).json()
                    folder = out_dir / name
                    folder.mkdir(parents=True, exist_ok=True)
                    files: dict[str, Path] = {}
                    for art in listed["artifacts"]:
                        if art["kind"] in WANTED:
                            body = (await client.get(art["download_url"])).content
                            (folder / WANTED[art["kind"]]).write_bytes(body)
                            files[art["kind"]] = folder / WANTED[art["kind"]]
                    import asyncpg

                    conn = await asyncpg.connect(url)
                    try:
                        timing = await stage_times(conn, run.job_id)
                    finally:
                        await conn.close()
                    run_figures = {"status": run.status, "wall_seconds": round(run.wall_seconds, 1),
                                           "cpu_seconds_tree": round(cpu, 1), "load_average_before": load,
                                           "load_average_after": machine.load_average(),
                                           "stage_seconds": {lang: t["stages"] for lang, t in timing["tasks"].items()},
                                           "files": files}
                    print(f"{name}: {run.status} in {run.wall_seconds:.1f} s wall, {cpu:.1f} CPU-s, load "
                          f"{load}; stages {run_figures['stage_seconds']}", flush=True)
                    done(name, run_figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--voices", nargs="+", default=["fast"], choices=["fast", "natural"])
    parser.add_argument("--quick", action="store_true", help="60 s")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the last run's downloads again (jobs from bench/results/media_sync.json)")
    parser.add_argument("--no-control", action="store_true",
                        help="skip the control: the same clean voice and bed as a voice job (today's timing)")
    args = parser.parse_args()
    seconds = 60.0 if args.quick else args.seconds
    out_dir = OUT_DIR / f"{int(seconds)}s"
    voice, video = make_input(seconds, out_dir, args.reuse)
    results: dict[str, Any] = {
        "benchmark": "media_sync", "environment": machine.environment(),
        "input": {"seconds": seconds, "lines": len(voice.lines), "speech_over_bed_db": SPEECH_OVER_BED_DB,
                  "voice": "real read English speech (bench/_lib/real_speech.py)", "credit": real_speech.CREDIT,
                  "bed": "tests/support/media.music_bed", "video": "MP4, 320x180 testsrc h264 25 fps, AAC 192k"},
        "targets": {"within_10_percent": TARGETS["within_10_percent"], "onset_p95_ms": TARGETS["onset_p95_ms"]},
        "runs": {}}
    def done(name: str, run: dict[str, Any]) -> None:
        files = run.pop("files")
        if name == "control":
            figures = measure_control(voice, files) if run["status"] == "complete" else {}
            results["runs"][name] = {**run, **figures, "input": "the clean voice and the bed as two uploads (a "
                                                               "voice job, fast voice): today's timing"}
            write_results("media_sync", results, quick=args.quick)
            if figures:
                s, r, m = figures["voice_stem"], figures["voice_stem_room_noise"], figures["manifest"]
                print(f"\ncontrol (voice job, same speech and bed): {s['segments']} segments, voice stem within "
                      f"+-10 % {100 * s['within_10_percent']:.1f} %, onset p95 {s['onset_p95_ms']} ms; against the "
                      f"recording's room noise too {100 * r['within_10_percent']:.1f} %, p95 {r['onset_p95_ms']} ms; "
                      f"manifest {m['within_10_percent']}, p95 {m['onset_offset_p95_ms']} ms", flush=True)
            return
        figures = measure(voice, video, files, out_dir / name) if run["status"] == "complete" else {}
        results["runs"][name] = {**run, **figures}
        write_results("media_sync", results, quick=args.quick)
        if not figures:
            print(f"{name}: job {run['status']}, nothing measured")
            return
        v, s, m, p = figures["video_track"], figures["voice_stem"], figures["manifest"], figures["picture"]
        print(f"\n{name}: {v['segments']} segments. On the video's dub track: within +-10 % "
              f"{100 * v['within_10_percent']:.1f} %, onset p95 {v['onset_p95_ms']} ms (p50 {v['onset_p50_ms']}), "
              f"IoU {v['speech_iou']}; on the voice stem: {100 * s['within_10_percent']:.1f} %, p95 "
              f"{s['onset_p95_ms']} ms; manifest: {m['within_10_percent']}, p95 {m['onset_offset_p95_ms']} ms")
        vr, sr = figures["video_track_room_noise"], figures["voice_stem_room_noise"]
        print(f"  against the recording's room noise too (sync_quality's reference): video track "
              f"{100 * vr['within_10_percent']:.1f} %, p95 {vr['onset_p95_ms']} ms; voice stem "
              f"{100 * sr['within_10_percent']:.1f} %, p95 {sr['onset_p95_ms']} ms")
        v30, s30 = figures["video_track_30_db"], figures["voice_stem_30_db"]
        print(f"  detector 30 dB under the speech: video track {100 * v30['within_10_percent']:.1f} %, p95 "
              f"{v30['onset_p95_ms']} ms; voice stem {100 * s30['within_10_percent']:.1f} %, p95 "
              f"{s30['onset_p95_ms']} ms")
        print(f"  track vs master.wav: lag {figures['track_lag_vs_master_samples_16k']} samples at 16 kHz, "
              f"correlation {figures['track_correlation_vs_master']}, difference "
              f"{figures['track_minus_master_db']} dB")
        print(f"  picture: {p['codec_in']}->{p['codec_out']}, frames {p['frames_in']}->{p['frames_out']}, duration "
              f"gap {p['duration_gap_ms']} ms (a frame {p['frame_ms']} ms), audio {p['audio']}; verdict "
              f"{figures['verdict']}", flush=True)

    if args.reuse:
        from _lib.results import RESULTS_DIR

        before = json.loads((RESULTS_DIR / ("media_sync.quick.json" if args.quick else "media_sync.json")).read_text())
        for name, run in before["runs"].items():
            if not (out_dir / name).is_dir():
                continue
            kept = {k: run[k] for k in ("status", "wall_seconds", "cpu_seconds_tree", "load_average_before",
                                        "load_average_after", "stage_seconds")}
            done(name, {**kept, "files": {kind: out_dir / name / file for kind, file in WANTED.items()}})
        return
    control = None if args.no_control else (voice.path, out_dir / "bed.wav")
    asyncio.run(dub(args.voices, video, out_dir, done, control))


if __name__ == "__main__":
    main()
