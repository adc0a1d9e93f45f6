"""The HTTP ceiling: an aiohttp app whose webhook routes only answer 202.

Same routes, same runner options and the same event loop as `livewindows serve`,
and nothing else: no auth, no body parsing, no Kafka. Run as its own process:
`python -m bench.bare --port P`.
"""

from __future__ import annotations

import argparse

from aiohttp import web

_ACCEPTED = b'{"status":"accepted","event_id":"00000000000000000000000000000000"}'


async def _accepted(_request: web.Request) -> web.Response:
    return web.Response(body=_ACCEPTED, status=202, content_type="application/json")


async def _ready(_request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ready"}', content_type="application/json")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/api/v1/video/events/{token}", _accepted)
    app.router.add_post("/api/v1/video/fastpix/events", _accepted)
    app.router.add_post("/api/v1/video/gjirafa/events/{token}", _accepted)
    app.router.add_get("/readyz", _ready)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
