"""The environment every genie process starts from, the one list: telemetry off, Prefect's results and MLflow's
store in the project unless the variables name others. A value already set wins. Nothing here imports Prefect,
MLflow or DVC, which read some of these at import."""
from __future__ import annotations

import os
from pathlib import Path

QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
         "DVC_NO_ANALYTICS": "1"}


def defaults(root: Path = Path(".")) -> dict[str, str]:
    root = root.resolve()
    return QUIET | {"PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / ".genie" / "prefect-results"),
                    "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
                    # the temporary server's start on a busy machine (its database is migrated before: local_server)
                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}


def use_defaults(root: Path = Path(".")) -> None:
    """Once per process, before a command imports Prefect: MLflow then reads its store from the environment on
    every call, so nothing sets it again."""
    for key, value in defaults(root).items():
        os.environ.setdefault(key, value)
