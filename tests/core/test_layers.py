"""The plane contract (pyproject's import-linter contracts) holds, and would catch an upward import.

`make lint` runs `lint-imports` on the tree; this test also shows that the check bites: the
same contracts run over a copy of the library with one upward, function-level import added.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(package_parent: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_library_keeps_its_layers_and_has_no_circle() -> None:
    proc = _lint(ROOT / "include", ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


def test_an_upward_function_level_import_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "include" / "flightdeck", tmp_path / "pkg" / "flightdeck")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    lake = tmp_path / "pkg" / "flightdeck" / "core" / "lake.py"
    upward = "\n\ndef _upward() -> None:\n    from flightdeck.model import registry  # noqa: F401\n"
    lake.write_text(lake.read_text() + upward)
    proc = _lint(tmp_path / "pkg", tmp_path)
    assert proc.returncode != 0
    assert "flightdeck.core is not allowed to import flightdeck.model" in proc.stdout
    assert "flightdeck.core.lake -> flightdeck.model.registry" in proc.stdout
