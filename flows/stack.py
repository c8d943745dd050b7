"""A team's servers without Docker: PostgreSQL from the system's binaries in a folder of the project, an MLflow
tracking server on it with proxied artifact storage, a Prefect server on it. `genie stack up | down | status`
and the tests' fixture use this same code."""
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
from dataclasses import asdict, dataclass
from pathlib import Path

from flows.preflight import unanswered

PG_BIN = Path(os.environ.get("GENIE_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "genie"  # the database role the servers connect as (trust authentication, loopback or the team's network)
DATABASES = ("mlflow", "prefect", "genie")


class StackError(RuntimeError):
    """A server that would not start or stop (the message names it and its log)."""


@dataclass(frozen=True)
class Stack:
    root: Path = Path(".genie/stack")
    host: str = "127.0.0.1"  # where the servers listen; 0.0.0.0 serves the team's network
    postgres_port: int = 5433
    mlflow_port: int = 5000
    prefect_port: int = 4200

    @property
    def address(self) -> str:
        """The host name clients use: this machine's name when the servers listen on every interface."""
        return socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host

    def database_url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}@{self.address}:{self.postgres_port}/{database}"

    def environment(self) -> dict[str, str]:
        """What a genie process on any machine exports to use these servers."""
        return {"MLFLOW_TRACKING_URI": f"http://{self.address}:{self.mlflow_port}",
                "PREFECT_API_URL": f"http://{self.address}:{self.prefect_port}/api",
                "GENIE_DATABASE_URL": self.database_url("genie")}

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
        """The stack as `up` left it in `root` (its ports and host), or the defaults."""
        try:
            saved = json.loads((root / "stack.json").read_text())
        except (OSError, ValueError):
            return cls(root)
        return cls(root, saved["host"], *(int(saved[k]) for k in ("postgres_port", "mlflow_port", "prefect_port")))

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

    def _start_postgres(self) -> None:
        data = self.folder / "postgres"
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
            self._postgres("initdb", "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-instructions")
            with open(data / "postgresql.conf", "a") as conf:  # TCP only: no socket folder to own
                conf.write(f"\nlisten_addresses = '{self.host if self.host != '0.0.0.0' else '*'}'\n"
                           f"port = {self.postgres_port}\nunix_socket_directories = ''\n")
            if self.host == "0.0.0.0":  # the team's machines: the subnets this machine is on, nothing wider
                with open(data / "pg_hba.conf", "a") as hba:
                    hba.write("host all all samenet trust\n")
        if self._postgres("pg_ctl", "-D", str(data), "status", check=False).returncode != 0:
            self._postgres("pg_ctl", "-D", str(data), "-l", str(self._log("postgres")), "-w", "-t", "60", "start")
        import psycopg2

        connection = psycopg2.connect(self.database_url("postgres"))
        connection.autocommit = True  # CREATE DATABASE runs outside a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT datname FROM pg_database")
                present = {row[0] for row in cursor.fetchall()}
                for database in DATABASES:
                    if database not in present:
                        cursor.execute(f'CREATE DATABASE "{database}"')
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
        hosts = {self.address, self.host, "localhost", "127.0.0.1", socket.gethostname()}
        self._spawn("mlflow", [
            str(Path(sys.executable).with_name("mlflow")), "server",
            "--backend-store-uri", self.database_url("mlflow", "postgresql+psycopg2"),
            "--serve-artifacts", "--artifacts-destination", str(self.folder / "mlartifacts"),
            "--host", self.host, "--port", str(self.mlflow_port), "--workers", "2",
            "--allowed-hosts", ",".join(f"{h}:{self.mlflow_port},{h}" for h in sorted(hosts))],
            {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
             "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # its job runner (GenAI scorers): idle processes here

    def _start_prefect(self) -> None:
        self._spawn("prefect", [str(Path(sys.executable).with_name("prefect")), "server", "start",
                                "--host", self.host, "--port", str(self.prefect_port)],
                    {"PREFECT_API_DATABASE_CONNECTION_URL": self.database_url("prefect", "postgresql+asyncpg"),
                     "PREFECT_HOME": str(self.folder / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                     "PREFECT_API_URL": self.environment()["PREFECT_API_URL"]})

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
    def up(self, timeout: float = 600) -> dict[str, str]:
        """Start whatever is not running, wait until every server answers (a new Prefect database's migrations
        take minutes on a slow, busy machine; a server that exits stops the wait); returns the environment to
        export."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.save()
        self._start_postgres()
        self._start_mlflow()
        self._start_prefect()
        deadline = time.monotonic() + timeout
        for name in ("mlflow", "prefect"):
            while not self._answers(name):
                if not self._alive(name):
                    raise StackError(f"the {name} server exited; see {self._log(name)}")
                if time.monotonic() > deadline:
                    raise StackError(f"the {name} server did not answer within {timeout:.0f} s; see {self._log(name)}")
                time.sleep(0.5)
        return self.environment()

    def status(self) -> dict[str, dict]:
        data = self.folder / "postgres"
        postgres = data.is_dir() and self._postgres("pg_ctl", "-D", str(data), "status", check=False).returncode == 0
        return {"postgres": {"running": postgres, "url": self.database_url("genie")},
                **{name: {"running": self._alive(name) and self._answers(name), "pid": self._pid(name),
                          "url": self.environment()["MLFLOW_TRACKING_URI" if name == "mlflow" else "PREFECT_API_URL"]}
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

