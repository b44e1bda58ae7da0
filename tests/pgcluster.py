"""A throwaway PostgreSQL cluster for the tests and the benchmark: initdb and pg_ctl in a
temporary folder, listening on 127.0.0.1 only, with the server's durable defaults
(fsync on, synchronous_commit on).

PostgreSQL refuses to run as root, so as root the cluster is made and started as the
`postgres` user the Debian package creates (or `nobody`), via runuser. The binaries come
from $LCR_PG_BIN, else scripts/pg.sh (which installs Debian's postgresql package on first
use).

    cluster = PgCluster.start()
    url = cluster.url("postgres")      # the superuser
    cluster.stop()
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPERUSER = "postgres"


class PgClusterError(RuntimeError):
    """The cluster could not be made or started (the message says why and what to run)."""


def bindir() -> Path:
    """Where initdb and pg_ctl are: $LCR_PG_BIN, else what scripts/pg.sh finds (or installs)."""
    env = os.environ.get("LCR_PG_BIN")
    if env:
        return Path(env)
    try:
        out = subprocess.run(
            [str(ROOT / "scripts" / "pg.sh"), "bindir"], check=True, capture_output=True, text=True, timeout=600
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise PgClusterError(
            f"no PostgreSQL server binaries: scripts/pg.sh failed ({exc}); install Debian's postgresql package"
        ) from None
    return Path(out.stdout.strip())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> str | None:
    """The user to run the server as, when this process is root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PgClusterError("running as root and neither a postgres nor a nobody user exists to run PostgreSQL as")


@dataclass
class PgCluster:
    bindir: Path
    datadir: Path
    port: int
    user: str | None

    @classmethod
    def start(cls, settings: dict[str, str] | None = None, timeout: float = 60.0) -> PgCluster:
        """initdb a new cluster in a temporary folder and start it; `settings` go to postgresql.conf."""
        bins = bindir()
        user = _run_as()
        base = Path(tempfile.mkdtemp(prefix="lcr-pg-"))
        datadir = base / "data"
        if user is not None:
            shutil.chown(base, user)
        port = _free_port()
        cluster = cls(bins, datadir, port, user)
        cluster._run(
            [
                str(bins / "initdb"),
                "-D",
                str(datadir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            timeout=timeout,
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{base}'",
            "max_connections": "200",
            # Room for a benchmark's WAL between checkpoints; durability settings stay default.
            "max_wal_size": "'2GB'",
            "log_min_messages": "warning",
            **(settings or {}),
        }
        with open(datadir / "postgresql.conf", "a") as fh:
            fh.write("\n# lcr test cluster\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
        cluster._run(
            [
                str(bins / "pg_ctl"),
                "-D",
                str(datadir),
                "-l",
                str(base / "server.log"),
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            timeout=timeout + 10,
        )
        return cluster

    def _run(self, cmd: list[str], timeout: float) -> None:
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/", check=False)
        if done.returncode != 0:
            log = self.datadir.parent / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PgClusterError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()} {tail}")

    def url(self, user: str = SUPERUSER, dbname: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL as the superuser."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(dbname=name)

    def pause(self) -> None:
        """Stop the server (fast shutdown): clients see the database unreachable."""
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"], timeout=60)

    def resume(self) -> None:
        log = self.datadir.parent / "server.log"
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(log), "-w", "start"], timeout=70)

    def stop(self) -> None:
        try:
            self._run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"], timeout=60
            )
        except PgClusterError:
            pass  # already stopped
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def wait_until_answers(url: str, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


SIDECAR_ROLE = "lcr_sidecar"


class PgDatabases:
    """Fresh databases on one cluster, each migrated by the owner, written by a sidecar role
    that holds only lcr_audit_writer (INSERT and SELECT), as deployed."""

    def __init__(self, cluster: PgCluster) -> None:
        self.cluster = cluster
        self._n = 0
        self._role_made = False

    def new(self, prefix: str = "audit") -> PgDatabase:
        import psycopg

        from audit_store.pg import WRITER_ROLE, migrate

        self._n += 1
        name = f"{prefix}_{os.getpid()}_{self._n}"
        owner_url = self.cluster.create_database(name)
        migrate(owner_url)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            if not self._role_made:
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (SIDECAR_ROLE,)).fetchone()
                if not exists:
                    conn.execute(f"CREATE ROLE {SIDECAR_ROLE} LOGIN IN ROLE {WRITER_ROLE}")
                self._role_made = True
        return PgDatabase(name, owner_url, self.cluster.url(SIDECAR_ROLE, name))


@dataclass
class PgDatabase:
    name: str
    owner_url: str  # the superuser: migrations, and an attacker who holds the server
    url: str  # the sidecar's role: INSERT and SELECT only
