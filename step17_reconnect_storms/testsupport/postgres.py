"""A real PostgreSQL server for the tests, on a free port, in a temporary directory.

initdb makes a new cluster there and pg_ctl starts it, listening on 127.0.0.1 only;
everything is removed afterwards. Where initdb and pg_ctl are not found (Debian and
Ubuntu keep them in /usr/lib/postgresql/<version>/bin), the tests that need
PostgreSQL are skipped with a reason that says how to get it.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from testsupport.servers import free_port

# A skip reason starts with "needs <part>:", so that a runner can tell which part
# was missing (a CI run can turn such a skip into a failure).
HOW_TO_GET_POSTGRES = (
    "needs PostgreSQL: no initdb and pg_ctl found: install PostgreSQL"
    " (apt install postgresql | brew install postgresql)"
)


def find_program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian and Ubuntu: not on PATH; the newest version wins.
    candidates = [
        path
        for path in glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
        if os.access(path, os.X_OK)
    ]
    candidates.sort(key=lambda path: int(Path(path).parts[-3]))
    return candidates[-1] if candidates else None


class PostgresServer:
    """One throw-away PostgreSQL cluster; its superuser is "postgres", with no
    password (trust), which is why it listens on 127.0.0.1 only."""

    def __init__(self, initdb: str, pg_ctl: str):
        self.initdb = initdb
        self.pg_ctl = pg_ctl
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="test-postgres-"))
        self.data = self.directory / "data"
        self.run_as = []
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # initdb refuses to run as root: run it, and the server, as the
            # "postgres" user that the PostgreSQL packages create.
            try:
                shutil.chown(self.directory, user="postgres")
            except LookupError:
                shutil.rmtree(self.directory, ignore_errors=True)
                raise unittest.SkipTest(
                    "needs PostgreSQL: run as root, initdb needs the postgres user"
                    " that the PostgreSQL packages create (apt install postgresql)"
                ) from None
            self.run_as = ["runuser", "-u", "postgres", "--"]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, *command: str) -> None:
        result = subprocess.run(
            [*self.run_as, *command], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"
            )

    def start(self) -> "PostgresServer":
        self.run(
            self.initdb, "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        # Speed over durability: the cluster is thrown away after the tests.
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=300"
        )
        self.run(
            self.pg_ctl, "-D", str(self.data), "-o", options,
            "-l", str(self.directory / "server.log"), "-w", "start",
        )  # fmt: skip
        return self

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database (a copy of `template`, if given); returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            copy = f" TEMPLATE {template}" if template else ""
            connection.execute(f"CREATE DATABASE {name}{copy}")
        return self.url(name)

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres_server() -> PostgresServer:
    """A throw-away PostgreSQL server, or a skip that says how to get one."""
    initdb, pg_ctl = find_program("initdb"), find_program("pg_ctl")
    if not initdb or not pg_ctl:
        raise unittest.SkipTest(HOW_TO_GET_POSTGRES)
    server = PostgresServer(initdb, pg_ctl)
    try:
        return server.start()
    except BaseException:
        server.close()  # leave no cluster or folder behind
        raise
