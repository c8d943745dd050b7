"""Content-keyed caching: Prefect cache keys from digests, config and code, never from big objects."""
from __future__ import annotations

import ast
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel
from tqdm.auto import tqdm

from models.digests import file_digest
from models.locks import partial_path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("flows", "models", "tasks")  # the project's own code
# How this machine runs a step (torch threads and kernels), not what the step is given: in no key, like the
# runner's worker count. A changed thread count may change the last bits of what a step makes; what is
# cached for the same inputs is reused rather than made again.
UNKEYED = ("runtime",)


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


def images_digest(images: list[tuple[str, ...]]) -> str:
    """Digest of labelled image files by content: (path, label, ...) rows, order-free; 32 hex digits, like
    DVC's md5 (MLflow takes at most 36 for a dataset's digest)."""
    return digest(sorted([file_digest(path), *rest] for path, *rest in images))[:32]


def _module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _project_imports(path: Path) -> set[str]:
    """Project modules a file imports, at any depth of its code (lazy imports included)."""
    found, text = set(), path.read_text()
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import name` may name a submodule
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    if path.name == "__init__.py" and "iter_modules(__path__)" in text:  # a registry: all its modules
        found |= {f"{path.parent.relative_to(ROOT).as_posix().replace('/', '.')}.{m.stem}"
                  for m in path.parent.glob("*.py") if m.stem != "__init__"}
    return {name for name in found if name.split(".")[0] in PACKAGES and _module_file(name)}


@lru_cache(maxsize=None)
def module_closure(module: str) -> tuple[str, ...]:
    """The project files a module runs: itself and its project imports, followed transitively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _project_imports(_module_file(name))
    return tuple(sorted(_module_file(name).relative_to(ROOT).as_posix() for name in seen))


@lru_cache(maxsize=None)
def code_digest(module: str) -> str:
    """Digest of the code a module runs: a step's cache survives edits to code it does not use."""
    sha = hashlib.sha256()
    for relative in module_closure(module):
        sha.update(relative.encode() + b"\0" + (ROOT / relative).read_bytes())
    return sha.hexdigest()


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
    state = step(**parameters, return_state=True)
    outputs = state.result()
    if not outputs.intact():
        state = step.with_options(refresh_cache=True)(**parameters, return_state=True)
        outputs = state.result()
    step_log[label or step.name] = "cached" if state.name == "Cached" else "ran"
    if view is not None:
        outputs.publish(parameters["out_dir"], Path(view))
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
    results = [future.result() for future in futures]
    for i, (future, outputs) in enumerate(zip(futures, results)):
        state = future.state
        if not outputs.intact():
            future = step.with_options(refresh_cache=True).submit(**calls[i])
            results[i], state = future.result(), future.state
        step_log[labels[i]] = "cached" if state.name == "Cached" else "ran"
    return results
