"""`python -m bench [--quick] [NAME ...]`: run benchmarks, write results and BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import Context, Result, machine, now_iso, say

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
REPORT = ROOT / "BENCHMARKS.md"
# In the order they run. replay and processor share one pre-filled topic; replay
# goes first because the worker appends its own (wall-clock) ticks to it.
BENCHMARKS = {
    "producer": "bench.producer_bench",
    "replay": "bench.replay_bench",
    "processor": "bench.processor_bench",
    "e2e": "bench.e2e_bench",
    "state": "bench.state_bench",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks against a real local Kafka started (and stopped) by the run. "
        "Writes bench/results/<name>.json, a chart and BENCHMARKS.md.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of "
        f"{', '.join(BENCHMARKS)})",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true",
        help="small sizes, a smoke test (results go to .data/bench-quick unless --out)",
    )  # fmt: skip
    parser.add_argument("--out", metavar="DIR", help="results directory (default bench/results)")
    parser.add_argument(
        "--bootstrap", metavar="HOST:PORT",
        help="use this Kafka instead of starting one (sizes on disk are then not reported)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true",
        help="sample the measured processes with py-spy and add their hottest frames",
    )  # fmt: skip
    parser.add_argument(
        "--no-report", action="store_true", help="write the JSON results only (no markdown, chart)"
    )
    parser.add_argument(
        "--report-only", action="store_true",
        help="run nothing: rewrite BENCHMARKS.md and the chart from the results directory",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    names = args.names or list(BENCHMARKS)
    if args.out:
        results_dir = Path(args.out).resolve()
    elif args.quick:
        results_dir = ROOT / ".data" / "bench-quick"
    else:
        results_dir = RESULTS_DIR
    results_dir.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        _report(results_dir)
        return 0
    failed: list[str] = []
    started = time.monotonic()
    with _work_dir() as work_dir, _kafka(args.bootstrap, work_dir) as (bootstrap, log_dirs):
        ctx = Context(bootstrap, args.quick, work_dir, results_dir, log_dirs, args.profile)
        about = machine()
        for name in names:
            say(f"--- {name}{' (quick)' if args.quick else ''}")
            began, at = time.monotonic(), now_iso()
            try:
                result = _runner(name)(ctx)
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
            seconds = time.monotonic() - began
            document = result.to_dict(quick=args.quick, started_at=at, seconds=seconds,
                                      machine=about)  # fmt: skip
            path = results_dir / f"{name}.json"
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(document, indent=2, allow_nan=False, default=str) + "\n")
            tmp.replace(path)
            say(f"{name}: done in {seconds:.0f} s -> {path}")
    if not args.no_report:
        _report(results_dir)
    outcome = f"; FAILED: {failed}" if failed else ""
    say(f"all done in {time.monotonic() - started:.0f} s{outcome}")
    return 1 if failed else 0


def _report(results_dir: Path) -> None:
    from bench.report import write_report

    report = REPORT if results_dir == RESULTS_DIR else results_dir / "BENCHMARKS.md"
    write_report(results_dir, report)
    say(f"report: {report}")


def _runner(name: str) -> Callable[[Context], Result]:
    module = importlib.import_module(BENCHMARKS[name])
    run: Callable[[Context], Result] = module.run
    return run


@contextmanager
def _work_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="livewindows-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _kafka(bootstrap: str | None, work_dir: Path) -> Iterator[tuple[str, list[Path]]]:
    if bootstrap:
        yield bootstrap, []
        return
    from livewindows.kafka.launcher import KafkaCluster, LauncherError, free_ports

    error: Exception | None = None
    for _ in range(3):  # a free port can be taken between choosing and binding it
        port, controller_port = free_ports(2)
        cluster = KafkaCluster(
            [port], controller_ports=[controller_port], data_dir=work_dir / "kafka", heap_mb=1024
        )
        try:
            began = time.monotonic()
            cluster.start()
        except LauncherError as exc:
            error = exc
            cluster.stop()
            shutil.rmtree(work_dir / "kafka", ignore_errors=True)
            continue
        say(f"Kafka up on {cluster.bootstrap} in {time.monotonic() - began:.1f} s")
        try:
            yield cluster.bootstrap, [cluster.node_dir(0) / "data"]
        finally:
            cluster.stop()
        return
    raise SystemExit(f"bench: no Kafka: {error}")
