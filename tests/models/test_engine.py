"""The engine: any diffusers Stable Diffusion pipeline through from_pretrained, and GeNIe-Ada's choice."""
import numpy as np
import pytest
from PIL import Image

from models.engine import Engine, EngineError
from tests.models.tiny_ldm import PROMPTS


def test_engine_edits_with_a_seed_per_edit(embedded):
    folder, paths = embedded
    engine = Engine(str(folder), steps=10)
    sources = [Image.open(p) for p in paths[:3]]
    alone = engine.edit(sources[:1], PROMPTS[1:2], 0.8, [7]).images[0]
    batch = engine.edit(sources, [PROMPTS[1]] * 3, 0.8, [7, 8, 9])
    assert batch.unet_evals == 3 * 8 * 2  # int(10 * 0.8) steps, classifier-free guidance doubles
    difference = np.abs(np.asarray(alone, dtype=int) - np.asarray(batch.images[0], dtype=int))
    assert difference.max() <= 2  # the same image whatever shares its batch (up to float rounding)
    assert not np.array_equal(np.asarray(batch.images[0]), np.asarray(batch.images[1]))
    samples = engine.sample(PROMPTS[:2], [1, 2])
    assert [im.size for im in samples.images] == [(32, 32)] * 2 and samples.unet_evals == 2 * 10 * 2
    with pytest.raises(EngineError, match=r"noise ratio 1.5 outside \(0, 1\]"):
        engine.edit(sources[:1], PROMPTS[:1], 1.5, [0])


def test_bad_model_paths_say_what_is_wrong(tmp_path):
    with pytest.raises(EngineError, match="folder not found"):
        Engine(str(tmp_path / "missing" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError, match="not a diffusers pipeline folder"):
        Engine(str(tmp_path / "empty"))




def test_pickled_weights_load_only_when_allowed(tmp_path):
    from models.architectures import sd15_pipeline
    from tests.models.tiny_ldm import WORDS

    sd15_pipeline("tiny", 64, WORDS, tmp_path / "tokenizer").save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert list((tmp_path / "bin" / "unet").glob("*.bin")) and not list((tmp_path / "bin" / "unet").glob("*.safetensors"))
    with pytest.raises(EngineError, match=r"no safetensors weights; .* generator.allow_pickle: true"):
        Engine(str(tmp_path / "bin"), steps=2)
    assert Engine(str(tmp_path / "bin"), steps=2, allow_pickle=True).size == 64


def test_probe_is_the_samplers_own_one_step_estimate(tmp_path):
    """Where an edit takes a single sampler step (int(10 * 0.1) = 1) that step lands on the clean-latent
    estimate: the probe must give the same image. Candidates come out edit-major, one UNet call for all."""
    from models.architectures import sd15_pipeline
    from tests.models.tiny_ldm import WORDS

    sd15_pipeline("tiny", 64, WORDS, tmp_path / "tokenizer").save_pretrained(tmp_path / "sd15")
    engine = Engine(str(tmp_path / "sd15"), steps=10)
    rng = np.random.default_rng(0)
    sources = [Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)) for _ in range(2)]
    full = engine.edit(sources, PROMPTS[:2], 0.1, [3, 4])
    probe = engine.probe(sources, PROMPTS[:2], [0.1, 0.6], [3, 4])
    assert len(probe.images) == 4 and probe.unet_evals == 2 * 2 * 2  # 2 edits x 2 ratios, guidance doubles
    for j in range(2):
        one_step = np.asarray(probe.images[2 * j], dtype=int)
        assert np.abs(np.asarray(full.images[j], dtype=int) - one_step).max() <= 2
        assert np.abs(np.asarray(probe.images[2 * j + 1], dtype=int) - one_step).max() > 20  # more noise, other look


@pytest.mark.nights
def test_compiled_unet_edits_like_the_plain_one(tmp_path):
    """generator.compile: torch.compile's UNet (here on the CPU) gives the same edit as the plain UNet."""
    from models.architectures import sd15_pipeline
    from tests.models.tiny_ldm import WORDS

    sd15_pipeline("tiny", 64, WORDS, tmp_path / "tokenizer").save_pretrained(tmp_path / "sd15")
    source = [Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8))]
    plain = Engine(str(tmp_path / "sd15"), steps=4).edit(source, PROMPTS[:1], 0.5, [5]).images[0]
    compiled = Engine(str(tmp_path / "sd15"), steps=4, compile=True)
    assert type(compiled.img2img.unet).__name__ == "OptimizedModule"
    image = compiled.edit(source, PROMPTS[:1], 0.5, [5]).images[0]
    assert np.abs(np.asarray(image, dtype=int) - np.asarray(plain, dtype=int)).max() <= 2
