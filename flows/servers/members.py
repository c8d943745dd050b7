"""The team's members and their roles, kept by the servers themselves (docs/team.md says what enforces each rule):

- reader: MLflow READ on every experiment and registered model; no Prefect credential, no database role;
- worker: MLflow EDIT on every experiment and registered model (runs, versions, aliases); Prefect's credential; the
  nights' database role (the dataset lock);
- admin: an MLflow admin (users, permissions, deletes); Prefect's credential; the nights' database role.

MLflow grants the first two through roles of its own (`genie-reader`, `genie-worker`) on the pattern "*", so a
dataset's experiment or model created later is covered too."""
from __future__ import annotations

import os
import secrets
import warnings
from contextlib import contextmanager
from pathlib import Path

from flows.servers.stack_secrets import LOCKER, MLFLOW_ADMIN

ROLES = ("reader", "worker", "admin")
MLFLOW_PERMISSION = {"reader": "READ", "worker": "EDIT"}  # on experiment "*" and registered_model "*"
WORKSPACE = "default"  # MLflow's one workspace when workspaces are off


@contextmanager
def as_user(name: str, password: str):
    """MLflow's clients read their credentials from the environment on each request."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME=name, MLFLOW_TRACKING_PASSWORD=password)
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


def _admin(stack):
    with warnings.catch_warnings():  # the auth client imports MLflow's server, which warns of its own imports
        warnings.simplefilter("ignore")
        from mlflow.server.auth.client import AuthServiceClient

    return AuthServiceClient(stack.urls()["MLFLOW_TRACKING_URI"]), as_user(
        MLFLOW_ADMIN, stack.secrets.password("mlflow.admin"))


def _mlflow_roles(client) -> dict[str, int]:
    return {role.name: role.id for role in client.list_roles(WORKSPACE)}


def ensure_roles(stack) -> None:
    """MLflow's roles for readers and workers, and the operator's own environment file (an admin), once."""
    client, admin = _admin(stack)
    with admin:
        present = _mlflow_roles(client)
        for role, permission in MLFLOW_PERMISSION.items():
            if f"genie-{role}" not in present:
                created = client.create_role(WORKSPACE, f"genie-{role}", f"genie-flow's {role}s")
                for resource in ("experiment", "registered_model"):
                    client.add_role_permission(created.id, resource, "*", permission)
    if not stack.secrets.member_file(MLFLOW_ADMIN).is_file():
        stack.secrets.write_member(MLFLOW_ADMIN, environment(stack, MLFLOW_ADMIN, "admin",
                                                             stack.secrets.password("mlflow.admin")))


def environment(stack, name: str, role: str, password: str) -> dict[str, str]:
    """What a member exports: the MLflow URL and login for all; Prefect's credential and the nights' database
    role only for those who run nights or deployments."""
    env = {"MLFLOW_TRACKING_URI": stack.urls()["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_USERNAME": name,
           "MLFLOW_TRACKING_PASSWORD": password, "GENIE_ROLE": role}
    if role != "reader":
        env |= {"PREFECT_API_URL": stack.urls()["PREFECT_API_URL"],
                "PREFECT_API_AUTH_STRING": stack.secrets.prefect_auth(),
                "GENIE_DATABASE_URL": stack.database_url("genie", role=LOCKER)}
    return env


def add(stack, name: str, role: str) -> Path:
    """A new MLflow user with the role's grants and a generated password; returns the member's environment file."""
    if role not in ROLES:
        raise ValueError(f"--role {role!r}: one of {', '.join(ROLES)}")
    if stack.secrets.member_file(name).is_file():
        raise ValueError(f"member {name!r} exists ({stack.secrets.member_file(name)}); remove them first")
    password = secrets.token_urlsafe(18)
    client, admin = _admin(stack)
    with admin:
        client.create_user(name, password)
        if role == "admin":
            client.update_user_admin(name, True)
        else:
            client.assign_role(name, _mlflow_roles(client)[f"genie-{role}"])
    return stack.secrets.write_member(name, environment(stack, name, role, password))


def remove(stack, name: str) -> str:
    """The MLflow user and their environment file. Prefect's credential and the nights' database password are
    shared by workers and admins: a removed one still knows them (docs/team.md: what to do). Returns their role."""
    if name == MLFLOW_ADMIN:
        raise ValueError(f"{name!r} is the stack's own admin; it cannot be removed")
    role = stack.secrets.members().get(name)
    if role is None:
        raise ValueError(f"no member {name!r} (genie stack user list)")
    client, admin = _admin(stack)
    with admin:
        client.delete_user(name)
    stack.secrets.remove_member(name)
    return role
