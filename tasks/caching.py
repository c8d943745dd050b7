"""The steps' protocol: Prefect tasks cached by content (tasks/keys.py: digests of their inputs and code, never of big
objects), the files each one wrote with their digests, and one check that a cache hit's files are still whole."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from tqdm.auto import tqdm

from models.digests import file_digest
from models.locks import partial_path
from tasks.keys import code_digest, digest

# How this machine runs a step (torch threads and kernels), not what the step is given: in no key, like the
# runner's worker count. A changed thread count may change the last bits of what a step makes; what is
# cached for the same inputs is reused rather than made again.
UNKEYED = ("runtime",)


def _keyed(parameters: dict[str, Any], *left_out: str) -> dict[str, Any]:
    return {k: v for k, v in parameters.items() if k not in (*UNKEYED, *left_out)}


def cache_key(context, parameters: dict[str, Any]) -> str:
    return f"{context.task.name}-{digest(_keyed(parameters), code_digest(context.task.fn.__module__))}"


def cached_task(fn=None, **options):
    """A Prefect task whose cache key is its (small) inputs plus the code its module runs."""
    options = {"cache_key_fn": cache_key, "persist_result": True, **options}
    return task(fn, **options) if fn else lambda f: task(f, **options)


@dataclass(frozen=True)
class Outputs:
    """Files a step wrote (role -> path) with their digests at write time, and small facts."""

    files: dict[str, str]
    digests: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, info: dict[str, Any] | None = None, **files: Path) -> Outputs:
        paths = {role: Path(p).as_posix() for role, p in files.items()}
        return cls(paths, {role: file_digest(p) for role, p in paths.items()}, info or {})

    def __getitem__(self, role: str) -> Path:
        return Path(self.files[role])

    def intact(self) -> bool:
        """Every file still exists with the bytes this step wrote."""
        return all(Path(p).is_file() and file_digest(p) == self.digests[r] for r, p in self.files.items())

    def publish(self, source: Path, view: Path) -> None:
        """Copy the files under `source` to the same places under `view`, each replaced whole."""
        for role, path in self.files.items():
            target = view / Path(path).relative_to(source)
            if target.is_file() and file_digest(target) == self.digests[role]:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = partial_path(target)
            shutil.copyfile(path, partial)
            partial.replace(target)


def keyed_folder(step, view: Path, parameters: dict[str, Any]) -> Path:
    """Where a step writes for these inputs: a folder named by them and by the code it runs, beside `view`."""
    key = digest(_keyed(parameters, "out_dir"), code_digest(step.fn.__module__))
    return view.parent / ".store" / view.name / key[:16]


def run_verified(step, step_log: dict[str, str], label: str | None = None, view: Path | None = None,
                 **parameters) -> Outputs:
    """Run a cached step and note in `step_log[label]` whether it ran or came from the cache.

    With `view`, the step writes into a folder named by its inputs, so no run with other inputs
    overwrites what it cached and earlier inputs find their outputs again; its files are then
    copied to `view`, the fixed place dvc.yaml and people look at. A cache hit whose files were
    since deleted or overwritten is run again.
    """
    if view is not None:
        parameters["out_dir"] = keyed_folder(step, Path(view), parameters)
    outputs = _checked(step, lambda s: s(**parameters, return_state=True), step_log, label or step.name)
    if view is not None:
        outputs.publish(parameters["out_dir"], Path(view))
        os.utime(parameters["out_dir"])  # used tonight, hit or not: gc keeps what the nights it keeps used
    return outputs


def run_verified_all(step, step_log: dict[str, str], labels: list[str], calls: list[dict[str, Any]],
                     parallel: bool = False) -> list[Outputs]:
    """run_verified over many calls; `parallel` submits them all to the flow's task runner (e.g. Dask)."""
    if not parallel:  # a bar for many calls; TQDM_DISABLE switches it off (an explicit disable would not)
        with tqdm(total=len(calls), desc=step.name, unit="task", **({"disable": True} if len(calls) < 2 else {})) as bar:
            results = []
            for label, params in zip(labels, calls):
                results.append(run_verified(step, step_log, label, **params))
                bar.update()
            return results
    futures = [step.submit(**params) for params in calls]
    return [_checked(step, lambda s, first=future, params=params: _finished(first if s is step else s.submit(**params)),
                     step_log, label) for future, params, label in zip(futures, calls, labels)]


def _checked(step, run, step_log: dict[str, str], label: str) -> Outputs:
    """`run(step)`'s outputs, noted in `step_log[label]` as ran or cached; a cache hit whose files were since deleted
    or overwritten is run again (`run` of the step with its cache refreshed)."""
    state = run(step)
    outputs = state.result()
    if not outputs.intact():
        state = run(step.with_options(refresh_cache=True))
        outputs = state.result()
    step_log[label] = "cached" if state.name == "Cached" else "ran"
    return outputs


def _finished(future):
    future.wait()
    return future.state
