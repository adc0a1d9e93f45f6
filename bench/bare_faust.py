"""The Faust ceiling: a bare faust-streaming agent that only iterates the events topic and acks.

`python -m bench.bare_faust SPEC.json OUT.json` starts a Faust app with a fresh
group and the Faust engine's own settings (raw keys and values, in-memory store,
at-least-once, auto offset reset earliest), and one agent whose loop body only
counts: Faust fetches, builds its events, acks and commits. The rate from the
first record to the last pre-filled one is what no Faust worker can beat on
this machine, so the Faust engine is measured against it (issue 14: at least
0.6 of it).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any


def run(spec: dict[str, Any], out_path: Path) -> None:
    import faust

    target: int = spec["records"]
    app = faust.App(
        f"bench-bare-faust-{uuid.uuid4().hex[:8]}",
        env={},
        broker=[f"kafka://{host}" for host in spec["bootstrap"].split(",")],
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="bare-faust-"),
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
    )
    topic = app.topic(spec["topic"], key_serializer="raw", value_serializer="raw")

    async def bare(stream: Any) -> None:
        count = 0
        began = 0.0
        cpu_before = os.times()
        async for _value in stream:  # acked when the next one is taken
            count += 1
            if count == 1:
                began, cpu_before = time.monotonic(), os.times()
            if count >= target:
                seconds = time.monotonic() - began
                cpu_after = os.times()
                cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
                out_path.write_text(
                    json.dumps(
                        {
                            "records": count,
                            "seconds": round(seconds, 3),
                            "records_per_s": round(count / seconds, 1) if seconds > 0 else 0.0,
                            "cpu_share_of_one_core": round(cpu / seconds, 3) if seconds else 0.0,
                        },
                        indent=2,
                    )
                )
                os._exit(0)  # measured; Faust's orderly stop takes seconds and adds nothing

    app.agent(topic, name="bare")(bare)
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    run(spec, Path(argv[1]))
    return 1  # only reached if the agent never saw the last record


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
