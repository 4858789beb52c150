"""The environment the tests run in is exactly requirements.lock: a drift or a hand-installed package fails here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_lock.py"


def check_lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_lock", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_lock", module)
    spec.loader.exec_module(module)
    return module


def test_the_installed_environment_is_the_lock() -> None:
    lock = check_lock()
    problems, extraneous = lock.differences(lock.locked(), lock.installed())
    assert problems == [] and extraneous == [], "run `just setup` (or `just lock` after changing pyproject.toml)"


def test_a_drift_and_an_unlocked_package_are_both_caught() -> None:
    lock = check_lock()
    pins = {"numpy": "2.4.6", "stamina": "25.1.0"}
    problems, extraneous = lock.differences(pins, {"numpy": "2.4.6", "stamina": "26.2.0", "six": "1.16.0", "pip": "1"})
    assert problems == ["stamina: locked 25.1.0, installed 26.2.0"]
    assert extraneous == ["six"]


def test_every_project_dependency_is_locked() -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((SCRIPT.parent.parent / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    pins = check_lock().locked()
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is in pyproject.toml but not in requirements.lock: run `just lock`"
        assert requirement.specifier.contains(pins[name]), f"{name} {pins[name]} is outside {requirement.specifier}"
