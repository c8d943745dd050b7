import pytest

from models import methods
from models.config import ConfigError, GenieConfig, Settings
from models.params import load_settings, with_methods


def test_defaults_and_params_yaml_are_valid(tmp_path):
    assert load_settings(tmp_path / "absent.yaml") == with_methods(Settings())  # the schema's defaults, lists filled
    settings = load_settings("params.yaml")
    assert settings.dataset.name == "digits"
    assert settings.registered_model == "digits-classifier"


def test_overrides_are_read_as_yaml(tmp_path):
    settings = load_settings(tmp_path / "absent.yaml", ["classifier.epochs=3", "dataset.long_tail.imbalance_ratio=50"])
    assert settings.classifier.epochs == 3
    assert settings.dataset.long_tail.imbalance_ratio == 50
    assert settings.flat()["classifier.epochs"] == 3


@pytest.mark.parametrize(
    "override, message",
    [
        (["classifier.epoch=3"], "classifier.epoch: unknown key"),
        (["classifier.epochs=abc"], "classifier.epochs: Input should be a valid integer"),
        (["classifier.epochs=0"], "classifier.epochs: Input should be greater than or equal to 1"),
        (["dataset.split.val=0.6", "dataset.split.test=0.5"], "dataset.split: val + test"),
        (["epochs"], "expected KEY=VALUE"),
        (["classifier.model.name=x"], "classifier.model: Input should be a valid string"),
        (["classifier.epochs=3", "classifier.epochs.x=1"], "classifier.epochs is not a section"),
        (["select.method=magic"], "select.method: unknown method 'magic' (choose from img2img, txt2img,"),
        (["genie.ada_mode=slow"], "genie.ada_mode: unknown mode 'slow' (choose from fast, exact)"),
        (["benchmark.few_shot.methods=[none, ada-probe]"], "benchmark.few_shot.methods: unknown method 'ada-probe'"),
        (["benchmark.long_tail.methods=[real, none]"], "benchmark.long_tail.methods: unknown method 'none'"),
    ],
)
def test_bad_overrides_name_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path / "absent.yaml", override)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_file_is_named(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("dataset:\n  nmae: x\n")
    with pytest.raises(ConfigError, match=r"params.yaml: dataset.nmae: unknown key"):
        load_settings(bad)
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match=r"params.yaml: not valid YAML"):
        load_settings(bad)


def test_soft_labels_refuse_mixup(tmp_path):
    with pytest.raises(ConfigError, match="finetune.soft_label cannot be combined"):
        load_settings(tmp_path / "absent.yaml", ["finetune.soft_label=0.3", "classifier.augment.mixup=0.2"])


def test_one_default_ratio_per_method():
    genie = GenieConfig(noise_ratio=0.6, img2img_ratios=(0.4, 0.7))
    assert [methods.get(m).default_ratio(genie) for m in ("genie", "img2img", "genie-ada", "txt2img")] == [0.6, 0.4, None, None]
