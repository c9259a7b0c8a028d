"""A throwaway PostgreSQL server for tests and benchmarks: real, started without root.

Uses the system's PostgreSQL binaries (Debian: /usr/lib/postgresql/<v>/bin; or initdb on
PATH), or where there are none, those of the pip-installable `pgserver` package if present
(`pip install pgserver`; checked to work the same way). PostgreSQL refuses to run as root, so when we are root the cluster is created and
run as the unprivileged `postgres` system user (or $LLM_ROUTER_PG_USER) in a fresh temporary
directory, listening on 127.0.0.1 at a free port, with password (SCRAM) authentication.
`stop()` shuts it down and removes everything.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ENV_USER = "LLM_ROUTER_PG_USER"


def find_bindir() -> Path | None:
    """The newest system PostgreSQL's bin directory; else initdb on PATH; else the binaries
    of the pip-installable `pgserver` package when it is installed; else None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        bindir = Path(spec.origin).parent / "pginstall" / "bin"
        if (bindir / "initdb").exists():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """One running server: a superuser `postgres` and an application role and database."""

    bindir: Path
    root: Path
    port: int
    superpass: str
    user: str | None  # the OS user it runs as (None: ourselves)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "server.log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kw: dict = {}
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [],
                  "env": {**os.environ, "HOME": str(self.root)}}
        return subprocess.run([str(self.bindir / args[0]), *args[1:]], check=True,
                              capture_output=True, text=True, cwd=self.root, **kw)

    def url(self, user: str = "postgres", dbname: str = "postgres") -> str:
        """A libpq URL without a password (it comes from the environment, as in production)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        return f"{self.url(dbname=dbname)}?password={self.superpass}"

    def create_database(self, name: str, owner: str, password: str) -> str:
        """A role and a database it owns; returns its password-less URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_conninfo(), autocommit=True) as c:
            c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(owner), sql.Literal(password)))
            c.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(owner)))
        return self.url(owner, name)

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_conninfo(), autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start(bindir: Path | None = None) -> PgServer:
    """initdb + pg_ctl start in a new temporary directory; raises RuntimeError saying why
    when there is no PostgreSQL here or it would not start."""
    bindir = bindir or find_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries found (install postgresql, e.g. "
                           "`apt-get install postgresql`)")
    user = None
    if os.geteuid() == 0:
        user = os.environ.get(ENV_USER, "postgres")
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise RuntimeError(f"running as root and there is no {user!r} user to run "
                               f"PostgreSQL as (set ${ENV_USER})") from None
    root = Path(tempfile.mkdtemp(prefix="llm-router-pg-"))
    if user is not None:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    os.chmod(root, 0o700)
    server = PgServer(bindir, root, _free_port(), secrets.token_hex(12), user)
    try:
        pwfile = root / "pw"
        pwfile.write_text(server.superpass)
        if user is not None:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        server._run("initdb", "-D", str(server.data), "-U", "postgres", "-E", "UTF8",
                    "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}")
        pwfile.unlink()
        opts = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {root} "
                "-c max_connections=100 -c shared_buffers=32MB")
        server._run("pg_ctl", "-D", str(server.data), "-l", str(server.log), "-o", opts,
                    "-w", "-t", "60", "start")
    except subprocess.CalledProcessError as exc:
        log = server.log.read_text() if server.log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL would not start: {exc.stderr}\n{log}") from None
    return server
