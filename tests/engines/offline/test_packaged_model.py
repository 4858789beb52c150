"""Joining a model split across installed packages: once, checked by hash, atomically; the real Whisper base too."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.engines.offline import packaged_model
from service.engines.offline.packaged_model import PackagedModel, materialize
from service.engines.offline.whisper import WHISPER_BASE
from service.errors import EngineError
from tests.support import whisper_base_dir

HALVES = (b"first half of the weights|" * 1000, b"second half|" * 700)


def _install_parts(root: Path, name: str, halves: tuple[bytes, ...]) -> tuple[str, ...]:
    """Packages `<name>_partN` on a path of their own, as pip would lay them out."""
    packages = []
    for number, data in enumerate(halves, start=1):
        package = f"{name}_part{number}"
        folder = root / package / "data"
        folder.mkdir(parents=True)
        (root / package / "__init__.py").write_text('"""Model data only."""\n')
        (folder / f"model.bin.part{number}").write_bytes(data)
        if number == 1:
            (folder / "config.json").write_text("{}")
        packages.append(package)
    return tuple(packages)


@pytest.fixture
def split_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    root = tmp_path / "site"
    name = f"fake_model_{tmp_path.name.replace('-', '_')}"
    parts = _install_parts(root, name, HALVES)
    monkeypatch.syspath_prepend(str(root))
    whole = b"".join(HALVES)
    return PackagedModel(name="fake", parts=parts, joined="model.bin", sha256=hashlib.sha256(whole).hexdigest(),
                         size_bytes=len(whole), extras=("config.json",))


def test_parts_are_joined_once_into_the_data_dir(split_model: PackagedModel, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ThreadPoolExecutor(4) as pool:  # several workers starting at once all get the same, whole model
        folders = list(pool.map(lambda _: materialize(split_model, data), range(4)))
    assert set(folders) == {data / "models" / "fake"}
    assert (folders[0] / "model.bin").read_bytes() == b"".join(HALVES)
    assert (folders[0] / "config.json").is_file()
    assert [p.name for p in (data / "models").iterdir()] == ["fake"]  # no temporary folder left behind
    before = (folders[0] / "model.bin").stat().st_mtime_ns
    assert materialize(split_model, data) == folders[0]
    assert (folders[0] / "model.bin").stat().st_mtime_ns == before  # not joined again


def test_a_wrong_hash_leaves_no_model(split_model: PackagedModel, tmp_path: Path) -> None:
    wrong = PackagedModel(**{**split_model.__dict__, "sha256": "0" * 64})
    with pytest.raises(EngineError) as caught:
        materialize(wrong, tmp_path / "data")
    assert caught.value.code == "model_corrupt"
    assert list((tmp_path / "data" / "models").iterdir()) == []


def test_a_missing_part_names_the_package_to_install(split_model: PackagedModel, tmp_path: Path) -> None:
    missing = PackagedModel(**{**split_model.__dict__, "parts": (*split_model.parts, "no_such_model_part3")})
    assert not packaged_model.installed(missing)
    with pytest.raises(EngineError) as caught:
        materialize(missing, tmp_path / "data")
    assert caught.value.code == "model_missing"
    assert "no-such-model-part3" in caught.value.message


def test_the_packaged_whisper_base_joins_to_its_hash() -> None:
    folder = Path(whisper_base_dir())
    assert folder.name == WHISPER_BASE.name
    assert (folder / "model.bin").stat().st_size == WHISPER_BASE.size_bytes
    assert all((folder / name).is_file() for name in WHISPER_BASE.extras)


def test_a_model_that_cannot_be_joined_leaves_english_working(tmp_path: Path) -> None:
    from service.engines.selection import multilingual_dir
    from tests.support import make_settings

    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("a file where DATA_DIR should be")  # joining fails with an OSError
    settings = make_settings(not_a_folder, "postgresql://unused/db", whisper_multilingual_dir="")
    assert multilingual_dir(settings) is None  # English only, instead of no engines at all
