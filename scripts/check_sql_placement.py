"""Lint: SQL runs only in `service/db/` (the table modules and the connection helpers).

Fails with the file and line of every `.fetch*`/`.execute*`/`.copy_*` call made elsewhere in
`service/`, so a query cannot creep into a route, a stage or the supervisor unnoticed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

QUERY_METHODS = frozenset({"fetch", "fetchrow", "fetchval", "fetchmany", "execute", "executemany",
                           "copy_records_to_table", "copy_to_table", "copy_from_query", "cursor", "prepare"})
ROOT = Path(__file__).resolve().parent.parent
ALLOWED = ROOT / "service" / "db"


def offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in QUERY_METHODS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.func.attr}() outside service/db/")
    return found


def main() -> int:
    problems = [o for path in sorted((ROOT / "service").rglob("*.py"))
                if not path.is_relative_to(ALLOWED) for o in offences(path)]
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} SQL call(s) outside service/db/: move them into the module that owns the table")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
