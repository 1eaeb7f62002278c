"""``greenlm tasks`` through the real CLI app (or a bare app when main.py cannot be imported yet)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from greenlm.cli.tasks_cmd import register


def make_app() -> typer.Typer:
    try:
        from greenlm.cli.main import app
    except ImportError:  # another sub-command module missing: test register() on its own
        app = typer.Typer()
        register(app)

        @app.command("noop")
        def noop() -> None:  # a second command keeps `tasks` a sub-command
            pass

    return app


@pytest.fixture(scope="module")
def app():
    return make_app()


def test_tasks_table(app):
    result = CliRunner().invoke(app, ["tasks"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("sst2", "rt_polarity", "rte", "67,349", "872", "8,530", "2,490", "not_entailment", "text_a", "text_b",
                 "Socher", "Pang", "(default)", "0 = negative"):
        assert text in out, text


def test_tasks_json(app):
    result = CliRunner().invoke(app, ["tasks", "--json"])
    assert result.exit_code == 0, result.output
    infos = {item["name"]: item for item in json.loads(result.output)}
    assert sorted(infos) == ["rt_polarity", "rte", "sst2"]
    assert infos["sst2"]["rows"] == {"train": 67_349, "dev": 872}
    assert infos["rt_polarity"]["rows"] == {"train": 8_530, "dev": 1_066, "test": 1_066}
    assert infos["rte"]["labels"] == ["entailment", "not_entailment"]
    assert infos["rte"]["text_fields"] == ["text_a", "text_b"]
    assert infos["sst2"]["default"] is True
    assert all(item["credit"] for item in infos.values())


def test_tasks_help(app):
    result = CliRunner().invoke(app, ["tasks", "--help"])
    assert result.exit_code == 0
    assert "bundled tasks" in result.output and "--json" in result.output
