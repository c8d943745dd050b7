"""Per-class adapters: a generator learns a class from that class's train images, its own weights frozen.
Textual inversion learns one token embedding for the class (as DA-Fusion does); LoRA learns low-rank weights on the
UNet's attention together with that token (DreamBooth-style, as Diff-Mix and DataDream; a LoRA of the text encoder
needs transformers' PEFT integration, which wants a peft release newer than the registries hold). Both are saved in diffusers' formats and loaded with diffusers' loaders, so they work outside genie-flow:
`pipeline.load_textual_inversion(folder / TOKEN_FILE, token=...)`, `pipeline.load_lora_weights(folder)`."""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from models.config import AdapterConfig, RuntimeConfig
from models.determinism import pin
from models.locks import partial_path

TOKEN_FILE = "learned_embeds.safetensors"  # diffusers' textual-inversion format: {token: embedding}
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' LoRA format (StableDiffusionPipeline.save_lora_weights)
CARD = "adapter.json"
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


class AdapterError(ValueError):
    """An adapter that cannot be trained or loaded (the message names the class or the file)."""


def token_for(label: str) -> str:
    """The class's token in prompts: `<folder-name>`, one token however the tokenizer splits words."""
    return f"<{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-') or 'class'}>"


def adapter_name(label: str) -> str:
    """The class's LoRA adapter name in a pipeline."""
    return token_for(label)[1:-1]


@dataclass
class Adapter:
    label: str
    token: str
    kind: str
    embedding: torch.Tensor  # 1 x hidden: the token's row of the text encoder's input embeddings
    unet_lora: dict[str, torch.Tensor] | None
    stats: dict


def _add_token(pipeline, token: str, init_text: str) -> int:
    """The token added to the tokenizer and the text encoder, its embedding started from the class name's."""
    tokenizer, encoder = pipeline.tokenizer, pipeline.text_encoder
    if tokenizer.add_tokens([token]) == 0:
        raise AdapterError(f"token {token} is already in the generator's vocabulary")
    encoder.resize_token_embeddings(len(tokenizer))
    embeddings = encoder.get_input_embeddings().weight
    start = tokenizer(init_text, add_special_tokens=False).input_ids or [tokenizer.eos_token_id]
    token_id = tokenizer.convert_tokens_to_ids(token)
    with torch.no_grad():
        embeddings[token_id] = embeddings[start].mean(0)
    return token_id


def train_adapter(pipeline, paths: list[Path], label: str, init_text: str, prompt: str, kind: str,
                  cfg: AdapterConfig, runtime: RuntimeConfig | None = None, progress: bool = True) -> Adapter:
    """Teach `pipeline` (changed in place: load a fresh one per adapter) the class whose train images are `paths`.
    `prompt` is the class's prompt template ({name} becomes the token); `init_text` starts the token's embedding."""
    from diffusers import DDPMScheduler  # diffusers: imported only where a pipeline is trained

    from models.embedded_ldm import SCHEDULE, image_batch

    if kind not in ("textual-inversion", "lora"):
        raise AdapterError(f"generator.adapt: {kind!r} is not an adapter kind")
    if len(paths) < cfg.min_images:
        raise AdapterError(f"class {label}: {len(paths)} train images, fewer than generator.adapter.min_images "
                           f"({cfg.min_images})")
    rng = pin(cfg.seed, runtime)
    start = time.monotonic()
    vae, unet, encoder = pipeline.vae, pipeline.unet, pipeline.text_encoder
    for module in (vae, unet, encoder):
        module.requires_grad_(False).eval()
    token = token_for(label)
    token_id = _add_token(pipeline, token, init_text)
    embeddings = encoder.get_input_embeddings().weight
    embeddings.requires_grad_(True)
    others = torch.arange(len(embeddings), device=embeddings.device) != token_id
    params = [embeddings]
    if kind == "lora":
        from peft import LoraConfig

        unet.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.rank, init_lora_weights="gaussian",
                                    target_modules=UNET_TARGETS))
        params += [p for p in unet.parameters() if p.requires_grad]
    device = unet.device  # the random draws come from the seeded CPU generator, whatever the device
    with torch.no_grad():  # a class has few images: its latents are encoded once
        side = vae.config.sample_size
        latents = torch.cat([vae.encode(image_batch(paths[i : i + 64], side).to(device)).latent_dist.mode()
                             for i in range(0, len(paths), 64)]) * vae.config.scaling_factor
    ids = pipeline.tokenizer(prompt.format(name=token), padding="max_length", truncation=True,
                             max_length=pipeline.tokenizer.model_max_length, return_tensors="pt").input_ids.to(device)
    scheduler = DDPMScheduler(**SCHEDULE, clip_sample=False)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)  # no decay: other rows stay exactly as they were
    losses = []
    bar = tqdm(range(cfg.steps), desc=f"adapter {label} ({kind})", disable=not progress)
    for _ in bar:
        index = torch.randint(0, len(latents), (min(cfg.batch_size, len(latents)),), generator=rng)
        z0 = latents[index.to(device)]
        noise = torch.randn(z0.shape, generator=rng).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(z0),), generator=rng).to(device)
        states = encoder(ids.expand(len(z0), -1))[0]
        loss = F.mse_loss(unet(scheduler.add_noise(z0, noise, t), t, states).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        embeddings.grad[others] = 0  # only the class's token learns
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
    unet.requires_grad_(False)
    encoder.requires_grad_(False)
    stats = {"images": len(paths), "steps": cfg.steps, "loss": sum(losses[-50:]) / len(losses[-50:]),
             "train_seconds": time.monotonic() - start}
    return Adapter(label, token, kind, embeddings[token_id].detach().cpu().clone()[None],
                   _lora_state(unet) if kind == "lora" else None, stats)


def _lora_state(module) -> dict[str, torch.Tensor]:
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().cpu().clone().contiguous() for k, v in
            convert_state_dict_to_diffusers(get_peft_model_state_dict(module)).items()}


def save_adapter(adapter: Adapter, folder: Path, card: dict) -> None:
    """The adapter in diffusers' formats plus a card (class, token, kind, what it was trained from), written beside
    and renamed into place."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    tmp = partial_path(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({adapter.token: adapter.embedding.contiguous()}, tmp / TOKEN_FILE)
    if adapter.unet_lora is not None:
        StableDiffusionPipeline.save_lora_weights(tmp, unet_lora_layers=adapter.unet_lora, weight_name=LORA_FILE)
    (tmp / CARD).write_text(json.dumps({"label": adapter.label, "token": adapter.token, "kind": adapter.kind,
                                        **card}, indent=2, sort_keys=True))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_adapter(pipeline, folder: Path) -> tuple[str, str]:
    """Load one adapter folder into `pipeline` with diffusers' loaders; returns (class, token). Raises AdapterError
    naming the file that does not load (missing, corrupt, or made for another base model)."""
    try:
        card = json.loads((folder / CARD).read_text())
        label, token = card["label"], card["token"]
    except (OSError, ValueError, KeyError) as err:
        raise AdapterError(f"adapter {folder / CARD}: unreadable ({err})") from None
    try:
        pipeline.load_textual_inversion(str(folder / TOKEN_FILE), token=token)
        if (folder / LORA_FILE).is_file():
            pipeline.load_lora_weights(str(folder), weight_name=LORA_FILE, adapter_name=adapter_name(label))
    except Exception as err:  # noqa: BLE001 - safetensors, diffusers and peft each raise their own kinds
        raise AdapterError(f"adapter {folder}: does not load into this generator "
                           f"({str(err).splitlines()[0][:200]})") from None
    return label, token
