"""The project's import graph, read from the code (every import at any depth, and modules imported by name): no
circle, and each layer imports only from those below it (models < tasks < flows; the servers' supervision below the
other flows; the generation methods import nothing of the project above their registry)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "models", "tasks")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def owner(name: str) -> str | None:
    """The project module `name` is or lies in (`from models.x import y` names models.x or models.x.y)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)  # importlib.import_module("models.x"): an import all the same
    return {found for name in names if name.split(".")[0] in PACKAGES and (found := owner(name))}


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    if module.startswith("models.methods."):
        return 0  # a method: the registry and what lies below it only
    if module == "models.methods":
        return 1
    if module.startswith("flows.servers") or module == "flows.environment":
        return 4
    return {"models": 2, "tasks": 3, "flows": 5}[module.split(".")[0]]


def test_no_import_circle():
    assert len(GRAPH) > 50 and sum(map(len, GRAPH.values())) > 200  # the graph was read
    assert circles() == []


def test_each_layer_imports_only_below_it():
    upward = sorted((a, b) for a, targets in GRAPH.items() for b in targets
                    if layer(b) > layer(a) and not (a.startswith("models.methods.") and b == "models.methods"))
    assert upward == []


def test_the_configuration_schema_is_a_leaf():
    """models.config imports nothing of the project: every step reads it, so its code digest stays that of the schema
    (the method names are checked as params.yaml is read, by models.params)."""
    assert GRAPH["models.config"] == set() and "models.methods" in GRAPH["models.params"]
