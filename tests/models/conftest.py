"""A tiny embedded diffusion model, trained once per session, for the engine and editing tests."""
import numpy as np
import pytest
import torch

from models.config import EmbeddedLdmConfig
from models.embedded_ldm import save_ldm, train_ldm, write_tokenizer
from tests.models.tiny_ldm import PROMPTS, WORDS


@pytest.fixture(scope="session")
def embedded(tmp_path_factory, digits):
    """A tiny embedded model trained for a few steps on 3 digit classes, saved as a pipeline folder."""
    from models.dataset import load_rgb

    root = tmp_path_factory.mktemp("embedded")
    paths = [p for c in "012" for p in sorted((digits / c).glob("*.png"))[:12]]
    images = torch.stack([torch.from_numpy(np.asarray(load_rgb(p), dtype=np.float32) / 255).permute(2, 0, 1) for p in paths])
    labels = torch.tensor([int(p.parent.name) for p in paths])
    tokenizer = write_tokenizer(root / "tokenizer", WORDS)
    pipeline, stats = train_ldm(images, labels, PROMPTS, tokenizer, EmbeddedLdmConfig(vae_steps=4, unet_steps=4, batch_size=8), False)
    save_ldm(pipeline, root / "model", stats, root / "tokenizer")
    return root / "model", paths
