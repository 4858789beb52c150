"""Rule-based offline translation with the Apertium CLI, one subprocess per batch of segments.

Segments are sent as HTML paragraphs: Apertium's HTML deformatter turns each `<p>`/`</p>`
into a superblank and a forced sentence end, so text never flows across segment boundaries
and the tags come back untouched, in order. Splitting on them restores a one-to-one mapping.

Where no pair is installed, a pair goes through a pivot language that has both halves (fr->es->en,
ca->es->pt): two rule-based steps, so rougher than a direct pair, and said so (`pivot_for`, the
manifest, `GET /v1/languages`).
"""

from __future__ import annotations

import functools
import html
import re
from pathlib import Path

from service.engines import process
from service.engines.protocols import UNTRANSLATED_WORDS, Usage, add_usage
from service.errors import EngineError, ErrorCode

DEFAULT_MODES_DIR = "/usr/share/apertium/modes"

# Apertium names languages with ISO 639-3 (newer pairs) or 639-1 (older pairs).
_TO_ISO1 = {
    "eng": "en",
    "spa": "es",
    "cat": "ca",
    "fra": "fr",
    "por": "pt",
    "glg": "gl",
    "ita": "it",
    "deu": "de",
    "epo": "eo",
    "oci": "oc",
    "eus": "eu",
    "arg": "an",
    "ast": "ast",
    "ron": "ro",
    "nld": "nl",
    "afr": "af",
    "srd": "sc",
    "isl": "is",
    "mkd": "mk",
    "hbs": "sh",
    "swe": "sv",
    "dan": "da",
    "nob": "nb",
    "nno": "nn",
    "bul": "bg",
    "rus": "ru",
    "ukr": "uk",
    "bel": "be",
    "pol": "pl",
    "ces": "cs",
    "slk": "sk",
    "slv": "sl",
    "hin": "hi",
    "urd": "ur",
    "kaz": "kk",
    "tat": "tt",
    "tur": "tr",
    "mlt": "mt",
    "cym": "cy",
    "bre": "br",
    "gle": "ga",
    "ind": "id",
    "msa": "ms",
    "frp": "frp",
    "lat": "la",
}
_MODE_RE = re.compile(r"^([a-z]{2,3})-([a-z]{2,3})$")
_PARA_RE = re.compile(r"<p>(.*?)</p>", re.DOTALL)
_MARK_RE = re.compile(r"(?<!\S)[#@](?=\w)")  # generation and transfer errors
_UNKNOWN_RE = re.compile(r"(?<!\w)\*(?=\w)")  # a word it does not know (left as it was), after a space or "(", "<"
_UNKNOWN_WORD_RE = re.compile(r"(?<!\w)(\*)(\w+)")  # the same mark with the word it marks
_BREAK_RE = re.compile(r"<br\s*/?>")


def iso1(code: str) -> str:
    """'eng' -> 'en', 'pt-BR' -> 'pt'; unknown codes pass through lower-cased."""
    base = code.strip().lower().replace("_", "-").split("-")[0]
    return _TO_ISO1.get(base, base)


def discover_modes(modes_dir: str = DEFAULT_MODES_DIR) -> dict[tuple[str, str], str]:
    """Map (source, target) ISO pairs to installed Apertium mode names; variants (_valencia, _US) skipped."""
    found: dict[tuple[str, str], str] = {}
    directory = Path(modes_dir)
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.mode")):
        match = _MODE_RE.match(path.stem)
        if match:
            found.setdefault((iso1(match.group(1)), iso1(match.group(2))), path.stem)
    return found


# Pivots tried in this order: Spanish is Apertium's hub (most pairs, most mature), then English and Catalan.
PIVOT_PREFERENCE = ("es", "en", "ca", "fr", "pt", "it")


def routes(direct: set[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """Every pair reachable from the `direct` ones: direct pairs map to None, the others to their pivot
    (one intermediate language at most; the preferred pivot when several would do)."""
    found: dict[tuple[str, str], str | None] = {pair: None for pair in direct}
    targets_of: dict[str, set[str]] = {}
    for source, target in direct:
        targets_of.setdefault(source, set()).add(target)
    order = {code: i for i, code in enumerate(PIVOT_PREFERENCE)}
    for source, middles in targets_of.items():
        for middle in sorted(middles, key=lambda code: (order.get(code, len(order)), code)):
            for target in targets_of.get(middle, ()):
                if target != source and (source, target) not in found:
                    found[(source, target)] = middle
    return found


def group_runs(texts: list[str], groups: list[int] | None) -> list[list[int]]:
    """Indices of the non-empty texts, in runs of consecutive texts that share a group."""
    runs: list[list[int]] = []
    previous: int | None = None
    for i, text in enumerate(texts):
        if not text.strip():
            previous = None
            continue
        group = groups[i] if groups is not None else i
        if runs and group == previous:
            runs[-1].append(i)
        else:
            runs.append([i])
        previous = group
    return runs


def encode_batch(texts: list[str], runs: list[list[int]] | None = None) -> str:
    """One `<p>` per run (a sentence, or a lone segment); within a run, segments are separated by `<br/>`,
    an inline tag Apertium carries through as a blank without ending the sentence. Internal whitespace
    (newlines included) collapses to single spaces."""
    runs = runs if runs is not None else [[i] for i in range(len(texts))]
    return "".join(
        "<p>" + "<br/>".join(html.escape(" ".join(texts[i].split()), quote=False) for i in run) + "</p>\n"
        for run in runs)


def decode_batch(output: str, originals: list[str], runs: list[list[int]] | None = None) -> list[str]:
    """The translation of each text of `originals` (in the runs' order, as encoded)."""
    runs = runs if runs is not None else [[i] for i in range(len(originals))]
    paragraphs = _PARA_RE.findall(output)
    if len(paragraphs) != len(runs):
        raise EngineError(ErrorCode.ENGINE_FAILED, f"apertium returned {len(paragraphs)} segments for {len(runs)}")
    result: dict[int, str] = {}
    for run, paragraph in zip(runs, paragraphs, strict=True):
        parts = _BREAK_RE.split(paragraph)
        sources = [originals[i] for i in run]
        if len(parts) != len(run) or any(not _clean(p, "").strip() for p in parts):
            # The marker was lost or moved to an end: share the sentence out by the sources' lengths.
            parts = split_like(_clean(_BREAK_RE.sub(" ", paragraph), " ".join(sources)), sources)
        for i, part in zip(run, parts, strict=True):
            result[i] = _clean(part, originals[i])
    return [result[i] for run in runs for i in run]


def split_like(text: str, sources: list[str]) -> list[str]:
    """`text` cut at word boundaries into as many parts as `sources`, in proportion to their lengths."""
    words = text.split()
    if len(sources) <= 1 or not words:
        return [text] + [""] * (len(sources) - 1)
    total = sum(len(s) for s in sources) or len(sources)
    parts: list[str] = []
    taken = 0
    for k, _source in enumerate(sources[:-1]):
        share = sum(len(s) for s in sources[: k + 1]) / total
        cut = max(taken + 1, min(round(share * len(words)), len(words) - (len(sources) - 1 - k)))
        parts.append(" ".join(words[taken:cut]))
        taken = cut
    parts.append(" ".join(words[taken:]))
    return parts


def _clean(translated: str, original: str) -> str:
    text = " ".join(html.unescape(translated).split())
    # Apertium marks words it does not know with '*' (counted by `untranslated_words` first), and generation
    # ('#') and transfer ('@') errors: drop them all, except where the source itself had them. An unknown word
    # comes back as it was, so its mark stays only where the source had that very token ("*laughs*"); a hashtag
    # or handle is translated, so its mark stays where the source had the character.
    text = _UNKNOWN_WORD_RE.sub(lambda m: m.group(0) if m.group(0) in original else m.group(2), text)
    return _MARK_RE.sub(lambda m: m.group(0) if m.group(0) in original else "", text)


def untranslated_words(output: str, source: str) -> int:
    """How many words Apertium left as they were (it did not know them): its `*` marks, less any the
    source had itself."""
    return max(len(_UNKNOWN_RE.findall(output)) - len(_UNKNOWN_RE.findall(source)), 0)


class ApertiumTranslator:
    """Translator over installed Apertium pairs; `pairs()` reflects the modes on disk."""

    name = "apertium"

    def __init__(self, data_dir: str | None = None, timeout: float = 300.0) -> None:
        self._data_dir = data_dir
        self._modes_dir = str(Path(data_dir) / "modes") if data_dir else DEFAULT_MODES_DIR
        self._timeout = timeout

    @functools.cached_property
    def _modes(self) -> dict[tuple[str, str], str]:
        """The installed modes, read once: they do not change while the process runs (and job creation asks)."""
        return discover_modes(self._modes_dir)

    @functools.cached_property
    def _routes(self) -> dict[tuple[str, str], str | None]:
        """(source, target) → the pivot language, or None for a direct pair."""
        return routes(set(self._modes))

    def pairs(self) -> set[tuple[str, str]]:
        return set(self._routes)

    def supports(self, source: str, target: str) -> bool:
        return (iso1(source), iso1(target)) in self._routes

    def pivot_for(self, source: str, target: str) -> str | None:
        return self._routes.get((iso1(source), iso1(target)))

    def mode_for(self, source: str, target: str) -> str:
        mode = self._modes.get((iso1(source), iso1(target)))
        if mode is None:
            raise EngineError(ErrorCode.UNSUPPORTED_LANGUAGE, f"no Apertium pair installed for {source}->{target}")
        return mode

    async def translate(
        self, texts: list[str], source: str, target: str, *, budgets: list[int | None] | None = None,
        groups: list[int] | None = None, usage: Usage | None = None,
    ) -> list[str]:
        if iso1(source) == iso1(target):
            return [" ".join(t.split()) for t in texts]
        pivot = self.pivot_for(source, target)
        if pivot is not None:
            first: Usage = {}
            second: Usage = {}
            halfway = await self._translate_direct(texts, source, pivot, groups, first)
            translated = await self._translate_direct(halfway, pivot, target, groups, second)
            # A word unknown on the first leg goes through the second as it was, unknown again: counted once.
            add_usage(usage, **{UNTRANSLATED_WORDS: max(first.get(UNTRANSLATED_WORDS, 0),
                                                        second.get(UNTRANSLATED_WORDS, 0))})
            return translated
        return await self._translate_direct(texts, source, target, groups, usage)

    async def _translate_direct(self, texts: list[str], source: str, target: str, groups: list[int] | None,
                                usage: Usage | None) -> list[str]:
        mode = self.mode_for(source, target)
        runs = group_runs(texts, groups)
        result = [""] * len(texts)  # empty segments stay empty without a trip through Apertium
        if not runs:
            return result
        args = ["apertium", "-f", "html"]  # without -u: unknown words come back marked, to be counted
        if self._data_dir:
            args += ["-d", self._data_dir]
        batch = encode_batch(texts, runs)
        out = (await process.run([*args, mode], batch.encode(), self._timeout)).decode("utf-8", "replace")
        add_usage(usage, **{UNTRANSLATED_WORDS: untranslated_words(out, batch)})
        translated = decode_batch(out, texts, runs)
        for i, text in zip([i for run in runs for i in run], translated, strict=True):
            result[i] = text
        return result
