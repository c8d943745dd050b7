"""What keys a step: digests of its (small) inputs, of labelled images by content, and of the code a step's module
runs (its project imports followed), so that a step's cache survives edits to code it does not use."""
from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import asdict, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from models.digests import file_digest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("flows", "models", "tasks")  # the project's own code


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
