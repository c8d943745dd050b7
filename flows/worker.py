"""`genie worker`: Prefect's process worker that runs genie's own nights and nothing else.

Prefect's open-source server has one shared credential, so whoever holds it can create a deployment in the pool,
and a process worker runs what a deployment says, pull steps (shell commands) included, before any flow code.
This worker checks each flow run before it starts anything: the deployment's entrypoint is genie's night, it has
no pull steps, neither it nor the run overrides the job's variables, the pool's job template is Prefect's own
process template (whose command and environment a pool admin could otherwise change), and the run's parameters
are data: a params file inside the project, overrides of what a night learns only (models/params.py). Anything
else is cancelled with a log line naming the deployment and why; nothing of it runs."""
from __future__ import annotations

import os
from pathlib import Path

from prefect.workers.process import ProcessWorker, ProcessWorkerResult

from flows.automations import HEARTBEAT
from models.params import refused_parameters

ENTRYPOINT = "flows.pipeline.genie_nightly"  # as `genie deploy` registers it (a module path)


def refusal(deployment, flow_run, work_pool) -> str | None:
    """Why this worker must not run `flow_run`, or None for one of genie's nights."""
    if deployment is None:
        return "it belongs to no deployment"
    if deployment.entrypoint != ENTRYPOINT:
        return f"its entrypoint {deployment.entrypoint!r} is not genie's night ({ENTRYPOINT})"
    if deployment.pull_steps:
        steps = ", ".join(next(iter(step)) for step in deployment.pull_steps)
        return f"it has pull steps ({steps}), which genie's deployments never have"
    variables = {**(deployment.job_variables or {}), **(getattr(flow_run, "job_variables", None) or {})}
    if variables:
        return f"it sets job variables ({', '.join(variables)})"
    if work_pool.base_job_template != ProcessWorker.get_default_base_job_template():
        return f"the pool {work_pool.name!r} has a changed job template (its command or environment)"
    parameters = getattr(flow_run, "parameters", None) or {}
    return refused_parameters(str(parameters.get("params", "params.yaml")), list(parameters.get("overrides") or []),
                              Path(os.environ.get("GENIE_PROJECT", ".")))


class GenieWorker(ProcessWorker):
    async def run(self, flow_run, configuration, task_status=None):
        deployment = await self.client.read_deployment(flow_run.deployment_id) if flow_run.deployment_id else None
        why = refusal(deployment, flow_run, self.work_pool)
        if why is None:
            return await super().run(flow_run, configuration, task_status)
        name = deployment.name if deployment else "none"
        self._logger.error(f"refused flow run {flow_run.name!r} of deployment {name!r}: {why}")
        await self._mark_flow_run_as_cancelled(flow_run, state_updates={"message": f"refused by genie worker: {why}"})
        if task_status is not None:
            task_status.started(RuntimeError(why))  # not started: its concurrency slot is freed
        return ProcessWorkerResult(identifier="refused", status_code=0)


async def work(pool: str, project: Path, run_once: bool = False, name: str | None = None) -> None:
    os.environ["GENIE_PROJECT"] = str(project.resolve())  # each night runs in this machine's project folder
    # each night beats, so that one whose machine is lost is marked Crashed and announced (flows/automations.py)
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT))
    async with GenieWorker(work_pool_name=pool, name=name, create_pool_if_not_found=False) as worker:
        await worker.start(run_once=run_once)
