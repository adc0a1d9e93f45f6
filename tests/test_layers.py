"""The layers of the code base (STYLE rule 11): plumbing below the services, the
command line above them, and the kafka engine free of Faust."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
# package -> the top-level packages it may import from this project
ALLOWED = {
    "plumbing": {"plumbing"},
    "schemas": {"schemas"},
    "producer": {"plumbing", "schemas", "producer"},
    "processor": {"plumbing", "schemas", "processor"},
}
OURS = {"plumbing", "schemas", "producer", "processor", "livewindows"}


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & OURS


def test_nothing_below_imports_from_above() -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {sorted(_imported(path) - allowed)}"
        for package, allowed in ALLOWED.items()
        for path in (ROOT / package).rglob("*.py")
        if _imported(path) - allowed
    }
    assert not wrong


def test_billing_imports_plumbing_not_the_services() -> None:
    for path in (ROOT / "livewindows" / "billing").rglob("*.py"):
        assert not _imported(path) & {"producer", "processor"}, path


def test_the_kafka_engine_does_not_import_faust() -> None:
    code = (
        "import sys, livewindows.cli, processor.worker, processor.kafka_worker, processor.replay\n"
        "sys.exit('faust' in sys.modules or 'aiokafka' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0
