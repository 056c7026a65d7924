"""The web UIs as a person meets them, in a real browser (Debian's chromium through Playwright).

Runs against the e2e stack after the short loop (``conftest.py``): log in, see every
flightdeck DAG, trigger training and a rollback through their trigger forms, and see
the champion alias in the MLflow UI. Each step saves a screenshot under
``$FLIGHTDECK_SCREENSHOTS`` (default ``.flightdeck/screenshots``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# The machine has no internet: no background networking, no component updates.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


def _shots() -> Path:
    folder = Path(os.environ.get("FLIGHTDECK_SCREENSHOTS") or ROOT / ".flightdeck" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _dag_ids() -> list[str]:
    return sorted(p.stem for p in (ROOT / "dags").glob("flightdeck_*.py"))


@pytest.fixture(scope="module")
def page(stack: Any, demo_result: Any) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        # MLflow runs its basic-auth app: the browser answers its challenge, and only MLflow's.
        user, password = stack.mlflow_credentials()
        context = browser.new_context(
            viewport={"width": 1400, "height": 900},
            http_credentials={"username": user, "password": password, "origin": stack.mlflow_url},
        )
        context.set_default_timeout(TIMEOUT_MS)
        tab = context.new_page()
        tab.goto(stack.airflow_url, wait_until="load")
        tab.get_by_label("Username").fill("admin")
        tab.get_by_label("Password").fill(stack.admin_password())
        tab.screenshot(path=_shots() / "01-login.png")
        tab.get_by_role("button", name="Sign in").click()
        tab.get_by_text("Dags").first.wait_for()
        yield tab
        browser.close()


def _trigger_form(page: Any, stack: Any, dag_id: str) -> Any:
    """Open a DAG's page and its trigger form; returns the dialog."""
    page.goto(f"{stack.airflow_url}/dags/{dag_id}", wait_until="load")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def _submit_and_wait(page: Any, dialog: Any, api: Any, dag_id: str, shot: str, timeout: float) -> dict[str, Any]:
    """Press the form's Trigger button, find the run it created, wait for it to end."""
    before = {r["dag_run_id"] for r in api.runs(dag_id)}
    page.screenshot(path=_shots() / f"{shot}-form.png")
    dialog.get_by_role("button", name="Trigger").last.click()
    deadline = time.monotonic() + 60
    new: list[dict[str, Any]] = []
    while not new and time.monotonic() < deadline:
        new = [r for r in api.runs(dag_id) if r["dag_run_id"] not in before]
        time.sleep(1)
    assert new, f"the trigger form of {dag_id} created no run"
    run = api.wait_run(dag_id, new[0]["dag_run_id"], timeout=timeout)
    page.goto(f"{page.url.split('/dags/')[0]}/dags/{dag_id}/runs/{run['dag_run_id']}", wait_until="load")
    page.get_by_text("success").first.wait_for()
    page.screenshot(path=_shots() / f"{shot}-run.png")
    return dict(run)


def test_dag_list_shows_every_dag_and_no_import_errors(page: Any, stack: Any, demo_result: Any) -> None:
    page.goto(f"{stack.airflow_url}/dags", wait_until="load")
    for dag_id in _dag_ids():
        page.get_by_role("link", name=dag_id, exact=True).first.wait_for()
    page.screenshot(path=_shots() / "02-dag-list.png", full_page=True)
    page.goto(stack.airflow_url, wait_until="load")
    page.get_by_text("Dags").first.wait_for()
    assert page.get_by_text("Dag Import Errors").count() == 0
    assert demo_result["api"].import_errors() == []


def test_training_triggered_through_its_form_with_a_changed_window(page: Any, stack: Any, demo_result: Any) -> None:
    api = demo_result["api"]
    dialog = _trigger_form(page, stack, "flightdeck_train")
    assert dialog.get_by_text("Training window start").count() == 1  # titled Params explain the form
    dialog.locator("#element_train_start").fill("2013-06-17")
    dialog.locator("#element_train_end").fill("2013-06-30")
    dialog.locator("#element_reason").fill("browser test: the second half of June")
    run = _submit_and_wait(page, dialog, api, "flightdeck_train", "03-train", timeout=1200)
    assert run["state"] == "success", run
    assert run["conf"]["train_start"] == "2013-06-17" and run["conf"]["train_end"] == "2013-06-30"


def test_rollback_through_its_form_changes_the_champion(page: Any, stack: Any, demo_result: Any) -> None:
    from mlflow import MlflowClient

    from flightdeck.core.config import load_config
    from flightdeck.model import registry

    name = load_config().model.name
    before = registry.champion_version(name)
    versions = sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name='{name}'"))
    target = next(str(v) for v in reversed(versions) if str(v) != str(before))
    dialog = _trigger_form(page, stack, "flightdeck_rollback")
    dialog.locator("label[id='switch:element_confirm']").click()
    assert dialog.locator("input[name='element_confirm']").is_checked()
    dialog.locator("#element_version").fill(target)
    dialog.locator("#element_reason").fill("browser test rollback")
    run = _submit_and_wait(page, dialog, api := demo_result["api"], "flightdeck_rollback", "04-rollback", timeout=300)
    assert run["state"] == "success", (run, api.task_instances("flightdeck_rollback", run["dag_run_id"]))
    assert str(registry.champion_version(name)) == target != str(before)


def test_mlflow_ui_shows_the_champion_alias(page: Any, stack: Any, demo_result: Any) -> None:
    from flightdeck.core.config import load_config
    from flightdeck.model import registry

    name = load_config().model.name
    page.goto(f"{stack.mlflow_url}/#/models/{name}", wait_until="load")
    page.get_by_text("champion").first.wait_for()
    page.screenshot(path=_shots() / "05-mlflow-model.png", full_page=True)
    assert page.get_by_text(f"Version {registry.champion_version(name)}").count() >= 1


def test_flightdeck_page_shows_champion_history_and_drift_chart(page: Any, stack: Any, demo_result: Any) -> None:
    from flightdeck.core.config import load_config
    from flightdeck.model import registry

    champion = registry.champion_version(load_config().model.name)
    page.goto(f"{stack.airflow_url}/dags", wait_until="load")
    page.get_by_text("flightdeck", exact=True).first.wait_for()  # the plugin's entry in the navigation
    page.goto(f"{stack.airflow_url}/flightdeck/", wait_until="load")
    page.get_by_text("champion").first.wait_for()
    page.screenshot(path=_shots() / "06-flightdeck-page.png", full_page=True)
    body = page.content()
    assert f"champion <b>v{champion}</b>" in body
    assert page.locator("svg").count() >= 1  # drift over time, with its thresholds
    assert "2013-07-01" in body  # the drifted day and its retrain request
