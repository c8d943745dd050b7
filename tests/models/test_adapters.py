"""Per-class adapters: trained on one class's images with the generator frozen, saved in diffusers' formats, and
loaded back through diffusers' own loaders into a fresh pipeline, where they change what the class's prompt makes."""
import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from models.adapters import LORA_FILE, TOKEN_FILE, AdapterError, load_adapter, save_adapter, token_for, train_adapter
from models.config import AdapterConfig
from models.engine import Engine
from tests.models.tiny_ldm import PROMPTS, WORDS

PROMPT = "a photo of a {name}."
QUICK = AdapterConfig(steps=3, batch_size=4, lr=5e-2, rank=2, min_images=3)


def sample(pipeline, prompt: str) -> np.ndarray:
    pipeline.set_progress_bar_config(disable=True)
    image = pipeline(prompt, num_inference_steps=3, guidance_scale=2.0, height=pipeline.vae.config.sample_size,
                     width=pipeline.vae.config.sample_size, generator=torch.Generator().manual_seed(0)).images[0]
    return np.asarray(image, dtype=int)


@pytest.mark.parametrize("kind", ["textual-inversion", "lora"])
def test_an_adapter_of_the_embedded_generator_loads_back_through_diffusers(embedded, digits, tmp_path, kind):
    model, _ = embedded
    threes = sorted((digits / "3").glob("*.png"))[:6]  # a class the tiny generator never saw
    trained = StableDiffusionPipeline.from_pretrained(str(model))
    before = {name: p.detach().clone() for name, p in trained.unet.named_parameters()}
    rows = trained.text_encoder.get_input_embeddings().weight.detach().clone()
    adapter = train_adapter(trained, threes, "3", "three", PROMPT, kind, QUICK, progress=False)
    assert adapter.token == "<3>" and adapter.embedding.shape == (1, rows.shape[1])
    after = trained.text_encoder.get_input_embeddings().weight
    assert torch.equal(after[: len(rows)], rows)  # only the class's new token learnt
    assert all(torch.equal(p, before[name]) for name, p in trained.unet.named_parameters() if name in before)
    save_adapter(adapter, tmp_path / "three", {"base": "tiny"})
    assert set(load_file(tmp_path / "three" / TOKEN_FILE)) == {"<3>"}
    assert (tmp_path / "three" / LORA_FILE).is_file() == (kind == "lora")

    fresh = StableDiffusionPipeline.from_pretrained(str(model))
    plain = sample(fresh, PROMPT.format(name="<3>"))  # unknown to it: the characters' tokens
    assert load_adapter(fresh, tmp_path / "three") == ("3", "<3>")
    adapted = sample(fresh, PROMPT.format(name="<3>"))
    assert np.abs(adapted - plain).max() > 0
    assert np.array_equal(adapted, sample(trained, PROMPT.format(name="<3>")))  # what it learnt, loaded whole
    assert np.array_equal(sample(fresh, PROMPTS[0]), sample(StableDiffusionPipeline.from_pretrained(str(model)),
                                                                PROMPTS[0])) == (kind == "textual-inversion")


def test_the_engine_applies_each_class_lora_to_its_own_prompts_only(embedded, digits, tmp_path):
    model, _ = embedded
    pipeline = StableDiffusionPipeline.from_pretrained(str(model))
    adapter = train_adapter(pipeline, sorted((digits / "3").glob("*.png"))[:4], "3", "three", PROMPT, "lora", QUICK,
                            progress=False)
    save_adapter(adapter, tmp_path / "three", {})
    engine = Engine(str(model), steps=3, guidance=2.0, adapters=(str(tmp_path / "three"), str(tmp_path / "missing")))
    assert engine.adapted == {"3": "<3>"} and engine.loras == {"3"}
    assert len(engine.refused) == 1 and engine.refused[0].startswith(f"adapter {tmp_path / 'missing'}/adapter.json")
    three, zero = PROMPT.format(name="<3>"), PROMPTS[0]
    mixed = engine.sample([three, zero], [1, 2]).images
    base = Engine(str(model), steps=3, guidance=2.0)
    assert np.array_equal(np.asarray(mixed[1]), np.asarray(base.sample([zero], [2]).images[0]))  # no LoRA for a zero
    assert np.array_equal(np.asarray(mixed[0]), np.asarray(engine.sample([three], [1]).images[0]))
    assert not np.array_equal(np.asarray(mixed[0]), np.asarray(base.sample([three], [1]).images[0]))


def test_a_lora_adapter_of_the_sd15_layout_loads_with_diffusers_own_calls(digits, tmp_path):
    """The real checkpoint's code path: the SD 1.5 block layout (tiny widths, random weights)."""
    from models.architectures import sd15_pipeline

    sd15_pipeline("tiny", 64, WORDS + ["three"], tmp_path / "tokenizer").save_pretrained(tmp_path / "sd15")
    pipeline = StableDiffusionPipeline.from_pretrained(str(tmp_path / "sd15"))
    cfg = AdapterConfig(steps=2, batch_size=2, lr=5e-2, rank=2, min_images=3)
    adapter = train_adapter(pipeline, sorted((digits / "3").glob("*.png"))[:3], "3", "three", PROMPT, "lora", cfg,
                            progress=False)
    save_adapter(adapter, tmp_path / "three", {})
    fresh = StableDiffusionPipeline.from_pretrained(str(tmp_path / "sd15"))
    plain = sample(fresh, PROMPT.format(name="three"))
    fresh.load_textual_inversion(str(tmp_path / "three" / TOKEN_FILE))  # no genie-flow code: diffusers alone
    fresh.load_lora_weights(str(tmp_path / "three"))
    assert np.abs(sample(fresh, PROMPT.format(name="three")) - plain).max() > 0  # the LoRA acts on every prompt
    assert np.array_equal(sample(fresh, PROMPT.format(name="<3>")), sample(pipeline, PROMPT.format(name="<3>")))


def test_too_few_images_or_a_broken_file_is_one_line_naming_it(embedded, digits, tmp_path):
    model, _ = embedded
    pipeline = StableDiffusionPipeline.from_pretrained(str(model))
    with pytest.raises(AdapterError, match=r"^class 3: 2 train images, fewer than generator.adapter.min_images \(3\)"):
        train_adapter(pipeline, sorted((digits / "3").glob("*.png"))[:2], "3", "three", PROMPT, "lora", QUICK)
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "adapter.json").write_text(json.dumps({"label": "3", "token": token_for("3")}))
    (folder / TOKEN_FILE).write_bytes(b"not safetensors")
    with pytest.raises(AdapterError, match=f"^adapter {folder}: does not load into this generator"):
        load_adapter(Engine(str(model), steps=2).img2img, folder)
    wider = tmp_path / "wider"  # made for another base model: the token's width does not fit this text encoder
    folder.joinpath(TOKEN_FILE).unlink()
    from safetensors.torch import save_file

    save_file({"<3>": torch.zeros(1, 768)}, folder / TOKEN_FILE)
    folder.rename(wider)
    with pytest.raises(AdapterError, match=f"^adapter {wider}: does not load into this generator"):
        load_adapter(StableDiffusionPipeline.from_pretrained(str(model)), wider)
