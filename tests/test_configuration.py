"""Configuration has one home: every PC_* setting declared once, the docs' tables generated from it, typos reported."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from preference_center import config, create_app

ROOT = Path(__file__).resolve().parent.parent
CODE = [*ROOT.glob("preference_center/**/*.py"), *ROOT.glob("worker/*.py"), ROOT / "wsgi.py"]


def _code(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("document", config.DOCUMENTS)
def test_the_documented_configuration_table_is_the_registry(document):
    text = (ROOT / document).read_text(encoding="utf-8")
    assert config.with_table(text) == text, f"run `preference-center settings --write`: {document} differs"
    for setting in config.SETTINGS:
        assert f"| `{setting.name}` |" in text


def test_every_setting_the_code_reads_is_declared():
    read = set()
    for path in CODE:
        read |= set(re.findall(r"config\[[\"'](PC_[A-Z0-9_]+)[\"']\]", _code(path)))
    assert read, "the scan found no reads at all"
    assert read - set(config.BY_NAME) == set()


def test_no_call_site_restates_a_default():
    offenders = []
    for path in CODE:
        if path.name == "config.py":
            continue
        for line_no, line in enumerate(_code(path).splitlines(), 1):
            if re.search(r"\.get\([\"']PC_[A-Z0-9_]+[\"']\s*,", line) or "os.environ" in line or "getenv" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{line_no}: {line.strip()}")
    assert offenders == []


def test_each_setting_is_declared_once_with_a_meaning():
    names = [s.name for s in config.SETTINGS]
    assert len(names) == len(set(names))
    for setting in config.SETTINGS:
        assert setting.name.startswith("PC_") and setting.meaning
        assert setting.kind in ("str", "int", "float", "bool", "list", "cidrs")


def test_defaults_come_from_the_registry(monkeypatch, tmp_path):
    for setting in config.SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    values = config.load(tmp_path)
    assert values["PC_BATCH_SIZE"] == 5000 and values["PC_SEND_RATE"] == 0.0
    assert values["PC_RATELIMITS_ENABLED"] is True and values["PC_SENDGRID_WEBHOOK_ALLOW_UNSIGNED"] is False
    assert values["PC_LOCALES"] == ["en", "es"]
    assert values["PC_METRICS_ALLOW"] == ["127.0.0.0/8", "::1/128"]
    assert values["PC_LOG_FORMAT"] == "text"
    assert values["PERMANENT_SESSION_LIFETIME"].total_seconds() == 8 * 3600


def test_production_logs_json_unless_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.setenv("PC_ENV", "production")
    assert config.load(tmp_path)["PC_LOG_FORMAT"] == "json"
    monkeypatch.setenv("PC_LOG_FORMAT", "text")
    assert config.load(tmp_path)["PC_LOG_FORMAT"] == "text"
    monkeypatch.setenv("PC_LOG_FORMAT", "xml")
    with pytest.raises(config.ConfigError, match="PC_LOG_FORMAT"):
        config.load(tmp_path)


@pytest.mark.parametrize("name, value", [
    ("PC_RATELIMITS_ENABLED", "maybe"), ("PC_SEND_RATE", "fast"), ("PC_STAFF_SESSION_HOURS", "8h"),
    ("PC_METRICS_ALLOW", "10.0.0.0/33"), ("PC_ENV", "staging"), ("PC_LOG_LEVEL", "LOUD"),
])
def test_a_value_of_the_wrong_type_stops_the_start_naming_the_variable(monkeypatch, tmp_path, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=name):
        config.load(tmp_path)


def test_unknown_pc_variables_are_warned_about_once_with_a_suggestion(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("PC_BACTH_SIZE", "10")
    monkeypatch.setenv("PC_TEST_WHATEVER", "1")  # the test suite's own
    monkeypatch.setenv("PC_BENCH_STATS", "/tmp/x")  # the benchmarks' own
    monkeypatch.setattr(config, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="preference_center.config"):
        create_app({"PC_INSTANCE_PATH": str(tmp_path)})
        create_app({"PC_INSTANCE_PATH": str(tmp_path)})
    warnings = [r.getMessage() for r in caplog.records if r.name == "preference_center.config"]
    assert len(warnings) == 1
    assert "PC_BACTH_SIZE" in warnings[0] and "PC_BATCH_SIZE" in warnings[0]


def test_the_settings_command_prints_the_table(runner):
    result = runner.invoke(args=["settings"])
    assert result.exit_code == 0 and result.output == config.markdown_table()


def test_the_docs_refer_to_nothing_outside_the_repository():
    for path in [ROOT / "README.md", *ROOT.glob("docs/*.md")]:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and "/work/" not in text, path.name
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert (path.parent / target).exists(), f"{path.name} links {target}, which does not exist"
