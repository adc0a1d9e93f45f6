"""The README keeps its promises: quick start, every setting, the billing statements."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from livewindows.billing.store import open_store
from livewindows.cli import main
from plumbing.settings import Settings
from schemas.timestamps import parse_ms
from tests.billing.windowkit import closed, opened

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", README, re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_quick_start_is_make_run_and_make_test() -> None:
    block = re.search(r"```\n(.*?)```", _section("Quick start"), re.DOTALL)
    assert block and block.group(1).split("\n")[:-1] == ["make run", "make test"]


def test_configuration_table_names_every_setting() -> None:
    table = _section("Configuration")
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in table, f"{name.upper()} is not documented"


def test_billing_periods_shows_what_the_report_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The section's records, stored as the consumer stores them, print the section's output."""
    minute = 60_000
    at = parse_ms
    records = [
        closed("cf-1", 40 * minute, "studio-1", at("2026-10-31T22:40:00.000Z")),
        opened("cf-1", "studio-1", at("2026-10-31T22:40:00.000Z")),
        *[opened("cf-2", "studio-1", at("2026-11-12T09:15:02.250Z"))] * 2,
        *[closed("cf-2", 8_500, "studio-1", at("2026-11-12T09:15:02.250Z"))] * 2,
        opened("cf-3", "studio-1", at("2026-11-30T22:50:00.000Z"), open_reason="errored"),
        closed("cf-3", 20 * minute, "studio-1", at("2026-11-30T22:50:00.000Z"),
               open_reason="errored", close_reason="ended"),
        opened("fp-1", "ls-7f3a", at("2026-11-05T14:00:00.000Z"), "fastpix"),
        closed("fp-1", minute, "ls-7f3a", at("2026-11-05T14:00:00.000Z"), "fastpix",
               close_reason="timed_out"),
        opened("fp-2", "ls-7f3a", at("2026-11-28T18:30:00.000Z"), "fastpix"),
        opened("gj-1", "vod-204", at("2026-10-24T21:30:00.000Z"), "gjirafa"),
        closed("gj-1", 26 * 60 * minute, "vod-204", at("2026-10-24T21:30:00.000Z"), "gjirafa"),
    ]  # fmt: skip
    assert len(records) == 13
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BILLING_TIMEZONE", "Europe/Berlin")
    store = open_store("sqlite:///billing.db", "Europe/Berlin")
    for record in records:
        store.apply([record], 0)
    store.close()
    section = _section("Billing periods")
    block = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert block
    for command in block.group(1).split("$ livewindows ")[1:]:
        argv, _, shown = command.partition("\n")
        assert main(shlex.split(argv)) == 0
        assert capsys.readouterr().out.strip() == shown.strip(), argv
