"""Content-keyed caching: Prefect cache keys from digests, config and code, never from big objects."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel
from tqdm.auto import tqdm

from models.digests import file_digest

PACKAGES = ("models", "tasks")  # the code whose change invalidates cached results


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return value.as_posix()
    if is_dataclass(value):
        return asdict(value)
    raise TypeError(f"cannot key a cache on {type(value).__name__}; pass paths and digests")


def digest(*parts: Any) -> str:
    """sha256 of JSON-encoded parts (config models and paths allowed)."""
    text = json.dumps(parts, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()


@lru_cache(maxsize=1)
def code_digest() -> str:
    root = Path(__file__).resolve().parent.parent
    sha = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            sha.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()


def content_key(context, parameters: dict[str, Any]) -> str:
    return f"{context.task.name}-{digest(parameters, code_digest())}"


def cached_task(fn=None, **options):
    """A Prefect task whose cache key is its (small) inputs plus the project code."""
    options = {"cache_key_fn": content_key, "persist_result": True, **options}
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


def run_verified(step, steps: dict[str, str], label: str | None = None, **parameters) -> Outputs:
    """Run a cached step and note in `steps[label]` whether it ran or came from the cache.

    A cache hit whose files were since deleted or overwritten is run again.
    """
    state = step(**parameters, return_state=True)
    outputs = state.result()
    if not outputs.intact():
        state = step.with_options(refresh_cache=True)(**parameters, return_state=True)
        outputs = state.result()
    steps[label or step.name] = "cached" if state.name == "Cached" else "ran"
    return outputs


def run_verified_all(step, steps: dict[str, str], labels: list[str], calls: list[dict[str, Any]],
                     parallel: bool = False) -> list[Outputs]:
    """run_verified over many calls; `parallel` submits them all to the flow's task runner (e.g. Dask)."""
    if not parallel:
        bar = tqdm(zip(labels, calls), total=len(calls), desc=step.name, unit="task", disable=len(calls) < 2)
        return [run_verified(step, steps, label, **params) for label, params in bar]
    futures = [step.submit(**params) for params in calls]
    results = [future.result() for future in futures]
    for i, (future, outputs) in enumerate(zip(futures, results)):
        state = future.state
        if not outputs.intact():
            future = step.with_options(refresh_cache=True).submit(**calls[i])
            results[i], state = future.result(), future.state
        steps[labels[i]] = "cached" if state.name == "Cached" else "ran"
    return results
