"""The embedded diffusion model: its tokenizer, training and the pipeline folder it is saved as."""
from models.embedded_ldm import prompt_words, write_tokenizer
from tests.models.tiny_ldm import WORDS


def test_every_prompt_word_is_one_token(tmp_path):
    tokenizer = write_tokenizer(tmp_path, WORDS + ["seven", "eight", "nine", "three"])
    assert tokenizer.tokenize("a photo of a seven.") == ["a</w>", "photo</w>", "of</w>", "a</w>", "seven</w>", ".</w>"]
    assert (tmp_path / "vocab.json").is_file() and (tmp_path / "merges.txt").read_text().startswith("#version")


def test_saved_model_is_a_standard_pipeline_folder(embedded):
    folder, _ = embedded
    for name in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                 "tokenizer/vocab.json", "tokenizer/merges.txt", "README.md"):
        assert (folder / name).is_file(), name
    assert not folder.with_name("model.partial").exists()


def test_numbers_and_symbols_split_as_clip_splits_them(tmp_path):
    words = prompt_words(["a photo of a 10.", "a photo of a x_y."])
    assert words == [".", "0", "1", "_", "a", "of", "photo", "x", "y"]
    tokenizer = write_tokenizer(tmp_path, words)
    assert tokenizer.tokenize("a photo of a 10.") == ["a</w>", "photo</w>", "of</w>", "a</w>", "1</w>", "0</w>", ".</w>"]


def test_the_embedded_model_trains_on_fewer_images_than_a_batch(digits, tmp_path):
    import numpy as np

    from models.config import EmbeddedLdmConfig
    from models.embedded_ldm import train_ldm
    from tests.models.tiny_ldm import PROMPTS

    paths = [next((digits / c).glob("*.png")) for c in "012"]  # 3 images, batches of 64
    tokenizer = write_tokenizer(tmp_path, WORDS)
    _, stats = train_ldm(paths, [0, 1, 2], PROMPTS, tokenizer,
                         EmbeddedLdmConfig(vae_steps=2, unet_steps=2, batch_size=64), False)
    assert np.isfinite(stats["unet_loss"]) and np.isfinite(stats["vae_mse"])


def test_the_scaling_factor_comes_from_a_bounded_seeded_sample(digits, monkeypatch):
    from types import SimpleNamespace

    import pytest

    from models import embedded_ldm

    encoded = []

    class Identity:  # latents = images: the factor must be 1 / std of the sampled images
        def encode(self, batch):
            encoded.append(len(batch))
            return SimpleNamespace(latent_dist=SimpleNamespace(mean=batch))

    paths = sorted(digits.rglob("*.png"))[:300]
    scaling = embedded_ldm.latent_scaling(Identity(), paths, 32, seed=0)
    assert encoded == [256, 44]  # in chunks
    assert scaling == pytest.approx(1 / float(embedded_ldm.image_batch(paths, 32).std()), rel=1e-5)
    monkeypatch.setattr(embedded_ldm, "SCALING_SAMPLE", 5)
    encoded.clear()
    assert embedded_ldm.latent_scaling(Identity(), paths, 32, seed=0) == embedded_ldm.latent_scaling(
        Identity(), paths, 32, seed=0)
    assert encoded == [5, 5]  # at most SCALING_SAMPLE images, the same ones for a seed


def test_latents_past_the_budget_are_encoded_per_batch(digits, tmp_path, monkeypatch):
    """Kept in memory while they fit LATENT_BUDGET, encoded as each batch is drawn past it: the same steps learn."""
    import numpy as np

    from models import embedded_ldm
    from models.config import EmbeddedLdmConfig
    from tests.models.tiny_ldm import PROMPTS

    paths = [p for c in "012" for p in sorted((digits / c).glob("*.png"))[:6]]
    labels = [int(p.parent.name) for p in paths]
    tokenizer = write_tokenizer(tmp_path, WORDS)
    recipe = EmbeddedLdmConfig(vae_steps=2, unet_steps=3, batch_size=8)
    kept = embedded_ldm.train_ldm(paths, labels, PROMPTS, tokenizer, recipe, False)[1]
    monkeypatch.setattr(embedded_ldm, "LATENT_BUDGET", 0)
    assert embedded_ldm.kept_latents(None, paths, 32, 1.0) is None
    streamed = embedded_ldm.train_ldm(paths, labels, PROMPTS, tokenizer, recipe, False)[1]
    assert np.isfinite(streamed["unet_loss"]) and streamed["vae_mse"] == kept["vae_mse"]  # the same VAE either way
    assert abs(streamed["unet_loss"] - kept["unet_loss"]) < 1e-3 * kept["unet_loss"]  # per batch: the same latents


def test_a_short_budget_encodes_only_the_batches_it_draws(digits, tmp_path, monkeypatch):
    """Keeping every latent pays only when the steps draw more images than there are; with every image in the
    scaling sample they are encoded once for both; the scaling sample is no larger than the steps' draws (>= 256)."""
    from models import embedded_ldm
    from models.config import EmbeddedLdmConfig
    from tests.models.tiny_ldm import PROMPTS

    paths = [p for c in "012" for p in sorted((digits / c).glob("*.png"))[:6]]
    labels = [int(p.parent.name) for p in paths]
    tokenizer = write_tokenizer(tmp_path, WORDS)
    encode, encoded = embedded_ldm._encode, []
    monkeypatch.setattr(embedded_ldm, "_encode", lambda vae, batch, size: encoded.append(len(batch)) or
                        encode(vae, batch, size))
    for steps, expected in ((3, [18]), (1, [18, 8])):  # 3 x 8 draws >= 18 images: kept; 1 x 8: scaling + a batch
        encoded.clear()
        embedded_ldm.train_ldm(paths, labels, PROMPTS, tokenizer, EmbeddedLdmConfig(vae_steps=1, unet_steps=steps,
                                                                                      batch_size=8), False)
        assert encoded == expected
    many = sorted(digits.rglob("*.png"))[:300]  # 1 step of 8 draws from 300: the scaling sample is 256, not all 300
    encoded.clear()
    embedded_ldm.train_ldm(many, [int(p.parent.name) % 3 for p in many], PROMPTS, tokenizer,
                           EmbeddedLdmConfig(vae_steps=1, unet_steps=1, batch_size=8), False)
    assert encoded == [256, 8]
