"""What a downloaded file is called: after the input and the language ("interview_es.mp3"), never the
storage's own object name ("master.mp3"), so the files of two jobs or two languages do not collide.

The name travels in the signed URL (`download=`): local storage answers it with `Content-Disposition`,
Supabase Storage does the same for its own signed URLs.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath
from urllib.parse import quote

from service.domain import ArtifactKind

FALLBACK_STEM = "dub"
# What the artifact is, when its extension alone does not say it (two kinds share ".wav" and ".json").
_SUFFIX = {ArtifactKind.VOICE_STEM: "_voice", ArtifactKind.MANIFEST: "_manifest",
           ArtifactKind.TRANSCRIPT_JSON: "_transcript", ArtifactKind.TRANSCRIPT_SRT: "_transcript",
           ArtifactKind.TRANSCRIPT_VTT: "_transcript"}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|]+')


def _clean(name: str) -> str:
    """A file name any system accepts: no separators, control or reserved characters, no leading dots."""
    return _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip(" ._")[:120]


def stem(input_name: str | None) -> str:
    """The input's name without its extension ("Interview 3.mp3" → "Interview 3")."""
    if not input_name:
        return FALLBACK_STEM
    base = PurePosixPath(input_name.replace("\\", "/")).name
    return _clean(base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base) or FALLBACK_STEM


def for_artifact(input_name: str | None, kind: str, language: str | None, object_path: str) -> str:
    extension = PurePosixPath(object_path).suffix
    language_part = f"_{language}" if language else ""
    return f"{stem(input_name)}{language_part}{_SUFFIX.get(ArtifactKind(kind), '')}{extension}"


def for_input(input_name: str | None, kind: str, object_path: str) -> str:
    """An input downloads under the name it was uploaded with."""
    cleaned = _clean(PurePosixPath((input_name or "").replace("\\", "/")).name) if input_name else ""
    return cleaned or f"{FALLBACK_STEM}_{kind}{PurePosixPath(object_path).suffix}"


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII `filename` for old clients and the exact UTF-8 `filename*` (RFC 6266)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r'[^A-Za-z0-9._ ()+,-]+', "_", ascii_name).strip() or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
