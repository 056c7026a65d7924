"""Onboarding: ``flightdeck init`` drafts a config from a sample it has never seen, ``flightdeck check`` tests it.

The samples are shaped unlike flights: a semicolon-separated gzipped CSV of events whose
timestamp column is called ``date`` (a platform column), and a JSON lines file of store
visits with a date column.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flightdeck.core.config import ConfigError, load_config
from flightdeck.ops.cli import main
from flightdeck.ops.onboarding import infer_type, read_sample, sniff_dialect

EVENT_TODOS = {
    "dataset.entity.partition_date.timezone",
    "features.numeric[0]",
    "features.categorical[0]",
    "label.expression",
}
CATEGORIES = [f"campaign_{i:02d}" for i in range(60)]


def _events_lines(rows: int = 240) -> list[str]:
    """Events over three days: timestamp `date`, unique `event_id`, 60 categories, an amount, an outcome."""
    lines = ["date;event_id;category;amount;converted;comment"]
    start = dt.datetime(2024, 3, 1, 0, 5)
    for i in range(rows):
        stamp = start + dt.timedelta(minutes=18 * i)  # 240 rows x 18 min = 3 days
        amount = "N/A" if i % 17 == 0 else f"{(i * 7.31) % 250:.2f}"
        comment = '"paid; twice"' if i % 50 == 0 else ""
        converted = "true" if i % 3 == 0 else "false"
        lines.append(f"{stamp:%Y-%m-%d %H:%M:%S};{5000 + i};{CATEGORIES[i % 60]};{amount};{converted};{comment}")
    return lines


def _write_gz(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8")))
    return path


@pytest.fixture
def events(tmp_path: Path) -> Path:
    return _write_gz(tmp_path / "events.csv.gz", _events_lines())


@pytest.fixture
def visits(tmp_path: Path) -> Path:
    path = tmp_path / "visits.jsonl"
    with path.open("w") as out:
        for i in range(60):
            day = dt.date(2024, 5, 1) + dt.timedelta(days=i // 12)
            record = {
                "visit_date": day.isoformat(),
                "store": f"store_{i % 12}",
                "visitors": None if i % 9 == 0 else 10 + i,
                "revenue": round(i * 12.5, 2),
                "promo": i % 2 == 0,
            }
            out.write(json.dumps(record) + "\n")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _save(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _column(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in raw["dataset"]["entity"]["columns"] if c["name"] == name)


def _fill_events(raw: dict[str, Any]) -> dict[str, Any]:
    """What a user writes in place of the TODOs of the events draft."""
    raw["dataset"]["entity"]["partition_date"]["timezone"] = "Europe/Paris"
    raw["features"]["numeric"] = ["amount"]
    raw["features"]["categorical"] = ["category"]
    raw["label"]["expression"] = "CASE WHEN converted THEN 1 ELSE 0 END"
    return raw


def _problem_keys(out: str) -> set[str]:
    return {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("  problem ")}


def test_init_drafts_the_events_config_check_refuses_its_todos_and_accepts_them_filled(
    tmp_path: Path, events: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = tmp_path / "events.yaml"
    code, out, _ = _run(capsys, "init", "--sample", str(events), "--out", str(draft))
    assert code == 0, out
    for key in EVENT_TODOS:  # the summary lists every open choice by key
        assert f"  {key}: " in out, out

    text = draft.read_text()
    assert text.count("# TODO(flightdeck init): ") == len(EVENT_TODOS)
    raw = _load(draft)
    entity = raw["dataset"]["entity"]
    assert entity["format"] == {
        "kind": "csv",
        "delimiter": ";",
        "quote": '"',
        "encoding": "utf-8",
        "compression": "gzip",
    }
    # `date` is the platform's partition column: renamed in the lake, the file's header kept.
    assert _column(raw, "events_date") == {
        "name": "events_date",
        "source": "date",
        "type": "timestamp",
        "required": True,
    }
    assert _column(raw, "event_id") == {"name": "event_id", "type": "int", "required": True}
    assert _column(raw, "category") == {"name": "category", "type": "string", "required": True}
    assert _column(raw, "amount") == {"name": "amount", "type": "double"}  # N/A in the sample: not required
    assert _column(raw, "converted") == {"name": "converted", "type": "boolean", "required": True}
    assert entity["keys"] == ["event_id"]
    assert entity["partition_date"]["timestamp"] == "events_date"
    assert entity["partition_date"]["timezone"].startswith("TODO")
    assert set(entity["null_values"]) == {"", "N/A"}
    assert raw["calendar"]["start"] == "2024-03-01"
    assert raw["lake"]["root"] == ".flightdeck/lake-events"
    assert "amount" in raw["features"]["numeric"] and "category" in raw["features"]["categorical"]
    assert raw["features"]["numeric"][0].startswith("TODO")
    assert raw["label"]["name"] == "events_label" and raw["validation"]["not_null"] == ["events_label"]
    assert raw["gate"]["min_auc"] == 0.62 and raw["drift"]["psi_threshold"] == 0.2  # the flights defaults

    # A half-filled draft cannot run: loading refuses it, naming the TODO's key.
    with pytest.raises(ConfigError, match=r"dataset\.entity\.partition_date"):
        load_config(draft, environ={})

    code, out, _ = _run(capsys, "check", "--config", str(draft), "--sample", str(events))
    assert code == 2
    assert _problem_keys(out) == EVENT_TODOS, out

    filled = _save(tmp_path / "filled.yaml", _fill_events(raw))
    code, out, _ = _run(capsys, "check", "--config", str(filled), "--sample", str(events))
    assert code == 0, out
    assert "OK: no problems" in out
    cfg = load_config(filled, environ={})
    assert cfg.dataset.entity.headers["events_date"] == "date"
    assert cfg.dataset.entity.partition_date.timezone == "Europe/Paris"


def test_check_names_the_key_of_a_wrong_type_and_of_a_missing_column(
    tmp_path: Path, events: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = tmp_path / "events.yaml"
    assert main(["init", "--sample", str(events), "--out", str(draft)]) == 0
    raw = _fill_events(_load(draft))
    _column(raw, "amount")["type"] = "int"  # amounts hold decimals
    _column(raw, "category")["source"] = "campaign"  # the file's header is `category`
    broken = _save(tmp_path / "broken.yaml", raw)
    capsys.readouterr()

    code, out, _ = _run(capsys, "check", "--config", str(broken), "--sample", str(events))
    assert code == 2
    names = [c["name"] for c in raw["dataset"]["entity"]["columns"]]
    amount, category = names.index("amount"), names.index("category")
    assert _problem_keys(out) == {f"dataset.entity.columns[{amount}].type", f"dataset.entity.columns[{category}]"}
    assert "do not parse as int (first: '0.00' at line 2)" not in out  # line 2 holds N/A, a declared null
    assert "do not parse as int (first: '7.31' at line 3)" in out
    assert "write type: double" in out
    assert "write source: category" in out

    # A type the schema does not know: the load error, by key (the sample is not read then).
    _column(raw, "amount")["type"] = "decimal"
    _column(raw, "category").pop("source")
    unknown = _save(tmp_path / "unknown.yaml", raw)
    code, out, _ = _run(capsys, "check", "--config", str(unknown), "--sample", str(events))
    assert code == 2
    assert _problem_keys(out) == {f"dataset.entity.columns[{amount}].type"}, out
    assert "'int', 'long', 'double', 'string', 'timestamp', 'date' or 'boolean'" in out


def test_check_reports_each_sample_problem_with_its_key_and_fix(
    tmp_path: Path, events: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = tmp_path / "events.yaml"
    assert main(["init", "--sample", str(events), "--out", str(draft)]) == 0
    filled = _save(tmp_path / "filled.yaml", _fill_events(_load(draft)))
    lines = _events_lines(30)
    lines[4] = lines[4].replace(";5003;", ";5002;")  # a repeated key
    lines[6] = lines[6].replace(";campaign_05;", ";;")  # a required column left empty
    lines[8] = lines[8].replace(";false;", ";NULL;").replace(";true;", ";NULL;")  # an undeclared null token
    lines[10] = "yesterday" + lines[10][19:]  # no partition date
    bad = _write_gz(tmp_path / "events_bad.csv.gz", lines)
    capsys.readouterr()

    code, out, _ = _run(capsys, "check", "--config", str(filled), "--sample", str(bad))
    assert code == 2
    assert _problem_keys(out) == {
        "dataset.entity.keys",
        "dataset.entity.columns[2].required",
        "dataset.entity.null_values",
        "dataset.entity.partition_date",
        "dataset.entity.columns[0].type",
        # NULL is not declared: ingest finds the outcome unparseable; once declared, missing.
        "dataset.entity.columns[4].required",
    }, out
    assert "line 5 repeats line 4" in out
    assert 'write null_values: ["", N/A, "NULL"]' in out
    assert "do not parse as timestamp (first: 'yesterday' at line 11)" in out
    assert "fix those values upstream" in out  # one bad value does not make the column a string

    # The same file with a comma declared as its delimiter: the format key, and what to write.
    raw = _load(filled)
    raw["dataset"]["entity"]["format"]["delimiter"] = ","
    comma = _save(tmp_path / "comma.yaml", raw)
    code, out, _ = _run(capsys, "check", "--config", str(comma), "--sample", str(events))
    assert code == 2
    assert _problem_keys(out) == {"dataset.entity.format.delimiter"}, out
    assert 'write delimiter: ";"' in out


def test_init_and_check_a_json_lines_sample(tmp_path: Path, visits: Path, capsys: pytest.CaptureFixture[str]) -> None:
    draft = tmp_path / "visits.yaml"
    code, out, _ = _run(capsys, "init", "--sample", str(visits), "--out", str(draft))
    assert code == 0, out
    raw = _load(draft)
    entity = raw["dataset"]["entity"]
    assert entity["format"] == {"kind": "jsonl"}
    assert entity["partition_date"] == {"column": "visit_date"}
    assert _column(raw, "visit_date")["type"] == "date"
    assert _column(raw, "visitors") == {"name": "visitors", "type": "int"}  # JSON nulls: not required
    assert _column(raw, "promo")["type"] == "boolean"
    assert sorted(entity["keys"]) == ["store", "visit_date"]  # no single column is unique
    assert raw["calendar"]["start"] == "2024-05-01"
    assert raw["model"]["train_start"] == "2024-05-01" and raw["model"]["train_end"] == "2024-05-05"

    code, out, _ = _run(capsys, "check", "--config", str(draft), "--sample", str(visits))
    assert code == 2
    assert _problem_keys(out) == {"features.numeric[0]", "features.categorical[0]", "label.expression"}, out

    raw["features"]["numeric"] = ["visitors"]
    raw["features"]["categorical"] = ["store"]
    raw["label"]["expression"] = "CASE WHEN promo THEN 1 ELSE 0 END"
    filled = _save(tmp_path / "filled.yaml", raw)
    code, out, _ = _run(capsys, "check", "--config", str(filled), "--sample", str(visits))
    assert code == 0, out


def test_init_never_overwrites_without_force(tmp_path: Path, events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "events.yaml"
    out_file.write_text("mine: true\n")
    code, _, err = _run(capsys, "init", "--sample", str(events), "--out", str(out_file))
    assert code == 2
    assert err.startswith("flightdeck: error: ") and "--force" in err and len(err.strip().splitlines()) == 1
    assert out_file.read_text() == "mine: true\n"
    assert main(["init", "--sample", str(events), "--out", str(out_file), "--force"]) == 0
    assert "dataset" in _load(out_file)


def test_init_defaults_to_name_yaml_in_the_working_folder(
    tmp_path: Path, events: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["init", "--sample", str(events), "--name", "clicks"]) == 0
    raw = _load(work / "clicks.yaml")
    assert raw["dataset"]["name"] == "clicks" and raw["lake"]["root"] == ".flightdeck/lake-clicks"
    assert _column(raw, "clicks_date")["source"] == "date"


def test_a_sample_that_is_not_utf8_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = tmp_path / "latin.csv"
    sample.write_bytes("id,city\n1,K\xf6ln\n".encode("latin-1"))
    code, _, err = _run(capsys, "init", "--sample", str(sample))
    assert code == 2
    assert "not utf-8 text" in err and "offset 11" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "-2", " 3"], "int"),
        (["3000000000", "1"], "long"),
        (["1.5", "2", "1e3"], "double"),
        (["007", "12"], "string"),  # a leading zero is part of the value
        (["true", "False"], "boolean"),
        (["2024-02-29", "2024-03-01"], "date"),
        (["2024-02-30"], "string"),  # not a calendar day
        (["2024-03-01 10:00:00", "2024-03-01T11:30:00+01:00"], "timestamp"),
        (["2024-03-01", "2024-03-01 10:00"], "timestamp"),
        (["abc", "1"], "string"),
        ([], "string"),
    ],
)
def test_infer_type(values: list[str], expected: str) -> None:
    assert infer_type(values) == expected


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_sniff_dialect(delimiter: str) -> None:
    rows = [["id", "name", "amount"], ["1", "a b", "2.5"], ["2", "c", "3.5"], ["3", "d", "4"]]
    text = "\n".join(delimiter.join(r) for r in rows) + "\n"
    assert sniff_dialect(text)[0] == delimiter


def test_read_sample_keeps_quoted_delimiters_and_finds_gzip(events: Path) -> None:
    sample = read_sample(events)
    assert sample.format.compression == "gzip" and sample.format.delimiter == ";"
    assert sample.header == ["date", "event_id", "category", "amount", "converted", "comment"]
    assert sample.rows[0][5] == "paid; twice" and len(sample.rows) == 240 and not sample.overlong


WEATHER_HEADER = (
    "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour"
)


def test_check_a_time_series_sample_against_the_flights_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flights = Path(__file__).resolve().parents[2] / "include" / "config" / "flights.yaml"
    weather = tmp_path / "weather_2013-07-01.csv"
    rows = [
        "EWR,2013,7,1,0,75.2,66.0,73.1,200,10.4,NA,0,1012.1,10,2013-07-01 04:00:00",
        "JFK,2013,7,1,0,74.1,65.2,74.0,210,9.2,,0,1012.5,10,2013-07-01 04:00:00",
    ]
    weather.write_text("\n".join([WEATHER_HEADER, *rows]) + "\n")
    code, out, _ = _run(capsys, "check", "--config", str(flights), "--sample", str(weather), "--source", "weather")
    assert code == 0, out
    assert "(source 'weather', 2 rows read)" in out

    weather.write_text("\n".join([WEATHER_HEADER, rows[0], rows[0]]) + "\n")
    code, out, _ = _run(capsys, "check", "--config", str(flights), "--sample", str(weather), "--source", "weather")
    assert code == 2 and _problem_keys(out) == {"dataset.timeseries[0].keys"}, out

    code, _, err = _run(capsys, "check", "--config", str(flights), "--sample", str(weather), "--source", "rain")
    assert code == 2 and "--source 'rain' is not a source of the config" in err


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "flightdeck"
    return [str(script)] if script.exists() else [sys.executable, "-m", "flightdeck.ops.cli"]


def test_exit_codes_through_the_installed_command(tmp_path: Path, events: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AIRFLOW", "FLIGHTDECK"))}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_cli(), *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
        )

    done = run("init", "--sample", str(events))
    assert done.returncode == 0, done.stderr
    draft = tmp_path / "events.yaml"
    assert draft.is_file()
    done = run("check", "--config", str(draft), "--sample", str(events))
    assert done.returncode == 2 and "label.expression" in done.stdout
    filled = _save(tmp_path / "filled.yaml", _fill_events(_load(draft)))
    done = run("check", "--config", str(filled), "--sample", str(events))
    assert done.returncode == 0, done.stdout + done.stderr
    done = run("check", "--config", str(filled), "--sample", str(tmp_path / "missing.csv"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("flightdeck: error: sample file") and "not found" in done.stderr
