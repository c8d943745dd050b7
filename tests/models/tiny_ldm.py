"""The tiny embedded model the model tests share (three digit classes): its prompts, and its training."""
from pathlib import Path

NAMES = ["zero", "one", "two"]
PROMPTS = [f"a photo of a {n}." for n in NAMES]
WORDS = ["a", "photo", "of", "."] + NAMES


def train_tiny(digits: Path, out: Path, per_class: int, seed: int = 0, runtime=None) -> tuple[Path, list[Path]]:
    """A few training steps on `per_class` images of each of 0, 1, 2, saved as a pipeline folder under `out`;
    returns the folder and the images it learnt from."""
    from models.config import EmbeddedLdmConfig
    from models.embedded_ldm import save_ldm, train_ldm, write_tokenizer

    paths = [p for c in "012" for p in sorted((digits / c).glob("*.png"))[:per_class]]
    labels = [int(p.parent.name) for p in paths]
    tokenizer = write_tokenizer(out / "tokenizer", WORDS)
    recipe = EmbeddedLdmConfig(vae_steps=4, unet_steps=4, batch_size=8, seed=seed)
    pipeline, stats = train_ldm(paths, labels, PROMPTS, tokenizer, recipe, False, runtime=runtime)
    save_ldm(pipeline, out / "model", stats, out / "tokenizer")
    return out / "model", paths
