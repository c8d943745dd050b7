"""The generation methods' registry: one module per method, read by the configuration, the CLI and the runner."""
import pytest

from models import methods
from models.benchmarks.episodes import Variant, variants
from models.config import GenieConfig
from models.editing import Edit
from models.params import load_settings

BUILT_IN = ["img2img", "txt2img", "genie", "genie-ada"]


def test_user_methods_simplest_first_and_steps_hidden():
    names = methods.names()
    assert [name for name in names if name in BUILT_IN] == BUILT_IN and "ada-probe" not in names
    rank = [(("own", "none", "other").index(methods.get(n).source), ("none", "given", "chosen").index(methods.get(n).ratio))
            for n in names]
    assert rank == sorted(rank)  # a class's own images, then noise, then hard negatives at a given r, a chosen r
    assert "ada-probe" in methods.names(internal=True)
    for name in ("ada-probe", "nope"):
        with pytest.raises(ValueError, match=rf"unknown method '.*' \(choose from {', '.join(names)}\)$"):
            methods.get(name)
    assert methods.get("ada-probe", internal=True).internal


def test_each_method_declares_its_source_ratio_and_label():
    genie = GenieConfig(noise_ratio=0.6, ada_ratios=(0.5, 0.7), img2img_ratios=(0.4, 0.9))
    assert {m: methods.get(m).ratios(genie) for m in BUILT_IN} == {
        "img2img": (0.4, 0.9), "txt2img": (None,), "genie": (0.6,), "genie-ada": (None,)}
    assert methods.get("genie").ratios(genie, sweep=True) == (0.5, 0.7)
    made = {m: Edit.make("data/3/a.png", "3", "5", m, 0.6, 0) for m in BUILT_IN}
    assert made["img2img"].label == "3" and made["genie"].label == made["genie-ada"].label == "5"
    assert made["txt2img"].source == "" and made["genie-ada"].ratio is None and made["genie"].ratio == 0.6


def test_variants_have_one_spelling_and_typed_fields():
    fast, filtered = Variant.parse("genie-ada-fast"), Variant.parse("genie+filter", 0.8)
    assert (fast.method, fast.mode, fast.label) == ("genie-ada", "fast", "genie-ada-fast")
    assert (filtered.method, filtered.filter, filtered.label) == ("genie", True, "genie+filter r=0.8")
    assert Variant.of_label("genie+filter r=0.8") == filtered and Variant.of_label("real") == Variant("real")
    plan = variants(("none", "img2img", "genie-ada-fast"), GenieConfig(img2img_ratios=(0.3, 0.7)))
    assert [v.label for v in plan] == ["none", "img2img r=0.3", "img2img r=0.7", "genie-ada-fast"]
    assert [v.hard_negative for v in plan] == [False, False, False, True]


class Mirror(methods.Method):
    """A baseline made for this test: the source mirrored, no diffusion at all."""

    name, summary, source, ratio = "mirror", "the class's own image, mirrored", "own", "none"

    def make(self, runner, edits, ratio):
        from PIL import ImageOps

        return [(ImageOps.mirror(image), None, [], 0) for image in runner.sources(edits)]


@pytest.fixture
def mirror():
    methods.register(Mirror)
    yield
    del methods._REGISTRY["mirror"]


def test_a_registered_method_is_offered_everywhere_that_lists_methods(mirror, tmp_path, digits):
    from types import SimpleNamespace

    from models.editing import EditRunner

    settings = load_settings(tmp_path / "absent.yaml", ["select.method=mirror"])
    assert settings.select.method == "mirror"
    assert "mirror" in settings.benchmark.few_shot.methods and "mirror" in settings.benchmark.long_tail.methods
    source = str(sorted((digits / "4").glob("*.png"))[0])
    engine = SimpleNamespace(identity="none", steps=1, guidance=1.0, model="none")  # the method never calls it
    runner = EditRunner(engine, tmp_path / "out", str)
    stats = runner.run([Edit.make(source, "4", "4", "mirror", None, 0)], progress=False)
    assert stats["generated"] == 1 and runner.manifest()["method"].tolist() == ["mirror"]
