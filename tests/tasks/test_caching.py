"""Cache keys from content: digests of small inputs, of files, and of the code a step runs."""
from pathlib import Path

import pytest

from models.config import ClassifierConfig
from tasks.caching import Outputs
from tasks.keys import digest, module_closure


def test_digest_takes_config_paths_and_plain_values_only():
    assert digest(ClassifierConfig(), Path("a")) == digest(ClassifierConfig(), Path("a"))
    assert digest(ClassifierConfig(epochs=2)) != digest(ClassifierConfig())
    with pytest.raises(TypeError, match="cannot key a cache on object; pass paths and digests"):
        digest(object())


def test_outputs_notice_a_changed_or_missing_file(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    outputs = Outputs.of({"n": 1}, a=tmp_path / "a.txt")
    assert outputs.intact() and outputs["a"] == tmp_path / "a.txt"
    (tmp_path / "a.txt").write_text("two")
    assert not outputs.intact()
    (tmp_path / "a.txt").unlink()
    assert not outputs.intact()


def test_code_identity_follows_project_imports_transitively():
    editing = module_closure("tasks.editing")
    assert {"tasks/editing.py", "models/editing.py", "models/engine.py", "models/digests.py"} <= set(editing)
    nightly = {path for module in ("tasks.data", "tasks.generator", "tasks.train", "tasks.evaluate", "tasks.selection",
                                   "tasks.editing", "tasks.registry") for path in module_closure(module)}
    assert not any(path.startswith(("flows/", "models/benchmarks/")) for path in nightly)
