"""Fail when pyproject.toml and requirements.lock disagree.

Every dependency pyproject.toml names (runtime and every extra) must be pinned in the lock with
``name==version``, and the pin must satisfy pyproject's specifier; every line of the lock must be
a pin. Run by ``make lockcheck`` (part of ``make test``); refresh the lock with ``make lock``.

    python scripts/check_lock.py [pyproject.toml] [requirements.lock]
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def problems(pyproject: Path, lock: Path) -> list[str]:
    """What disagrees, one line each (empty when the lock answers pyproject.toml)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = [Requirement(r) for r in project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        wanted += [Requirement(r) for r in extra]
    pins: dict[str, Version] = {}
    found: list[str] = []
    for number, raw in enumerate(lock.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not version or any(c in version for c in "<>=!~ ;"):
            found.append(f"{lock}:{number}: {raw!r} is not a pin (name==version)")
            continue
        pins[canonicalize_name(name)] = Version(version)
    own = canonicalize_name(project["name"])
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        if name == own:
            continue
        if name not in pins:
            found.append(f"{requirement.name} is in pyproject.toml but not pinned in {lock}")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            found.append(
                f"{requirement.name}: {lock} pins {pins[name]}, outside pyproject.toml's "
                f"{requirement.specifier}"
            )
    return found


def main() -> int:
    pyproject = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    lock = Path(sys.argv[2] if len(sys.argv) > 2 else "requirements.lock")
    found = problems(pyproject, lock)
    for line in found:
        print(f"lock check: {line}", file=sys.stderr)
    if found:
        print("lock check: refresh the lock with `make lock`", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
