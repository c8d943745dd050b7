"""The embedded generator and the engine, through the same from_pretrained path a real checkpoint takes."""
import numpy as np
import pytest
import torch
from PIL import Image

from models.architectures import sd15_pipeline
from models.classifier import Embedder, build_model, save_checkpoint
from models.config import EmbeddedGenerator
from models.engine import Engine, EngineError, choose_ratio
from models.generation import Edit, Generator, edit_seed
from models.generator import save, train_generator, write_tokenizer

NAMES = ["zero", "one", "two"]
PROMPTS = [f"a photo of a {n}." for n in NAMES]
WORDS = ["a", "photo", "of", "."] + NAMES


def test_every_prompt_word_is_one_token(tmp_path):
    tokenizer = write_tokenizer(tmp_path, WORDS + ["seven", "eight", "nine", "three"])
    assert tokenizer.tokenize("a photo of a seven.") == ["a</w>", "photo</w>", "of</w>", "a</w>", "seven</w>", ".</w>"]
    assert (tmp_path / "vocab.json").is_file() and (tmp_path / "merges.txt").read_text().startswith("#version")


@pytest.fixture(scope="session")
def embedded(tmp_path_factory, digits):
    """A tiny embedded model trained for a few steps on 3 digit classes, saved as a pipeline folder."""
    from models.dataset import load_rgb

    root = tmp_path_factory.mktemp("embedded")
    paths = [p for c in "012" for p in sorted((digits / c).glob("*.png"))[:12]]
    images = torch.stack([torch.from_numpy(np.asarray(load_rgb(p), dtype=np.float32) / 255).permute(2, 0, 1) for p in paths])
    labels = torch.tensor([int(p.parent.name) for p in paths])
    tokenizer = write_tokenizer(root / "tokenizer", WORDS)
    pipeline, stats = train_generator(images, labels, PROMPTS, tokenizer, EmbeddedGenerator(vae_steps=4, unet_steps=4, batch_size=8), False)
    save(pipeline, root / "model", stats, root / "tokenizer")
    return root / "model", paths


def test_saved_model_is_a_standard_pipeline_folder(embedded):
    folder, _ = embedded
    for name in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                 "tokenizer/vocab.json", "tokenizer/merges.txt", "README.md"):
        assert (folder / name).is_file(), name
    assert not folder.with_name("model.partial").exists()


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


def test_ada_picks_the_ratio_after_the_largest_jump():
    source = np.array([1.0, 0.0])
    target = np.array([0.0, 1.0])
    candidates = np.array([[1, 0], [0.95, 0.1], [0.2, 0.9], [0.1, 0.95], [0.0, 1.0]])  # the jump: 0.6 -> 0.7
    r, index, scores = choose_ratio(source, candidates, target, [0.5, 0.6, 0.7, 0.8, 0.9])
    assert (r, index) == (0.7, 2)
    v = target - source
    assert np.allclose(scores[1], abs((candidates[2] - candidates[1]) @ v) / np.linalg.norm(v))


def _classifier(tmp_path, classes):
    path = tmp_path / "judge.pt"
    save_checkpoint(path, build_model("test_resnet", len(classes)), "test_resnet", classes, 32)
    return Embedder(path)


def test_generator_writes_keyed_files_and_never_repeats(embedded, tmp_path):
    folder, paths = embedded
    engine = Engine(str(folder), steps=6)
    out = tmp_path / "genie"
    make = Generator(engine, out, lambda label: f"a photo of a {NAMES[int(label)]}.", batch_size=2)
    edits = [Edit(str(p), p.parent.name, "2", "genie", 0.8, edit_seed(0, str(p), "2")) for p in paths[:3]]
    stats = make.run(edits, progress=False)
    assert (stats["generated"], stats["existing"]) == (3, 0)
    manifest = make.manifest()
    assert sorted(manifest["file"]) == sorted(p.name for p in out.glob("*.png"))
    assert set(manifest["key"]) == {make.key(e) for e in edits}
    assert manifest.iloc[0][["method", "target", "label"]].tolist() == ["genie", "2", "2"]
    assert make.run(edits, progress=False)["generated"] == 0
    # a killed run: an image without its manifest row and a partial file are redone / removed
    (out / "stray.partial").write_bytes(b"x")
    kept = manifest.iloc[1:]
    kept.to_csv(out / "manifest.csv", index=False)
    again = make.run(edits, progress=False)
    assert (again["generated"], again["existing"]) == (1, 2)
    assert not (out / "stray.partial").exists() and len(make.manifest()) == 3
    # another ratio is another key
    other = [Edit(e.source, e.source_class, e.target, e.method, 0.5, e.seed) for e in edits[:1]]
    assert make.run(other, progress=False)["generated"] == 1


def test_generator_refuses_unreadable_sources_before_writing(embedded, tmp_path):
    folder, _ = embedded
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    make = Generator(Engine(str(folder), steps=4), tmp_path / "out", lambda label: "a photo of a one.")
    with pytest.raises(EngineError, match=r"source image .*bad.png: unreadable"):
        make.run([Edit(str(bad), "0", "1", "genie", 0.8, 0)], progress=False)
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_sd15_layout_checkpoint_runs_every_method(tmp_path, digits):
    """A tiny random-weight pipeline with SD 1.5's block layout, saved and loaded like a real one."""
    pipeline = sd15_pipeline("tiny", 64, WORDS, tmp_path / "tokenizer")
    pipeline.save_pretrained(tmp_path / "sd15")
    engine = Engine(str(tmp_path / "sd15"), steps=4)
    assert engine.size == 64
    sources = sorted((digits / "0").glob("*.png"))[:2]
    prompt = lambda label: f"a photo of a {NAMES[int(label)]}."  # noqa: E731
    embed = _classifier(tmp_path, ["0", "1", "2"])
    means = {c: embed([Image.open(p) for p in sorted((digits / c).glob("*.png"))[:4]]).mean(0) for c in "012"}
    make = Generator(engine, tmp_path / "out", prompt, embed=embed, target_means=means, ada_ratios=(0.5, 0.75, 1.0))
    edits = [Edit(str(sources[0]), "0", "1", "genie", 0.8, 1), Edit(str(sources[0]), "0", "0", "img2img", 0.3, 2),
             Edit("", "", "2", "txt2img", None, 3), Edit(str(sources[1]), "0", "2", "genie-ada", None, 4)]
    assert make.run(edits, progress=False)["generated"] == 4
    ada = make.manifest().set_index("method").loc["genie-ada"]
    assert ada["ratio"] in (0.75, 1.0) and len(eval(ada["ada_scores"])) == 2
    assert ada["unet_evals"] == (2 + 3 + 4) * 2


def test_safety_checker_drops_what_it_blanks(embedded, tmp_path, digits):
    """A real StableDiffusionSafetyChecker whose thresholds flag every image: edits dropped and counted."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    folder, paths = embedded
    engine = Engine(str(folder), steps=4)
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    checker = StableDiffusionSafetyChecker(CLIPConfig(vision_config=vision, text_config={"hidden_size": 16}, projection_dim=768))
    checker.concept_embeds_weights.data.fill_(-10.0)  # every image over the threshold
    engine.img2img.register_modules(safety_checker=checker, feature_extractor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32))
    engine.img2img.register_to_config(requires_safety_checker=True)
    make = Generator(engine, tmp_path / "out", lambda label: "a photo of a one.")
    stats = make.run([Edit(str(p), "0", "1", "genie", 0.8, i) for i, p in enumerate(paths[:2])], progress=False)
    assert (stats["generated"], stats["dropped"]) == (0, 2)
    assert not list((tmp_path / "out").glob("*.png"))
