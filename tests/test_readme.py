"""The README keeps its promises: the two quick-start commands and every setting."""

from __future__ import annotations

import re
from pathlib import Path

from plumbing.settings import Settings

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
