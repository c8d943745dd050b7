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


def test_two_machines_push_to_one_remote_at_once_and_a_third_pulls_the_same_bytes(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from models.config import DvcRemoteConfig

    remote = DvcRemoteConfig(name="team", url=str(tmp_path / "remote"))
    machines = [tmp_path / name for name in ("a", "b")]
    for machine in machines:  # each its own checkout of the same data, one extra image each
        export_digits(machine / "data" / "digits")
        (machine / "data" / "digits" / "0" / f"only-{machine.name}.png").write_bytes(
            next((machine / "data" / "digits" / "1").glob("*.png")).read_bytes()[:-1] + machine.name.encode())
        versioning.track(versioning.Path("data"), machine)
    with ThreadPoolExecutor(2) as pool:  # two processes of DVC, one per checkout, at the same moment
        assert list(pool.map(lambda m: versioning.push.fn(remote, ["data.dvc"], m), machines)) == [remote.url] * 2
    for machine in machines:
        third = tmp_path / f"fetch-{machine.name}"
        third.mkdir()
        (third / "data.dvc").write_bytes((machine / "data.dvc").read_bytes())
        versioning.dvc("init", "--no-scm", "--quiet", cwd=third)
        versioning.dvc("remote", "add", "--default", "team", remote.url, cwd=third)
        versioning.dvc("pull", cwd=third)
        fetched = sorted(p.relative_to(third) for p in (third / "data").rglob("*.png"))
        assert fetched == sorted(p.relative_to(machine) for p in (machine / "data").rglob("*.png"))
        assert all((third / p).read_bytes() == (machine / p).read_bytes() for p in fetched)
    assert versioning.push.fn(DvcRemoteConfig(), ["data.dvc"], machines[0]) is None  # no remote: nothing pushed
