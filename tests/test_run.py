"""Running it: `make run` (runtime dependencies only, PORT), `run --port`, the README's production block."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from preference_center import cli

from .smoke.production import SERVICES, readme_commands

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def started(monkeypatch):
    """`run` with the server and the worker replaced by recorders."""
    seen = {}

    def serve(host, port, app, **options):
        seen.update(host=host, port=port, base_url=app.config["PC_BASE_URL"])

    class Child:
        def __init__(self, args, env=None):
            seen.update(worker_args=args, worker_env=env or {})

        def poll(self):
            return 0

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(cli, "run_simple", serve)
    monkeypatch.setattr(cli.subprocess, "Popen", Child)
    monkeypatch.setattr(cli.logs, "configure", lambda config: None)
    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)
    return seen


def test_run_on_another_port_makes_links_use_that_port(runner, app, started, monkeypatch):
    monkeypatch.delenv("PC_BASE_URL", raising=False)
    result = runner.invoke(args=["run", "--port", "5050"])
    assert result.exit_code == 0, result.output
    assert started["port"] == 5050 and started["base_url"] == "http://127.0.0.1:5050"
    assert started["worker_env"]["PC_BASE_URL"] == "http://127.0.0.1:5050"  # the worker builds links too
    assert "links use http://127.0.0.1:5050" in result.output


def test_a_set_base_url_wins_over_the_port(runner, app, started, monkeypatch):
    monkeypatch.setenv("PC_BASE_URL", "https://prefs.example.test")
    result = runner.invoke(args=["run", "--port", "5050"])
    assert result.exit_code == 0, result.output
    assert started["base_url"] == "https://prefs.example.test"
    assert started["worker_env"]["PC_BASE_URL"] == "https://prefs.example.test"  # inherited, not replaced


@pytest.mark.parametrize("host, expected", [("0.0.0.0", "http://127.0.0.1:8080"), ("192.0.2.5", "http://192.0.2.5:8080"),
                                            ("::1", "http://[::1]:8080")])
def test_the_derived_base_url_is_an_address_a_browser_can_open(host, expected):
    assert cli.base_url_for(host, 8080) == expected


def test_the_worker_started_by_run_logs_at_the_configured_level(runner, app, started, monkeypatch):
    app.config["PC_LOG_LEVEL"] = "WARNING"
    assert runner.invoke(args=["run"]).exit_code == 0
    args = started["worker_args"]
    assert args[args.index("--loglevel") + 1] == "WARNING"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_installs_only_runtime_dependencies_and_passes_the_port():
    dry = subprocess.run(["make", "-n", "-B", "run", "PORT=5050"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    assert dry.returncode == 0, dry.stderr
    assert "pip install -q -e ." in dry.stdout and "[test]" not in dry.stdout
    assert "preference-center run --port 5050" in dry.stdout
    tests = subprocess.run(["make", "-n", "-B", "test"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert '-e ".[test]"' in tests.stdout


def test_create_user_prints_a_generated_password_once_and_the_readme_says_so(runner, app):
    result = runner.invoke(args=["create-user", "ops@example.com", "--role", "viewer"], input="")
    assert result.exit_code == 0, result.output
    assert result.output.count("password (shown once): ") == 1
    assert "password (shown once)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_production_block_is_what_the_smoke_test_runs():
    names, commands = readme_commands()
    assert {"PC_ENV", "PC_SECRET_KEYS", "PC_SUPPRESSION_KEY", "PC_DATABASE_URL", "PC_BROKER_URL",
            "PC_BASE_URL"} <= set(names)
    assert "preference-center db upgrade" in commands
    services = [c for c in commands if c.startswith(SERVICES)]
    assert [s.split()[0:2] for s in services] == [["gunicorn", "-w"], ["preference-center", "worker"],
                                                   ["preference-center", "beat"]]
    assert commands.index("preference-center db upgrade") < commands.index(services[0])


def test_the_operations_guide_shows_the_same_production_commands_as_the_readme():
    def block(path: Path) -> str:
        text = path.read_text(encoding="utf-8")
        start = text.index("export PC_ENV=production")
        return text[start:text.index("```", start)]

    assert block(ROOT / "docs" / "operations.md") == block(ROOT / "README.md")
