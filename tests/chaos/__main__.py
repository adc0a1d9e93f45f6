"""`python -m tests.chaos [--short] [--engines faust,kafka]`: run the rounds, print the summary.

Exit 0 when every round's checks hold, 1 otherwise. The cluster's data and every
process's log stay in the work dir printed at the start (removed on success
unless --keep).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.processes import LauncherCluster
from tests.chaos.rounds import FULL, SHORT, RoundResult, run_rounds, summary


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} chaos: {line}", flush=True)


def run(engines: list[str], short: bool, work_dir: Path) -> tuple[list[RoundResult], str]:
    """Every engine's round on one fresh cluster; the results and their summary."""
    cluster = LauncherCluster(work_dir / "kafka", work_dir / "kafka.log")
    say(f"starting a 3-node cluster ({cluster.bootstrap}); work dir {work_dir}")
    cluster.start()
    try:
        results = run_rounds(cluster, engines, SHORT if short else FULL, work_dir, say)
    finally:
        cluster.stop()
    return results, summary(results, cluster)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="one fault of each kind, 30 s of load")
    parser.add_argument("--engines", default="faust,kafka", help="rounds, in turn")
    parser.add_argument("--keep", action="store_true", help="keep the work dir on success")
    args = parser.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="livewindows-chaos-"))
    results, text = run(args.engines.split(","), args.short, work_dir)
    print(text, flush=True)
    failed = any(r.problems for r in results)
    if failed or args.keep:
        say(f"logs kept in {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
