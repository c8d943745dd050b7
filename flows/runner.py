"""The task runner a flow runs on: in-process, or a Dask cluster for the generation shards."""
from __future__ import annotations

from models.config import Settings


def with_runner(flow, settings: Settings):
    if settings.runner.kind != "dask":
        return flow
    from prefect_dask import DaskTaskRunner

    if settings.runner.dask_address:
        return flow.with_options(task_runner=DaskTaskRunner(address=settings.runner.dask_address))
    from models.determinism import thread_count  # torch only once a cluster is asked for

    # Dask caps a worker's BLAS / OpenMP threads at 1; give it the count the flow's process pins, so float
    # reductions happen in the same order and an edit's bytes do not depend on the runner.
    threads = str(thread_count(settings.runtime))
    return flow.with_options(task_runner=DaskTaskRunner(cluster_kwargs={
        "n_workers": settings.runner.dask_workers, "threads_per_worker": 1, "processes": True,
        "env": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
    }))
