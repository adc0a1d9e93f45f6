"""Saturation with Debian's `wrk` (closed loop, C): found on PATH, else `None`.

wrk cannot sign requests, so the signed webhooks are written to a file (raw
HTTP/1.1 requests separated by NUL bytes) that a Lua script cycles through;
the script also counts answers by status, since wrk itself only counts >= 400.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.loadgen import Request

_SCRIPT = r"""
local path = "%(requests)s"
local requests = {}
local file = assert(io.open(path, "rb"))
local data = file:read("*a")
file:close()
local at = 1
while at <= #data do
  local stop = string.find(data, "\0", at, true)
  if not stop then stop = #data + 1 end
  requests[#requests + 1] = string.sub(data, at, stop - 1)
  at = stop + 1
end
data = nil

local threads = {}
function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end

local n = 0
function init(args)
  n = offset or 0
  statuses = {}
end

function request()
  n = n + 1
  return requests[(n %% #requests) + 1]
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, count in pairs(counts) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    parts[#parts + 1] = string.format('"%%s": %%d', status, count)
  end
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "errors": {"connect": %%d, "read": %%d, ' ..
    '"write": %%d, "timeout": %%d, "status": %%d}, "statuses": {%%s}, ' ..
    '"latency_us": {"p50": %%d, "p90": %%d, "p99": %%d, "p999": %%d, "max": %%d, "mean": %%f}}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status,
    table.concat(parts, ", "),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""


def find_wrk() -> str | None:
    return shutil.which("wrk")


def version(wrk: str) -> str:
    shown = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    first = (shown.stdout + shown.stderr).strip().splitlines()
    return first[0] if first else "wrk"


def saturate(
    wrk: str,
    base_url: str,
    requests: list[Request],
    work_dir: Path,
    *,
    duration_s: float,
    connections: int,
    threads: int = 1,
) -> dict[str, Any]:
    """Run wrk against `base_url`; the result has the shape of `loadgen.summarize`."""
    host = base_url.split("//", 1)[1].rstrip("/")
    raw = bytearray()
    for request in requests:
        headers = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
        raw += (
            (
                f"POST {request.path} HTTP/1.1\r\nHost: {host}\r\n{headers}"
                f"Content-Length: {len(request.body)}\r\n\r\n"
            ).encode()
            + request.body
            + b"\0"
        )
    requests_path = work_dir / "wrk-requests.bin"
    requests_path.write_bytes(bytes(raw))
    script = work_dir / "wrk-webhooks.lua"
    script.write_text(_SCRIPT % {"requests": requests_path})
    seconds = max(1, round(duration_s))
    shown = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
         "-s", str(script), base_url],
        capture_output=True, text=True, check=False, timeout=seconds + 60,
    )  # fmt: skip
    match = re.search(r"^WRK_JSON (.*)$", shown.stdout, re.MULTILINE)
    if shown.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({shown.returncode}): {shown.stderr[-500:]}")
    found = json.loads(match.group(1))
    span_s = found["duration_us"] / 1e6
    accepted = int(found["statuses"].get("202", 0))
    latency = {k: round(v / 1000, 2) for k, v in found["latency_us"].items()}
    errors = {k: v for k, v in found["errors"].items() if v and k != "status"}
    return {
        "sent": found["requests"],
        "accepted": accepted,
        "statuses": {**found["statuses"], **errors},
        "span_s": round(span_s, 3),
        "accepted_per_s": round(accepted / span_s, 1) if span_s > 0 else 0.0,
        "latency_ms": latency,
        "generator": {
            "tool": version(wrk),
            "mode": "closed",
            "connections": connections,
            "threads": threads,
        },
    }
