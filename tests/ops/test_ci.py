"""CI as users expect it: the workflow file is valid, its jobs are `.ci/run`'s stages, and the
stages together run every test of `make test` exactly once."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / ".ci" / "run"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
TEST_STAGES = ("unit", "spark", "dags", "scaleout", "e2e", "browser")


def _ci(*args: str) -> str:
    return subprocess.run(["bash", str(RUN), *args], check=True, capture_output=True, text=True, cwd=ROOT).stdout


def _check_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_workflow_is_valid_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    assert _check_workflow(WORKFLOW).returncode == 0, _check_workflow(WORKFLOW).stdout
    broken = yaml.safe_load(WORKFLOW.read_text())
    broken["jobs"]["stage"]["runs-on"] = {"group": 3}
    del broken["jobs"]["image"]["steps"]
    bad = tmp_path / "ci.yml"
    bad.write_text(yaml.safe_dump(broken))
    result = _check_workflow(bad)
    assert result.returncode != 0
    assert "image" in result.stdout


def test_every_workflow_job_calls_a_stage_of_ci_run() -> None:
    stages = set(_ci("--list").split())
    workflow = yaml.safe_load(WORKFLOW.read_text())
    matrix = workflow["jobs"]["stage"]["strategy"]["matrix"]["stage"]
    assert set(matrix) | {"image"} == stages
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert "bash .ci/run ${{ matrix.stage }}" in runs
    assert "bash .ci/run image" in runs


def test_an_unknown_stage_is_refused_with_the_list() -> None:
    result = subprocess.run(["bash", str(RUN), "nope"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 2
    assert "unknown stage 'nope'" in result.stderr
    assert "spark" in result.stderr


def _collect(args: list[str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return [line for line in out.stdout.splitlines() if "::" in line]


@pytest.mark.slow
def test_the_stages_run_every_test_exactly_once() -> None:
    everything = _collect([])
    staged = Counter(node for stage in TEST_STAGES for node in _collect(shlex.split(_ci("--args", stage))))
    assert len(everything) > 100
    assert set(everything) - set(staged) == set(), "tests that no CI stage runs"
    assert set(staged) - set(everything) == set(), "tests a stage runs but make test does not"
    assert [node for node, n in staged.items() if n > 1] == []
