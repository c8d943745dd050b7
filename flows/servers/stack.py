"""A team's servers without Docker: PostgreSQL from the system's binaries in a folder of the project, an MLflow
tracking server on it with proxied artifact storage, a Prefect server on it. `genie stack up | down | status`
and the tests' fixture use this same code.

Every server asks for a password unless the stack is made --insecure: PostgreSQL (scram-sha-256, a role per use),
MLflow's basic-auth app (users and roles in its own database), Prefect's server auth string. The passwords are
generated once into `secrets/` (flows/servers/stack_secrets.py), readable by its owner only."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from flows.servers.members import ensure_roles
from flows.servers.preflight import unanswered
from flows.servers.stack_secrets import LOCKER, Secrets, scram_verifier
from models.locks import HOLDERS

PG_BIN = Path(os.environ.get("GENIE_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "genie"  # the stack's own PostgreSQL superuser; insecure, every server connects as it
# database -> the role that owns it (least privilege: each server reaches its own databases only)
OWNERS = {"mlflow": "mlflow", "mlflow_auth": "mlflow", "prefect": "prefect", "genie": USER}
ROLE_DATABASES = {"mlflow": ("mlflow", "mlflow_auth"), "prefect": ("prefect",), LOCKER: ("genie",)}  # beside USER


@contextmanager
def private_files():
    """What the stack writes, and the servers it starts, readable by its owner only (umask 077)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


class StackError(RuntimeError):
    """A server that would not start or stop (the message names it and its log)."""


@dataclass(frozen=True)
class Stack:
    root: Path = Path(".genie/stack")
    host: str = "127.0.0.1"  # where the servers listen; 0.0.0.0 serves the team's network
    postgres_port: int = 5433
    mlflow_port: int = 5000
    prefect_port: int = 4200
    secure: bool = True  # False (--insecure): no passwords anywhere, as on a laptop

    @property
    def address(self) -> str:
        """The host name clients use: this machine's name when the servers listen on every interface."""
        return socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host

    @property
    def secrets(self) -> Secrets:
        return Secrets(self.folder / "secrets")

    @property
    def local_address(self) -> str:
        """Where this machine reaches the servers over loopback (the superuser is let in from nowhere else)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host

    def database_url(self, database: str, driver: str = "postgresql", role: str | None = None) -> str:
        """As `role` (by default the database's owner), with its password unless insecure."""
        role = USER if not self.secure else role or OWNERS.get(database, USER)
        login = f"{role}:{self.secrets.password('postgres.' + role)}" if self.secure else role
        host = self.local_address if self.secure and role == USER else self.address
        return f"{driver}://{login}@{host}:{self.postgres_port}/{database}"

    def urls(self) -> dict[str, str]:
        """Where the servers answer (no credentials)."""
        return {"MLFLOW_TRACKING_URI": f"http://{self.address}:{self.mlflow_port}",
                "PREFECT_API_URL": f"http://{self.address}:{self.prefect_port}/api"}

    def environment(self, member: str = "admin") -> dict[str, str]:
        """What a genie process on any machine exports to use these servers: the URLs and, unless insecure, the
        member's credentials (its environment file)."""
        if not self.secure:
            return self.urls() | {"GENIE_DATABASE_URL": self.database_url("genie")}
        return self.secrets.member_environment(member)

    # -- files -------------------------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        return self.root.resolve()

    def _pid_file(self, name: str) -> Path:
        return self.folder / f"{name}.pid"

    def _log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def save(self) -> None:
        (self.folder / "stack.json").write_text(json.dumps({k: str(v) for k, v in asdict(self).items()}))

    @classmethod
    def load(cls, root: Path = Path(".genie/stack")) -> Stack:
        """The stack as `up` left it in `root` (its ports, host and security), or the defaults."""
        try:
            saved = json.loads((root / "stack.json").read_text())
        except (OSError, ValueError):
            return cls(root)
        return cls(root, saved["host"], *(int(saved[k]) for k in ("postgres_port", "mlflow_port", "prefect_port")),
                   saved.get("secure", "True") == "True")

    # -- PostgreSQL ----------------------------------------------------------------------------------------------
    def _as_owner(self, *command: str) -> list[str]:
        """initdb and pg_ctl refuse root: as root they run as the `postgres` system user."""
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)

    def _postgres(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        tool = PG_BIN / args[0]
        if not tool.is_file():
            raise StackError(f"{tool}: not found; install PostgreSQL (Debian: postgresql-15) or set GENIE_PG_BIN")
        done = subprocess.run(self._as_owner(str(tool), *args[1:]), capture_output=True, text=True)
        if check and done.returncode != 0:
            raise StackError(f"{args[0]} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
                             f" (log: {self._log('postgres')})")
        return done

    def start_postgres(self) -> None:
        data = self.folder / "postgres"
        if self.secure and (data / "PG_VERSION").is_file() and not self.secrets.exists():
            raise StackError(f"{data} was made --insecure (no passwords): keep --insecure, or `genie stack down "
                             "--remove` and up again")
        if not (data / "PG_VERSION").is_file():
            data.mkdir(parents=True, exist_ok=True)
            self._log("postgres").touch()
            if os.geteuid() == 0:  # it runs as `postgres`: it must reach the folder, and own what it writes
                if subprocess.run(self._as_owner("test", "-x", str(self.folder))).returncode:
                    raise StackError(f"PostgreSQL runs as the `postgres` user, which cannot reach {self.folder}: "
                                     "choose a --folder it can (its parents readable by others)")
                owner = pwd.getpwnam("postgres")
                for path in (data, self._log("postgres")):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
            self._initdb(data)
        if self._postgres("pg_ctl", "-D", str(data), "status", check=False).returncode != 0:
            self._postgres("pg_ctl", "-D", str(data), "-l", str(self._log("postgres")), "-w", "-t", "60", "start")
        self._create_databases()

    def _initdb(self, data: Path) -> None:
        method = "scram-sha-256" if self.secure else "trust"
        with self.secrets.password_file("postgres." + USER, readable_by="postgres" if os.geteuid() == 0 else None
                                        ) if self.secure else nullcontext() as password_file:
            self._postgres("initdb", "-D", str(data), "-A", method, "-U", USER, "-E", "UTF8", "--no-instructions",
                           *([f"--pwfile={password_file}"] if password_file else []))
        with open(data / "postgresql.conf", "a") as conf:  # TCP only: no socket folder to own
            conf.write(f"\nlisten_addresses = '{self.host if self.host != '0.0.0.0' else '*'}'\n"
                       f"port = {self.postgres_port}\nunix_socket_directories = ''\n"
                       "password_encryption = 'scram-sha-256'\n")
        (data / "pg_hba.conf").write_text(self.hba(method))

    def hba(self, method: str) -> str:
        """pg_hba.conf: TCP only, each role to its own databases; the superuser from loopback only. Insecure (one
        role for all, no password) keeps to the same networks."""
        networks = ["127.0.0.1/32", "::1/128"] + (["samenet"] if self.host == "0.0.0.0" else [])  # nothing wider
        if not self.secure:
            rules = [("all", "all", network) for network in networks]
        else:
            rules = [("all", USER, network) for network in networks[:2]] + [
                (database, role, network) for role, databases in ROLE_DATABASES.items() for network in networks
                for database in [",".join(databases)]]
        return "# genie stack: no other connection is accepted\n" + "".join(
            f"host {database} {role} {network} {method}\n" for database, role, network in rules)

    def _create_databases(self) -> None:
        """The databases, each owned by its server's role; the nights' role may lock and name the holder only."""
        import psycopg2
        from psycopg2 import sql

        connection = psycopg2.connect(self.database_url("postgres", role=USER))
        connection.autocommit = True  # CREATE DATABASE runs outside a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT rolname FROM pg_roles")
                roles = {row[0] for row in cursor.fetchall()}
                for role in {*OWNERS.values(), LOCKER} - roles - {USER} if self.secure else ():
                    cursor.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)),
                                   (scram_verifier(self.secrets.password("postgres." + role)),))
                cursor.execute("SELECT datname FROM pg_database")
                present = {row[0] for row in cursor.fetchall()}
                for database, owner in OWNERS.items():
                    if database not in present:
                        cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(database), sql.Identifier(owner if self.secure else USER)))
                        cursor.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
                            sql.Identifier(database)))
        finally:
            connection.close()
        connection = psycopg2.connect(self.database_url("genie", role=USER))
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(HOLDERS)
                if self.secure:
                    cursor.execute(f"GRANT CONNECT ON DATABASE genie TO {LOCKER}")
                    cursor.execute(f"GRANT USAGE ON SCHEMA public TO {LOCKER}")
                    cursor.execute(f"GRANT SELECT, INSERT, UPDATE ON genie_holders TO {LOCKER}")
        finally:
            connection.close()

    # -- MLflow and Prefect ------------------------------------------------------------------------------------
    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        if self._alive(name):
            return
        with open(self._log(name), "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, env=os.environ | (env or {}), cwd=self.folder)
        self._pid_file(name).write_text(str(process.pid))

    def _start_mlflow(self) -> None:
        """With the basic-auth app unless insecure; secrets reach it by its environment (private to its owner),
        never by its command line (which every user of the machine can read)."""
        hosts = {self.address, self.host, "localhost", "127.0.0.1", socket.gethostname()}
        auth = {"MLFLOW_AUTH_CONFIG_PATH": str(self.secrets.mlflow_auth_config(
            self.database_url("mlflow_auth", "postgresql+psycopg2"))),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secrets.password("mlflow.flask")} if self.secure else {}
        self._spawn("mlflow", [
            str(Path(sys.executable).with_name("mlflow")), "server", *(["--app-name", "basic-auth"] if auth else []),
            "--serve-artifacts", "--artifacts-destination", str(self.folder / "mlartifacts"),
            "--host", self.host, "--port", str(self.mlflow_port), "--workers", "2",
            "--allowed-hosts", ",".join(f"{h}:{self.mlflow_port},{h}" for h in sorted(hosts))],
            {"MLFLOW_BACKEND_STORE_URI": self.database_url("mlflow", "postgresql+psycopg2"),
             "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
             "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"} | auth)  # its job runner (GenAI scorers): idle here

    def _start_prefect(self) -> None:
        auth = {"PREFECT_SERVER_API_AUTH_STRING": self.secrets.prefect_auth(),
                "PREFECT_API_AUTH_STRING": self.secrets.prefect_auth()} if self.secure else {}
        self._spawn("prefect", [str(Path(sys.executable).with_name("prefect")), "server", "start",
                                "--host", self.host, "--port", str(self.prefect_port)],
                    {"PREFECT_API_DATABASE_CONNECTION_URL": self.database_url("prefect", "postgresql+asyncpg"),
                     "PREFECT_HOME": str(self.folder / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                     "PREFECT_API_URL": self.urls()["PREFECT_API_URL"]} | auth)

    def _health(self) -> dict[str, str]:
        return {"mlflow": f"http://{self.address}:{self.mlflow_port}/health",
                "prefect": f"http://{self.address}:{self.prefect_port}/api/health"}

    def _answers(self, name: str) -> bool:
        return unanswered(self._health()[name]) is None

    def _pid(self, name: str) -> int | None:
        try:
            return int(self._pid_file(name).read_text())
        except (OSError, ValueError):
            return None

    def _alive(self, name: str) -> bool:
        pid = self._pid(name)
        if pid is None:
            return False
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # this process started it and it has exited: reaped
                return False
        except ChildProcessError:  # another process's child (a `genie stack up` that has returned)
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    # -- the commands ------------------------------------------------------------------------------------------
    def begin(self) -> None:
        """What `up` and a restore start with: the folder (0711: PostgreSQL's user passes through to its data,
        nobody else lists it), the secrets made once, the settings saved, PostgreSQL started; all written private."""
        self.folder.mkdir(parents=True, exist_ok=True)  # its parents as the caller's mask makes them
        with private_files():
            self.folder.chmod(0o711)
            if self.secure and not (self.folder / "postgres" / "PG_VERSION").is_file():
                self.secrets.create()
            self.save()
            self.start_postgres()

    def up(self, timeout: float = 600) -> dict[str, str]:
        """Start whatever is not running, wait until every server answers (a new Prefect database's migrations
        take minutes on a slow, busy machine; a server that exits stops the wait); returns the environment to
        export."""
        self.begin()
        with private_files():
            self._start_mlflow()  # the servers inherit the mask: their logs, artifacts and homes are theirs alone
            self._start_prefect()
        deadline = time.monotonic() + timeout
        for name in ("mlflow", "prefect"):
            while not self._answers(name):
                if not self._alive(name):
                    raise StackError(f"the {name} server exited; see {self._log(name)}")
                if time.monotonic() > deadline:
                    raise StackError(f"the {name} server did not answer within {timeout:.0f} s; see {self._log(name)}")
                time.sleep(0.5)
        if self.secure:
            ensure_roles(self)
        return self.environment()

    def status(self) -> dict[str, dict]:
        data = self.folder / "postgres"
        postgres = data.is_dir() and self._postgres("pg_ctl", "-D", str(data), "status", check=False).returncode == 0
        checks = {"postgres": "scram-sha-256", "mlflow": "basic-auth", "prefect": "auth string"}
        return {"postgres": {"running": postgres, "url": f"postgresql://{self.address}:{self.postgres_port}/genie",
                             "authentication": checks["postgres"] if self.secure else "none"},
                **{name: {"running": self._alive(name) and self._answers(name), "pid": self._pid(name),
                          "url": self.urls()["MLFLOW_TRACKING_URI" if name == "mlflow" else "PREFECT_API_URL"],
                          "authentication": checks[name] if self.secure else "none"}
                   for name in ("mlflow", "prefect")}}

    def down(self, timeout: float = 30) -> None:
        """Stop the servers (the data stays in the folder for the next `up`)."""
        for name in ("prefect", "mlflow"):
            pid = self._pid(name)
            if pid is not None and self._alive(name):
                try:
                    os.killpg(pid, signal.SIGTERM)  # the server and its workers
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + timeout
                while self._alive(name) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if self._alive(name):
                    os.killpg(pid, signal.SIGKILL)
            self._pid_file(name).unlink(missing_ok=True)
        data = self.folder / "postgres"
        if data.is_dir():
            self._postgres("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop", check=False)

    def remove(self) -> None:
        """Down, then the data too."""
        self.down()
        shutil.rmtree(self.folder, ignore_errors=True)

