"""Edits: content keys, seeds, explicit pairs, and the EditRunner writing keyed files."""
import numpy as np
import pytest
from PIL import Image

from models.architectures import sd15_pipeline
from models.classifier import Embedder, build_model, save_checkpoint
from models.editing import Edit, EditRunner, content_key, edit_seed, edits_from_pairs, read_pairs
from models.engine import Engine, EngineError
from models.methods.genie_ada import Ada
from tests.models.tiny_ldm import NAMES, WORDS


def _classifier(tmp_path, classes):
    path = tmp_path / "judge.pt"
    save_checkpoint(path, build_model("test_resnet", len(classes)), "test_resnet", classes, 32)
    return Embedder(path)


def test_runner_writes_keyed_files_and_never_repeats(embedded, tmp_path):
    folder, paths = embedded
    engine = Engine(str(folder), steps=6)
    out = tmp_path / "genie"
    make = EditRunner(engine, out, lambda label: f"a photo of a {NAMES[int(label)]}.", batch_size=2)
    edits = [Edit(str(p), p.parent.name, "2", "genie", 0.8, edit_seed(0, str(p), "2")) for p in paths[:3]]
    stats = make.run(edits, progress=False)
    assert (stats["generated"], stats["existing"]) == (3, 0)
    manifest = make.manifest()
    assert sorted(manifest["file"]) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert set(manifest["key"]) == {make.key(e) for e in edits}
    assert manifest.iloc[0][["method", "target", "label"]].tolist() == ["genie", "2", "2"]
    assert make.run(edits, progress=False)["generated"] == 0
    # the rows lost (no kill loses them: a batch's rows are written before its images): listed again from the
    # images' own fields
    for part in (out / "manifest").iterdir():
        part.unlink()
    again = make.run(edits, progress=False)
    assert (again["generated"], again["existing"]) == (0, 3)
    rebuilt = make.manifest().set_index("key").loc[manifest["key"][0]]
    assert (rebuilt["target"], rebuilt["method"], rebuilt["ratio"]) == ("2", "genie", 0.8)
    # another ratio is another key
    other = [Edit(e.source, e.source_class, e.label, e.method, 0.5, e.seed) for e in edits[:1]]
    assert make.run(other, progress=False)["generated"] == 1


def test_runner_refuses_unreadable_sources_before_writing(embedded, tmp_path):
    folder, _ = embedded
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    make = EditRunner(Engine(str(folder), steps=4), tmp_path / "out", lambda label: "a photo of a one.")
    with pytest.raises(EngineError, match=r"source image .*bad.png: unreadable"):
        make.run([Edit(str(bad), "0", "1", "genie", 0.8, 0)], progress=False)
    assert not (tmp_path / "out" / "manifest").exists()


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
    ratios = (0.5, 0.75, 1.0)
    edits = [Edit(str(sources[0]), "0", "1", "genie", 0.8, 1), Edit(str(sources[0]), "0", "0", "img2img", 0.3, 2),
             Edit("", "", "2", "txt2img", None, 3), Edit(str(sources[1]), "0", "2", "genie-ada", None, 4),
             Edit(str(sources[1]), "0", "2", "ada-probe", 0.75, 4)]
    exact = EditRunner(engine, tmp_path / "exact", prompt, ada=Ada(ratios, embed, means))
    assert exact.run(edits, progress=False)["generated"] == 5
    ada = exact.manifest().set_index("method").loc["genie-ada"]
    assert ada["ratio"] in (0.75, 1.0) and len(eval(ada["ada_scores"])) == 2
    assert ada["unet_evals"] == (2 + 3 + 4) * 2
    assert exact.manifest().set_index("method").loc["ada-probe", "unet_evals"] == 2 * 2  # 2 guided UNet calls

    fast = EditRunner(engine, tmp_path / "fast", prompt, ada=Ada(ratios, embed, means, "fast", probe_steps=2))
    assert fast.key(edits[3]) != exact.key(edits[3])
    assert fast.run(edits[3:4], progress=False)["generated"] == 1
    row = fast.manifest().iloc[0]
    assert row["ratio"] in ratios and row["unet_evals"] == 3 * 2 * 2 + 2 * int(4 * row["ratio"])
    # the kept image is the GeNIe edit at r* (same seed, same noise, same steps)
    genie = engine.edit([Image.open(sources[1])], [prompt("2")], row["ratio"], [4]).images[0]
    kept = np.asarray(Image.open(tmp_path / "fast" / row["file"]).convert("RGB"), dtype=int)
    assert np.abs(kept - np.asarray(genie, dtype=int)).max() <= 2
    with pytest.raises(ValueError, match="unknown GeNIe-Ada mode 'slow'"):
        Ada(ratios, embed, means, "slow")


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
    make = EditRunner(engine, tmp_path / "out", lambda label: "a photo of a one.")
    stats = make.run([Edit(str(p), "0", "1", "genie", 0.8, i) for i, p in enumerate(paths[:2])], progress=False)
    assert (stats["generated"], stats["dropped"]) == (0, 2)
    assert not list((tmp_path / "out").rglob("*.png"))



def test_content_key_names_everything_that_decides_the_image():
    edit = Edit("s.png", "3", "5", "genie", 0.8, 7)
    sampler = {"model": "m", "steps": 25, "guidance": 7.5, "prompt": "a photo of a five."}
    key = content_key(edit, "digest", sampler)
    assert key == content_key(edit, "digest", dict(sampler)) and len(key) == 32
    changed = [content_key(edit, "other digest", sampler), content_key(Edit("s.png", "3", "5", "genie", 0.7, 7),
               "digest", sampler), content_key(Edit("s.png", "3", "5", "genie", 0.8, 8), "digest", sampler)]
    changed += [content_key(edit, "digest", sampler | {k: v}) for k, v in
                (("model", "n"), ("steps", 50), ("guidance", 5.0), ("prompt", "five"))]
    assert key not in changed and len(set(changed)) == len(changed)


def test_make_follows_the_method_and_seeds_by_pair():
    genie = Edit.make("s.png", "3", "5", "genie", 0.8, 0)
    assert (genie.label, genie.ratio, genie.seed) == ("5", 0.8, edit_seed(0, "s.png", "5"))
    assert Edit.make("s.png", "3", "5", "img2img", 0.3, 0).label == "3"  # the source prompt, the source's class
    assert Edit.make("s.png", "3", "5", "genie-ada", 0.8, 0).ratio is None
    assert Edit.make("s.png", "3", "5", "txt2img", None, 0).source == ""
    assert Edit.make("t.png", "3", "5", "genie", 0.8, 0).seed != genie.seed


def test_pairs_are_read_and_checked(tmp_path):
    source = tmp_path / "3" / "x.png"
    source.parent.mkdir()
    Image.new("RGB", (8, 8)).save(source)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"source,target\n{source},5\n")
    [edit] = edits_from_pairs(read_pairs(pairs), ["3", "5"], "genie", 0.8, 0)
    assert (edit.source_class, edit.label) == ("3", "5")
    with pytest.raises(ValueError, match="unknown class '7'"):
        edits_from_pairs([(str(source), "7")], ["3", "5"], "genie", 0.8, 0)
    with pytest.raises(ValueError, match="missing.png not found"):
        edits_from_pairs([(str(tmp_path / "missing.png"), "5")], ["3", "5"], "genie", 0.8, 0)
    pairs.write_text("src,tgt\na,b\n")
    with pytest.raises(ValueError, match="needs a header with columns source,target"):
        read_pairs(pairs)
