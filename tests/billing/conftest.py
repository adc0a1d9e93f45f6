"""Databases for the billing tests: a SQLite file, and a real PostgreSQL server.

PostgreSQL is `LIVEWINDOWS_TEST_POSTGRES_URL` if set (the role needs CREATE on the
database); else a throwaway server started from the installed binaries
(Debian's `postgresql` package) on a free loopback port, stopped at session end.
Each test gets its own schema there, so tests never see each other's rows.
Without binaries the PostgreSQL tests are skipped, or fail under CI=true.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from livewindows.billing.store import Store, open_store

POSTGRES_URL_ENV = "LIVEWINDOWS_TEST_POSTGRES_URL"
_PORTS = range(45432, 45532)  # clear of the Kafka test ports (49092+)
_UNPRIVILEGED = ("postgres", "nobody")  # initdb and postgres refuse to run as root


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server for this session."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        yield url
        return
    bindir = _postgres_bindir()
    if bindir is None:
        message = (
            f"no PostgreSQL binaries (apt-get install -y postgresql) and no {POSTGRES_URL_ENV}"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    datadir = Path(tempfile.mkdtemp(prefix="livewindows-pg-"))
    user = _unprivileged_user() if os.geteuid() == 0 else None
    if user is not None:
        os.chown(datadir, user.pw_uid, user.pw_gid)
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {datadir} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )

    def run(*command: str) -> None:
        prefix = ["runuser", "-u", user.pw_name, "--"] if user is not None else []
        subprocess.run(
            [*prefix, *command], cwd=datadir, check=True, capture_output=True, timeout=120
        )

    try:
        run(f"{bindir}/initdb", "-D", f"{datadir}/data", "-U", "livewindows",
            "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")  # fmt: skip
        run(f"{bindir}/pg_ctl", "-D", f"{datadir}/data", "-o", options,
            "-l", f"{datadir}/server.log", "-w", "-t", "60", "start")  # fmt: skip
    except subprocess.CalledProcessError as exc:
        log = datadir / "server.log"
        detail = log.read_text() if log.exists() else ""
        shutil.rmtree(datadir, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r}\n{detail}") from exc
    try:
        yield f"postgresql://livewindows@127.0.0.1:{port}/postgres"
    finally:
        try:
            run(f"{bindir}/pg_ctl", "-D", f"{datadir}/data", "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def make_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of URLs of empty databases, of the test's dialect."""
    schemas: list[str] = []
    base = request.getfixturevalue("postgres_server") if request.param == "postgres" else ""

    def make() -> str:
        if not base:
            return f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"
        schema = f"t_{uuid.uuid4().hex}"
        _admin(base, f"CREATE SCHEMA {schema}")
        schemas.append(schema)
        return _with_search_path(base, schema)

    yield make
    for schema in schemas:
        _admin(base, f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def make_store(make_db_url: Callable[[], str]) -> Iterator[Callable[[], Store]]:
    """A factory of stores on empty databases; all closed at the end of the test."""
    stores: list[Store] = []

    def make() -> Store:
        stores.append(open_store(make_db_url()))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    return make_store()


def _postgres_bindir() -> str | None:
    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if candidates:
        return str(Path(candidates[-1]).parent)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return str(Path(initdb).resolve().parent)
    return None


def _unprivileged_user() -> pwd.struct_passwd:
    for name in _UNPRIVILEGED:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(f"running as root and none of the users {_UNPRIVILEGED} exists")


def _free_port() -> int:
    for port in _PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS}")


def _admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql)


def _with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))
