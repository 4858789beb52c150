"""Fail when the environment differs from requirements.lock: a version drift or a hand-installed package.

`just setup` installs exactly the lock; this check (run by `just setup` and `just lint`) makes sure nothing
else is there, so a package installed by hand on a developer machine cannot hide a missing pin.
`--remove-extraneous` uninstalls what the lock does not name (used by `just setup`).
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"
NOT_LOCKED = {"pip", "dubbing"}  # the installer itself and the project (installed editable from the tree)


def locked() -> dict[str, str]:
    """Name → version of every lock entry whose environment marker holds here."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if not line or line[0] in " #-":
            continue
        requirement = Requirement(line.rstrip(" \\"))
        if requirement.marker is None or requirement.marker.evaluate():
            (spec,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}


def differences(pins: dict[str, str], present: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems with locked packages, names installed but not locked)."""
    problems = [f"{name}: locked {version}, installed {present.get(name, 'nothing')}"
                for name, version in sorted(pins.items()) if present.get(name) != version]
    extraneous = sorted(set(present) - set(pins) - NOT_LOCKED)
    return problems, extraneous


def main() -> int:
    problems, extraneous = differences(locked(), installed())
    if "--remove-extraneous" in sys.argv and extraneous:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", *extraneous], check=True)
        problems, extraneous = differences(locked(), installed())
    for problem in problems:
        print(f"requirements.lock: {problem}", file=sys.stderr)
    for name in extraneous:
        print(f"requirements.lock: {name} is installed but not locked (add it to pyproject.toml and run `just lock`)",
              file=sys.stderr)
    if problems or extraneous:
        print("the environment differs from requirements.lock: run `just setup`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
