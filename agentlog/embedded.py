"""A private PostgreSQL server under the state directory, for when no AGENTLOG_DATABASE_URL is given.

The binaries come from the `pgserver` wheel, so nothing has to be installed on the machine. The data directory,
the server log, the port and the generated password live in `<home>/postgres/` and survive restarts. The server
listens on 127.0.0.1 only, with password authentication, on a port chosen once and kept while it stays free.

PostgreSQL refuses to run as root, so as root the server runs as a system user (`agentlog-postgres`, created on
first use) that owns the data directory; the directories above it get the search (x) bit so that user can reach
it. The server is started in its own session, so Ctrl-C in the terminal reaches agentlog, which shuts down in
order, and not the database first. It keeps running after short commands (`agentlog append`, `db url`) so they
stay fast; `agentlog db stop` stops it, and `agentlog up` stops it on exit if `up` started it.

Roles: initdb's superuser `agentlog` owns the database and runs the migrations; the migrations make the
application and reporting roles (see alembic/versions/0006_roles.sql), which this server lets log in with
passwords of their own, kept beside the owner's. Everything but `agentlog migrate` connects as one of those.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import structlog
from psycopg import sql

from agentlog.eventstore.errors import AgentlogError
from agentlog.eventstore.postgres.queries import load_queries

log = structlog.get_logger("agentlog.embedded")

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))
"""The SQL of this module (psycopg: `%s` placeholders, or `psycopg.sql` braces for the utility statements)."""

SYSTEM_USER = "agentlog-postgres"
ROLE = "agentlog"
"""The owner: initdb's superuser, used by the migrations only."""
APPLICATION_ROLE = "agentlog_application"
REPORTING_ROLE = "agentlog_reporting"
LOGIN_ROLES = (APPLICATION_ROLE, REPORTING_ROLE)
DATABASE = "agentlog"
DEFAULT_SERVER_SETTINGS: Mapping[str, str] = {
    "max_connections": "200",
    "idle_in_transaction_session_timeout": "60s",
}


class EmbeddedServerError(AgentlogError):
    """The embedded PostgreSQL server could not start; see its log under <home>/postgres/server.log."""


def _binaries() -> Path:
    """The PostgreSQL binaries inside the pgserver wheel (found without importing it: its import has side effects)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the pgserver wheel is missing; reinstall agentlog")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL binds: TIME_WAIT is free
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True, slots=True)
class RunningServer:
    pid: int
    port: int


class EmbeddedPostgres:
    """The private server of one state directory."""

    def __init__(self, home: Path, *, server_settings: Mapping[str, str] | None = None) -> None:
        self.home = home.absolute()
        self.root = self.home / "postgres"
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self._password_file = self.root / "password"
        self._port_file = self.root / "port"
        self._settings = {**DEFAULT_SERVER_SETTINGS, **(server_settings or {})}
        self._as_root = os.geteuid() == 0

    # -- public ----------------------------------------------------------------------------------------------

    def ensure_running(self) -> tuple[str, bool]:
        """Initialise and start the server if needed; return its URL and whether this call started it."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self._exclusive():
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            running = self.running()
            started = running is None
            if running is None:
                running = self._start()
            url = self._url(running.port)
            if started:
                self._ensure_database(running.port)
        return url, started

    def url(self) -> str:
        """The owner's URL of the running server; raises if it is not running."""
        return self._url(self._running_port())

    def role_url(self, role: str, database: str = DATABASE) -> str:
        """The URL of one of the login roles (after `ensure_logins`), for `database`."""
        password = self._password_file_of(role).read_text().strip()
        return f"postgresql://{role}:{password}@127.0.0.1:{self._running_port()}/{database}"

    def ensure_logins(self) -> None:
        """Let the application and reporting roles (made by the migrations) log in, each with its own password."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            for role in LOGIN_ROLES:
                password_file = self._password_file_of(role)
                can_login = connection.execute(QUERIES["role_can_login"], [role]).fetchone()
                if can_login is None:
                    raise EmbeddedServerError(f"role {role} does not exist: run `agentlog migrate`")
                if can_login[0] and password_file.exists():
                    continue
                password = secrets.token_urlsafe(24)
                # A utility statement takes no parameters: the driver quotes the generated password as a literal.
                connection.execute(
                    sql.SQL(QUERIES["let_role_login"]).format(sql.Identifier(role), sql.Literal(password))
                )
                password_file.write_text(password)
                password_file.chmod(0o600)

    def _password_file_of(self, role: str) -> Path:
        return self.root / f"password-{role}"

    def _running_port(self) -> int:
        running = self.running()
        if running is None:
            raise EmbeddedServerError(f"the embedded server under {self.root} is not running")
        return running.port

    def running(self) -> RunningServer | None:
        """The running postmaster of this data directory, from postmaster.pid, if it is alive and ready."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 8 or lines[7].strip() != "ready":
            return None
        pid, port = int(lines[0]), int(lines[3])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by the server's system user
        return RunningServer(pid, port)

    def stop(self) -> bool:
        """Stop the server (fast shutdown: sessions are cut, committed data is safe); False if not running."""
        with self._exclusive():
            if self.running() is None:
                return False
            self._pg_ctl(["-m", "fast", "-w", "-t", "60", "stop"])
        log.info("embedded.stopped", data_dir=str(self.data_dir))
        return True

    def restart(self) -> None:
        """Restart the server (fast: sessions are cut, committed data is safe), as an operator or a failover would."""
        with self._exclusive():
            if self.running() is not None:
                self._pg_ctl(["-m", "fast", "-w", "-t", "60", "stop"])
            self._start()  # on the same port, with the same settings and server log
        log.info("embedded.restarted", data_dir=str(self.data_dir))

    # -- set-up ------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with open(self.home / "postgres.lock", "a+") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _system_user(self) -> pwd.struct_passwd | None:
        if not self._as_root:
            return None
        try:
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 SYSTEM_USER],
                check=True,
                capture_output=True,
            )
            return pwd.getpwnam(SYSTEM_USER)

    def _make_reachable(self, path: Path) -> None:
        """Give every directory above `path` the search bit, so the server's system user can get there."""
        for parent in path.absolute().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)

    def _initdb(self) -> None:
        user = self._system_user()
        if self.root.exists() and not (self.data_dir / "PG_VERSION").exists():
            shutil.rmtree(self.data_dir, ignore_errors=True)  # a half-made data directory from a killed initdb
        self.root.mkdir(mode=0o700, exist_ok=True)
        password = secrets.token_urlsafe(24)
        self._password_file.write_text(password)
        self._password_file.chmod(0o600)
        initial_password = self.root / "initial-password"
        initial_password.write_text(password)
        if user is not None:
            self._make_reachable(self.root)
            self._make_reachable(_binaries())
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(initial_password, user.pw_uid, user.pw_gid)
        try:
            self._run(
                "initdb",
                ["-D", str(self.data_dir), "-U", ROLE, f"--pwfile={initial_password}", "--auth=scram-sha-256",
                 "--encoding=UTF8", "--locale=C.UTF-8"],
            )
        finally:
            initial_password.unlink(missing_ok=True)
        log.info("embedded.initialised", data_dir=str(self.data_dir))

    def _start(self) -> RunningServer:
        port = int(self._port_file.read_text()) if self._port_file.exists() else 0
        if not port or not _port_is_free(port):
            port = _free_port()
        self._port_file.write_text(str(port))
        options = [f"-p {port}", "-c listen_addresses=127.0.0.1", "-c unix_socket_directories=''"]
        options += [f"-c {name}={value}" for name, value in self._settings.items()]
        try:
            self._pg_ctl(["-l", str(self.log_file), "-w", "-t", "60", "-o", " ".join(options), "start"])
        except EmbeddedServerError as error:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise EmbeddedServerError(f"{error}\n{tail}") from error
        running = self.running()
        if running is None:
            raise EmbeddedServerError(f"the server did not come up; see {self.log_file}")
        log.info("embedded.started", port=running.port, data_dir=str(self.data_dir))
        return running

    def _pg_ctl(self, arguments: list[str]) -> None:
        self._run("pg_ctl", ["-D", str(self.data_dir), *arguments])

    def _run(self, program: str, arguments: list[str]) -> None:
        user = self._system_user()
        result = subprocess.run(
            [str(_binaries() / program), *arguments],
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            cwd=self.root if self.root.exists() else None,
            capture_output=True,
            text=True,
            start_new_session=True,  # Ctrl-C in our terminal must not shut the database down under us
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(f"{program} failed ({result.returncode}): {result.stderr.strip()}")

    def _url(self, port: int) -> str:
        password = self._password_file.read_text().strip()
        return f"postgresql://{ROLE}:{password}@127.0.0.1:{port}/{DATABASE}"

    def _ensure_database(self, port: int) -> None:
        admin_url = self._url(port).rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, autocommit=True) as connection:
            exists = connection.execute(QUERIES["database_exists"], [DATABASE]).fetchone()
            if exists is None:
                connection.execute(sql.SQL(QUERIES["create_database"]).format(sql.Identifier(DATABASE)))
