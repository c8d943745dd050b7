"""DVC without re-reading what did not change: md5s from DVC's own state, no `dvc add` when nothing changed."""
import subprocess

from models.dataset import export_digits
from tasks import versioning


def test_a_dataset_is_added_once_and_hashed_from_dvcs_state(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    export_digits(tmp_path / "data" / "digits")
    calls = []
    real = versioning.dvc
    monkeypatch.setattr(versioning, "dvc", lambda *args, **kw: calls.append(args[0]) or real(*args, **kw))
    md5, pointer = versioning.track(versioning.Path("data"), tmp_path)
    assert calls == ["init", "add"] and (tmp_path / pointer).is_file()

    opened = []
    monkeypatch.setattr("builtins.open", lambda path, *a, **kw: opened.append(str(path)) or _open(path, *a, **kw))
    assert versioning.track(versioning.Path("data"), tmp_path) == (md5, pointer)
    assert calls == ["init", "add"]  # nothing changed: no second `dvc add`
    assert not [p for p in opened if p.endswith(".png")]  # and no image read again: DVC's state knew them

    image = next((tmp_path / "data" / "digits" / "3").glob("*.png"))
    image.write_bytes(next((tmp_path / "data" / "digits" / "4").glob("*.png")).read_bytes())
    assert versioning.track(versioning.Path("data"), tmp_path)[0] != md5 and calls == ["init", "add", "add"]


_open = open
