"""Fixtures of the producer tests: the app on a test server with a fake publisher."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from plumbing.settings import Settings
from producer.app import create_app
from producer.server import RUNNER_OPTIONS
from tests.producer import seeds
from tests.producer.fakes import MemoryPublisher

RECEIVED_MS = 1_790_000_000_123

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """`await make_client(settings=..., publisher=...)`: a started test client."""
    clients: list[TestClient[Any, Any]] = []

    async def make(
        settings: Settings | None = None, publisher: Any = None, clock_ms: Any = None
    ) -> TestClient[Any, Any]:
        app = create_app(
            settings or seeds.settings(),
            publisher if publisher is not None else MemoryPublisher(),
            clock_ms=clock_ms or (lambda: RECEIVED_MS),
        )
        server = TestServer(app)
        await server.start_server(**RUNNER_OPTIONS)  # as `livewindows serve` runs it
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Settings], Any]]:
    """`await serve(settings)`: the production app (real KafkaPublisher) on a real socket."""
    clients: list[TestClient[Any, Any]] = []

    async def start(settings: Settings) -> TestClient[Any, Any]:
        server = TestServer(create_app(settings))
        await server.start_server(**RUNNER_OPTIONS)
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
