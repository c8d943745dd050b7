"""The nightly deployment in a process work pool: any machine with genie-flow installed runs it with
`genie worker --pool <pool>` in its project folder; no image and no code storage (the flow is found by its module
path in the installed package)."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from flows.automations import ensure_automations
from models.config import Settings
from models.params import night_overrides


def deploy_nightly(settings: Settings, pool: str, name: str, cron: str | None, params: Path,
                   overrides: list[str], until: str) -> dict:
    """Create the process pool (if absent) and the deployment with its cron; one night of it at a time."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.schedules import Cron

    from flows.pipeline import genie_nightly

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
    with contextlib.redirect_stdout(sys.stderr):  # Prefect's own table of what it deployed: stdout is ours
        deployment_id = genie_nightly.deploy(
            name=name, work_pool_name=pool, build=False, push=False, entrypoint_type=EntrypointType.MODULE_PATH,
            schedule=Cron(cron or settings.schedule.cron, timezone=settings.schedule.timezone),
            parameters={"params": params.as_posix(), "overrides": night_overrides(overrides, params.as_posix(),
                                                                                  Path.cwd()), "until": until},
            tags=["genie-flow", settings.dataset.name], concurrency_limit=1, print_next_steps=False,
            ignore_warnings=True)  # the advice to `serve` for local development: this is for workers elsewhere
    return {"deployment": f"genie-nightly/{name}", "id": str(deployment_id), "pool": pool,
            "cron": cron or settings.schedule.cron, "worker": f"genie worker --pool {pool}",
            "automations": ensure_automations(settings, str(deployment_id), f"genie-nightly/{name}", pool)}
