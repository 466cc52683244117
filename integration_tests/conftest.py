"""Fixtures that start the Mistral emulator on a free loopback port. Generic on purpose: source,
destination and emulator tests all use them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from mistral_emulator import EmulatorServer, EmulatorSettings  # noqa: E402

EMULATOR_API_KEY = "test-key"

# Sizes chosen so that every paginated list has several pages at the default page_size of 100
# (and agents several at their default of 20).
SEEDED_SIZES = dict(files=250, batch_jobs=120, agents=45, fine_tuning_jobs=30)


@pytest.fixture(scope="session")
def emulator_api_key() -> str:
    return EMULATOR_API_KEY


@pytest.fixture(scope="session")
def emulator_settings() -> EmulatorSettings:
    """Settings of the shared emulator; copy before changing (see `fresh_emulator`)."""
    return EmulatorSettings(seed=7, **SEEDED_SIZES)


@pytest.fixture(scope="session")
def emulator(emulator_api_key: str, emulator_settings: EmulatorSettings) -> Iterator[EmulatorServer]:
    """One emulator for the whole session. Do not change its knobs: use `fresh_emulator` for that."""
    with EmulatorServer(api_key=emulator_api_key, settings=emulator_settings.copy()) as server:
        yield server


@pytest.fixture
def fresh_emulator(emulator_api_key: str, emulator_settings: EmulatorSettings) -> Iterator[EmulatorServer]:
    """A new emulator per test, for tests that change knobs, create data or need exact counts."""
    with EmulatorServer(api_key=emulator_api_key, settings=emulator_settings.copy()) as server:
        yield server


@pytest.fixture
def emulator_base_url(emulator: EmulatorServer) -> str:
    return emulator.base_url


@pytest.fixture
def emulator_auth_headers(emulator_api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulator_api_key}"}


# ---- PostgreSQL (the pgserver package bundles PostgreSQL and pgvector) ----------------------------

POSTGRES_ADMIN_PASSWORD = "admin-pw-4412"
POSTGRES_WRITER = "writer"
POSTGRES_WRITER_PASSWORD = "pg-secret-PASSWORD-9317"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict]:
    """One PostgreSQL server per test session (per xdist worker that needs one), listening on a free
    loopback port with password authentication, and a role `writer` that is not a superuser (so it
    cannot create the vector extension by itself, as on most managed servers). Yields where it is."""
    import os
    import shutil
    import tempfile

    import pgserver
    from pgserver import utils

    # Not under pytest's temporary directory: every pytest session on the machine makes that
    # readable by its owner alone again, and the server's user must keep reaching its data.
    root = Path(tempfile.mkdtemp(prefix="destination-mistral-postgres-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    user = None
    if os.geteuid() == 0:  # postgres refuses to run as root: pgserver's own user runs it
        user = "pgserver"
        entry = utils.ensure_user_exists(user)
        install = Path(pgserver.__file__).parent / "pginstall"
        utils.ensure_folder_permissions(install / "bin", 0o555)
        utils.ensure_folder_permissions(install / "lib", 0o444)
        utils.ensure_folder_permissions(install / "share", 0o444)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    password_file = root / "password"
    password_file.write_text(POSTGRES_ADMIN_PASSWORD)
    password_file.chmod(0o644)
    pgserver.initdb(
        ["-U", "postgres", "--auth=scram-sha-256", "--auth-local=trust", f"--pwfile={password_file}", "-E", "UTF8"],
        pgdata=data,
        user=user,
    )
    port = utils.find_suitable_port("127.0.0.1")
    pgserver.pg_ctl(
        ["-w", "-o", f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off", "-l", str(data / "log"), "start"],
        pgdata=data,
        user=user,
        timeout=60,
    )
    server = {"host": "127.0.0.1", "port": port, "admin_password": POSTGRES_ADMIN_PASSWORD}
    try:
        with admin_connection(server) as con:
            con.execute(f"CREATE ROLE {POSTGRES_WRITER} LOGIN PASSWORD '{POSTGRES_WRITER_PASSWORD}'")
        yield server
    finally:
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=user, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def writer_connection(output: dict):
    """A connection as the writer, to the database of an `output` block (postgres_database's)."""
    import psycopg

    return psycopg.connect(
        host=output["host"],
        port=output["port"],
        dbname=output["database"],
        user=output["username"],
        password=output["password"],
    )


def admin_connection(server: dict, database: str = "postgres"):
    import psycopg

    return psycopg.connect(
        host=server["host"],
        port=server["port"],
        dbname=database,
        user="postgres",
        password=server["admin_password"],
        autocommit=True,
    )


@pytest.fixture
def postgres_database(postgres_server, request) -> dict:
    """A fresh database owned by `writer`, for one test; with the vector extension installed by the
    administrator when the test is parametrized indirectly with True, without it otherwise. Returns
    the `output` block of a config that writes to it."""
    return make_postgres_database(postgres_server, request.node.nodeid, bool(getattr(request, "param", False)))


def make_postgres_database(server: dict, test_id: str, vector: bool) -> dict:
    name = f"t_{abs(hash(test_id)) % 10**10}_{int(vector)}"
    with admin_connection(server) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        con.execute(f"CREATE DATABASE {name} OWNER {POSTGRES_WRITER}")
    if vector:
        with admin_connection(server, name) as con:
            con.execute("CREATE EXTENSION vector")
    return {
        "type": "postgres",
        "host": server["host"],
        "port": server["port"],
        "database": name,
        "username": POSTGRES_WRITER,
        "password": POSTGRES_WRITER_PASSWORD,
        "ssl_mode": "disable",
    }
