"""The embedded text-to-image latent diffusion model: built from diffusers and transformers
parts, trained on the configured dataset, saved as a standard Stable Diffusion pipeline folder."""
from __future__ import annotations

import json
import math
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.models.attention_processor import AttnProcessor
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from models.config import EmbeddedLdmConfig, RuntimeConfig
from models.dataset import Decoded, load_rgb
from models.determinism import pin
from models.locks import partial_path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_TOKENS = 32
SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
SCALING_SAMPLE = 2048  # images whose latents set the VAE's scaling factor
LATENT_BUDGET = 256 << 20  # bytes of latents kept in memory for the UNet's training; past it, encoded per batch
CARD_LEAVES_OUT = ("train_seconds",)  # kept out of the model card: the folder's bytes depend on the inputs alone


def prompt_words(prompts: list[str]) -> list[str]:
    """Words as CLIP's pre-tokenizer splits them: runs of letters, single digits ("10" is "1", "0"),
    runs of other symbols."""
    return sorted({w for p in prompts for w in re.findall(r"[^\W\d_]+|\d|[^\s\w]+|_", p.lower())})


def write_tokenizer(folder: Path, words: list[str]) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose vocabulary makes every given word a single token."""
    words = sorted({w.lower() for w in words})
    chars = sorted({c for w in words for c in w})
    vocab = [BOS, EOS] + chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in words:  # merge left to right: a, ab, abc, ..., abc..z</w>
        token = word[0]
        for i, c in enumerate(word[1:], 1):
            piece = c + ("</w>" if i == len(word) - 1 else "")
            merges.append(f"{token} {piece}")
            token += piece
            vocab.append(token)
    vocab = list(dict.fromkeys(vocab))
    merges = list(dict.fromkeys(merges))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"),
        bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS, model_max_length=MAX_TOKENS,
    )
    for word in words:
        pieces = tokenizer.tokenize(word)
        if len(pieces) != 1:
            raise ValueError(f"prompt word {word!r} does not make a single token ({pieces})")
    return tokenizer


def build(tokenizer: CLIPTokenizer, image_size: int = 32) -> tuple[AutoencoderKL, UNet2DConditionModel, CLIPTextModel]:
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=image_size,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16,
    )
    unet = UNet2DConditionModel(
        sample_size=image_size // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D",) * 2,
        up_block_types=("CrossAttnUpBlock2D",) * 2, cross_attention_dim=64, attention_head_dim=4,
        norm_num_groups=16,
    )
    ids = tokenizer.convert_tokens_to_ids([BOS, EOS])
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=64,
        bos_token_id=ids[0], eos_token_id=ids[1], pad_token_id=ids[1],
    ))
    return vae, unet, text_encoder


def _batches(count: int, size: int, rng: torch.Generator):
    """Indices of training batches: a fresh permutation each epoch, the incomplete last batch left out."""
    while True:
        order = torch.randperm(count, generator=rng)
        for i in range(0, len(order) - size + 1, size):
            yield order[i : i + size]


def _encode(vae: AutoencoderKL, paths: list[Path], image_size: int | None) -> torch.Tensor:
    with torch.no_grad():
        return vae.encode(image_batch(paths, image_size)).latent_dist.mean


def _chunks(vae: AutoencoderKL, paths: list[Path], image_size: int | None):
    """Raw latents, 256 images at a time."""
    for i in range(0, len(paths), 256):
        yield _encode(vae, paths[i : i + 256], image_size)


def kept_latents(vae: AutoencoderKL, paths: list[Path], image_size: int, scaling: float) -> torch.Tensor | None:
    """Every image's scaled latent, encoded 256 at a time, when they fit in LATENT_BUDGET (a latent is 48x
    smaller than its image: 256 MB hold 256k images of 32 px); None past it, and batches are encoded as drawn.
    Either way memory is bounded; kept, the UNet's steps do not pay for the frozen VAE's encoder."""
    if not fits(len(paths), image_size):
        return None
    return torch.cat(list(_chunks(vae, paths, image_size))) * scaling


def fits(count: int, image_size: int) -> bool:
    side = image_size // 4  # the VAE halves the side twice
    return count * 4 * side * side * 4 <= LATENT_BUDGET


def _optimizer(params, lr: float, **kwargs) -> torch.optim.AdamW:
    """AdamW in one fused kernel: the embedded model's hundreds of small tensors cost a loop of small ops a step."""
    return torch.optim.AdamW(params, lr=lr, fused=True, **kwargs)


@contextmanager
def classic_attention_on_cpu(model):
    """The classic attention (batched matmuls) while a model trains on a CPU, where the fused attention kernel costs
    twice as much at the latents' 16-64 positions; the model's own processors back after."""
    own = model.attn_processors
    if next(model.parameters()).device.type == "cpu":
        model.set_attn_processor(AttnProcessor())
    try:
        yield
    finally:
        model.set_attn_processor(own)


def _schedule(optimizer, steps: int, warmup: int = 100):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )


def image_batch(paths: list[Path], size: int | None = None, load=load_rgb) -> torch.Tensor:
    """Images as the model trains on them: N x 3 x H x W in [-1, 1] (resized to size x size when given)."""
    images = (load(p) for p in paths)
    return torch.stack([torch.from_numpy(np.asarray(image.resize((size, size)) if size else image, dtype=np.float32)
                                         / 127.5 - 1).permute(2, 0, 1) for image in images])


def latent_scaling(vae: AutoencoderKL, paths: list[Path], image_size: int, seed: int, most: int | None = None) -> float:
    """1 / std of the latents of a seeded sample of at most `most` (default SCALING_SAMPLE) images, encoded a chunk
    at a time and summed as they come: bounded time and memory at any dataset size."""
    most = most or SCALING_SAMPLE
    sample = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))[:most].sort().values
    return scale_of(_chunks(vae, [paths[i] for i in sample.tolist()], image_size))


def scale_of(chunks) -> float:
    """1 / the unbiased std (as torch.std) of latents given in chunks, summed in float64."""
    total = square = count = 0.0
    for latents in chunks:
        latents = latents.double()
        total += latents.sum().item()
        square += latents.square().sum().item()
        count += latents.numel()
    return float(1.0 / math.sqrt((square - total * total / count) / (count - 1)))


def train_ldm(
    paths: list[Path], labels: list[int], prompts: list[str], tokenizer: CLIPTokenizer,
    recipe: EmbeddedLdmConfig, progress: bool = True, runtime: RuntimeConfig | None = None,
    image_size: int | None = None,
) -> tuple[StableDiffusionPipeline, dict]:
    """Train on the images at `paths` (resized to image_size x image_size when given); labels index `prompts`.
    VAE first, then UNet + text encoder on the frozen VAE's latents. Images are read per batch, decoded ones
    kept up to a bound (models.dataset.Decoded), never all at once. `runtime`: threads and kernels to pin; by
    default the process keeps those its flow pinned."""
    rng = pin(recipe.seed, runtime)
    side = image_size or image_batch(paths[:1]).shape[-1]
    vae, unet, text_encoder = build(tokenizer, side)
    start = time.monotonic()
    with classic_attention_on_cpu(vae):
        vae_mse = train_vae(vae, paths, image_size, recipe, rng, progress)
    scaling, latents_of = encoded(vae, paths, side, image_size, recipe)
    with classic_attention_on_cpu(unet):
        losses = train_unet(unet, text_encoder, tokenizer, prompts, torch.as_tensor(labels), recipe, rng, progress,
                            latents_of)
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DPMSolverMultistepScheduler(**SCHEDULE, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    stats = {
        "vae_mse": vae_mse, "scaling_factor": scaling, "unet_loss": float(np.mean(losses[-100:])),
        "train_seconds": time.monotonic() - start,
        "parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in
                       (("vae", vae), ("unet", unet), ("text_encoder", text_encoder))},
    }
    return pipeline, stats


def train_vae(vae: AutoencoderKL, paths: list[Path], image_size: int | None, recipe: EmbeddedLdmConfig,
              rng: torch.Generator, progress: bool) -> float:
    """The VAE's steps (reconstruction + a light KL), batches of 32 drawn from `rng`; frozen after. Returns its
    last batch's mse."""
    optimizer = _optimizer(vae.parameters(), recipe.lr)
    batches, load = _batches(len(paths), min(32, len(paths)), rng), Decoded()
    bar = tqdm(range(recipe.vae_steps), desc="embedded LDM: VAE", disable=not progress)
    for _ in bar:
        batch = image_batch([paths[j] for j in next(batches).tolist()], image_size, load)
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample(rng)).sample
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = F.mse_loss(recon, batch) + 1e-4 * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(mse=f"{F.mse_loss(recon, batch).item():.4f}")
    vae.eval().requires_grad_(False)
    return F.mse_loss(recon, batch).item()


def encoded(vae: AutoencoderKL, paths: list[Path], side: int, image_size: int | None,
            recipe: EmbeddedLdmConfig) -> tuple[float, Callable[[torch.Tensor], torch.Tensor]]:
    """The latents' scaling factor (set on the VAE) and the scaled latents of a batch's indices: every image's
    encoded once and kept, or each batch encoded as drawn. Kept only when the steps draw more images than there are
    (a short budget encodes per batch); the scaling sample needs no more images than the steps draw, nor more than
    SCALING_SAMPLE."""
    draws = recipe.unet_steps * min(recipe.batch_size, len(paths))
    keep, most = draws >= len(paths) and fits(len(paths), side), min(SCALING_SAMPLE, max(256, draws))
    if keep and len(paths) <= most:  # the scaling sample is every image, in order: encoded once for both
        raw = list(_chunks(vae, paths, side))
        scaling = scale_of(raw)
        latents = torch.cat(raw) * scaling
    else:
        scaling = latent_scaling(vae, paths, image_size, recipe.seed, most)
        latents = kept_latents(vae, paths, side, scaling) if keep else None
    vae.register_to_config(scaling_factor=scaling)
    if latents is not None:
        return scaling, latents.__getitem__
    return scaling, lambda index: _encode(vae, [paths[j] for j in index.tolist()], side) * scaling


def train_unet(unet: UNet2DConditionModel, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, prompts: list[str],
               labels: torch.Tensor, recipe: EmbeddedLdmConfig, rng: torch.Generator, progress: bool,
               latents_of: Callable[[torch.Tensor], torch.Tensor]) -> list[float]:
    """The UNet and text encoder together on noised latents (`latents_of` a batch's indices), a share of prompts left
    empty for classifier-free guidance, Min-SNR weighted where the recipe says; frozen after. Returns each step's
    loss."""
    ids = tokenizer(prompts + [""], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    empty = len(prompts)
    scheduler = DDPMScheduler(**SCHEDULE, clip_sample=False)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = _optimizer(params, recipe.lr, weight_decay=1e-2)
    snr = scheduler.alphas_cumprod / (1 - scheduler.alphas_cumprod)
    lr_schedule = _schedule(optimizer, recipe.unet_steps)
    batches = _batches(len(labels), min(recipe.batch_size, len(labels)), rng)
    losses = []
    bar = tqdm(range(recipe.unet_steps), desc="embedded LDM: UNet", disable=not progress)
    for _ in bar:
        index = next(batches)
        z0 = latents_of(index)
        y = labels[index]
        y = torch.where(torch.rand(len(y), generator=rng) < recipe.empty_prompt, empty, y)
        noise = torch.randn(z0.shape, generator=rng)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(z0),), generator=rng)
        prompted, rows = torch.unique(y, return_inverse=True)
        states = text_encoder(ids[prompted])[0][rows]  # each prompt in the batch encoded once, its rows shared
        errors = F.mse_loss(unet(scheduler.add_noise(z0, noise, t), t, states).sample, noise, reduction="none")
        weights = snr[t].clamp(max=recipe.min_snr_gamma) / snr[t] if recipe.min_snr_gamma else torch.ones(len(t))
        loss = (errors.mean(dim=(1, 2, 3)) * weights).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        optimizer.step()
        lr_schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    unet.eval().requires_grad_(False)
    text_encoder.eval().requires_grad_(False)
    return losses


def save_ldm(pipeline: StableDiffusionPipeline, folder: Path, card: dict, tokenizer_files: Path) -> None:
    """A standard diffusers pipeline folder, written beside and renamed (no half-written model)."""
    tmp = partial_path(folder)
    pipeline.save_pretrained(tmp, safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):  # older readers want these beside tokenizer.json
        (tmp / "tokenizer" / name).write_bytes((tokenizer_files / name).read_bytes())
    (tmp / "README.md").write_text(
        "# genie-flow embedded generator\n\nA small text-conditioned latent diffusion model trained by "
        "genie-flow. Load it with `StableDiffusionPipeline.from_pretrained(<this folder>)`.\n\n```json\n"
        + json.dumps({k: v for k, v in card.items() if k not in CARD_LEAVES_OUT}, indent=2) + "\n```\n"
    )
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
