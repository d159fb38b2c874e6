"""The README's promises each name the test that holds them: those tests must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _promise_rows() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Promises, and the test that holds each", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "`" in line]


def test_every_test_a_readme_promise_names_exists() -> None:
    rows = _promise_rows()
    assert len(rows) >= 6
    for row in rows:
        module = None
        for ref in re.findall(r"`([^`]+)`", row):
            path, _, name = ref.partition("::")
            if path.endswith((".py", ".sh")):
                module = path
                assert (ROOT / path).is_file(), ref
            if name:
                assert module is not None, row
                tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
                defined = {
                    n.name
                    for n in ast.walk(tree)
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                }
                assert name in defined, ref
