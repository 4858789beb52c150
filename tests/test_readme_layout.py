"""The README's layout table matches the tree: every path it names exists, every folder and module is named."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def layout_rows() -> list[tuple[list[str], str]]:
    """(paths in the first column, the whole row) for each row of the README's Layout table."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        rows.append((re.findall(r"`([^`]+)`", first), line))
    assert rows, "the README has no Layout table"
    return rows


def test_every_path_the_table_names_exists() -> None:
    missing = [path for paths, _ in layout_rows() for path in paths if not (ROOT / path).exists()]
    assert missing == []


def test_every_service_folder_has_a_row() -> None:
    named = {path.rstrip("/") for paths, _ in layout_rows() for path in paths}
    folders = {str(p.relative_to(ROOT)) for p in (ROOT / "service").iterdir()
               if p.is_dir() and p.name != "__pycache__"}
    assert sorted(folders - named) == []


def test_every_module_is_named_in_its_folders_row() -> None:
    rows = layout_rows()
    by_folder = {path.rstrip("/"): row for paths, row in rows for path in paths if (ROOT / path).is_dir()}
    named_files = {path for paths, _ in rows for path in paths}
    unnamed = []
    for module in sorted((ROOT / "service").rglob("*.py")):
        relative = str(module.relative_to(ROOT))
        if module.name == "__init__.py" or relative in named_files:
            continue
        folder = next((by_folder[str(parent.relative_to(ROOT))] for parent in module.parents
                       if str(parent.relative_to(ROOT)) in by_folder), "")
        if not re.search(rf"\b{re.escape(module.stem)}\b", folder):
            unnamed.append(relative)
    assert unnamed == []
