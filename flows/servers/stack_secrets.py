"""The stack's passwords, generated once into one folder only its owner can read (0700, files 0600): `stack.ini`
(the servers' passwords, and the `[mlflow]` section MLflow's basic-auth app reads as its configuration) and
`members/NAME.env`, each member's environment as `export` lines a shell sources."""
from __future__ import annotations

import base64
import configparser
import hashlib
import hmac
import os
import pwd
import secrets
import shlex
import tempfile
from contextlib import contextmanager
from pathlib import Path

GENERATED = ("postgres.genie", "postgres.mlflow", "postgres.prefect", "postgres.genie_lock", "mlflow.admin",
             "mlflow.flask", "prefect")
MLFLOW_ADMIN = "admin"  # the user MLflow's auth app creates on its first start: the stack's operator
PREFECT_USER = "genie"  # Prefect's server has one credential, `user:password`
LOCKER = "genie_lock"  # the nights' role: advisory locks and the holders table of database genie, nothing else


def private(path: Path, text: str) -> None:
    """Written readable by its owner only, from the first byte, into a file beside it that then replaces it: a
    crash leaves the old file or the new one, never an empty one (which would lock the team out)."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: 0600
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of `password` (RFC 5802, as libpq's PQencryptPasswordConn makes it),
    computed here: a role's password reaches the server only as this, never as plain text a log could keep."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


class Secrets:
    def __init__(self, folder: Path):
        self.folder = folder

    @property
    def file(self) -> Path:
        return self.folder / "stack.ini"

    def exists(self) -> bool:
        return self.file.is_file()

    def _read(self) -> configparser.ConfigParser:
        config = configparser.ConfigParser(interpolation=None)
        if not config.read(self.file):
            raise RuntimeError(f"{self.file}: not found; `genie stack up` makes it")
        return config

    def _write(self, config: configparser.ConfigParser) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        lines: list[str] = []
        for section in config.sections():
            lines += [f"[{section}]", *(f"{k} = {v}" for k, v in config[section].items()), ""]
        private(self.file, "# genie stack: generated passwords, readable by this user only\n" + "\n".join(lines))

    def create(self) -> None:
        """Every server's password, once: an existing file is kept (its passwords are already in the databases)."""
        if self.exists():
            return
        config = configparser.ConfigParser(interpolation=None)
        config["passwords"] = {key: secrets.token_urlsafe(24) for key in GENERATED}
        self._write(config)

    def password(self, key: str) -> str:
        return self._read()["passwords"][key]

    def prefect_auth(self) -> str:
        return f"{PREFECT_USER}:{self.password('prefect')}"

    def mlflow_auth_config(self, database_uri: str) -> Path:
        """The `[mlflow]` section of MLflow's auth app (its users and permissions in `database_uri`); the file is
        the one MLFLOW_AUTH_CONFIG_PATH names, so its admin password is written nowhere else."""
        config = self._read()
        config["mlflow"] = {"default_permission": "READ", "database_uri": database_uri,
                            "admin_username": MLFLOW_ADMIN, "admin_password": self.password("mlflow.admin"),
                            "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth"}
        self._write(config)
        return self.file

    @contextmanager
    def password_file(self, key: str, readable_by: str | None = None):
        """A file holding one password, for a tool that reads it from a file (initdb), removed after; chowned to
        `readable_by` where that system user runs the tool."""
        handle, name = tempfile.mkstemp(dir=self.folder, prefix=".password-")
        path = Path(name)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(self.password(key) + "\n")
            if readable_by:
                owner = pwd.getpwnam(readable_by)
                self.folder.chmod(0o711)  # the tool reaches the file by name, lists nothing
                os.chown(path, owner.pw_uid, owner.pw_gid)
            yield path
        finally:
            path.unlink(missing_ok=True)
            self.folder.chmod(0o700)

    # -- members ---------------------------------------------------------------------------------------------------
    def member_file(self, name: str) -> Path:
        return self.folder / "members" / f"{name}.env"

    def write_member(self, name: str, environment: dict[str, str]) -> Path:
        path = self.member_file(name)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        private(path, f"# genie-flow: {name}'s credentials for the team's servers; source it (. {path.name})\n"
                + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in environment.items()))
        return path

    def member_environment(self, name: str) -> dict[str, str]:
        path = self.member_file(name)
        if not path.is_file():
            raise RuntimeError(f"no member {name!r} in {path.parent} (`genie stack user add {name} --role ...`)")
        pairs = (shlex.split(line.removeprefix("export "))[0].split("=", 1)
                 for line in path.read_text().splitlines() if line.startswith("export "))
        return dict(pairs)

    def remove_member(self, name: str) -> None:
        self.member_file(name).unlink(missing_ok=True)

    def members(self) -> dict[str, str]:
        """Each member's role."""
        return {path.stem: self.member_environment(path.stem).get("GENIE_ROLE", "?")
                for path in sorted((self.folder / "members").glob("*.env"))}
