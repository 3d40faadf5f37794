"""Import rules of docs/ARCHITECTURE.md that the verdict touches."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

NAS = Path(__file__).resolve().parents[2] / "nas"


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def test_ray_is_imported_only_by_the_two_ray_modules() -> None:
    users = sorted(str(p.relative_to(NAS)) for p in NAS.rglob("*.py") if "ray" in _imports(p))
    assert users == ["search/ray_adapter.py", "search/ray_runs.py"]


def test_the_registry_is_light() -> None:
    """nas.variants (imported by FusionConfig, the evaluator side) pulls in no torch,
    Optuna or Ray."""
    code = ("import sys, nas.variants, nas.config; "
            "print(sorted(m for m in ('torch', 'optuna', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=NAS.parent, check=True).stdout.strip()
    assert out == "[]"
