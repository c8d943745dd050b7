"""The GeNIe engine: any diffusers Stable Diffusion pipeline, one loading path for real
checkpoints and the embedded model; batched edits with a seed per edit."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from models.digests import model_identity

if TYPE_CHECKING:  # diffusers is imported where a pipeline is built: seconds that a process without one never pays
    from diffusers import StableDiffusionImg2ImgPipeline


class EngineError(ValueError):
    pass


def pick_device(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA with fp16 when present, CPU with fp32 otherwise (fp16 is ~10x slower on a CPU)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "float16" if device.startswith("cuda") else "float32"
    return torch.device(device), getattr(torch, dtype)


def _hub_id(model: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", model) is not None


def load_img2img(model: str, device: torch.device, dtype: torch.dtype,
                 allow_pickle: bool = False) -> StableDiffusionImg2ImgPipeline:
    """Weights only from safetensors unless `allow_pickle`: a .bin checkpoint is a pickle, and loading one
    runs whatever code it holds."""
    from diffusers import StableDiffusionImg2ImgPipeline

    folder = Path(model).expanduser()
    if folder.exists():
        if not (folder / "model_index.json").is_file():
            raise EngineError(f"generator model {model}: not a diffusers pipeline folder (no model_index.json)")
    elif not _hub_id(model):
        raise EngineError(f"generator model {model}: folder not found (train one with `genie train-generator`)")
    try:
        pipeline = StableDiffusionImg2ImgPipeline.from_pretrained(str(folder) if folder.exists() else model, dtype=dtype,
                                                                  use_safetensors=None if allow_pickle else True)
    except OSError as err:
        if not allow_pickle and "safetensors" in str(err):
            raise EngineError(f"generator model {model}: no safetensors weights; a pickled (.bin) checkpoint loads only "
                              "with generator.allow_pickle: true") from None
        where = "local folder" if folder.exists() else "no such local folder, and the hub"
        raise EngineError(f"generator model {model}: cannot be loaded from the {where} ({str(err).splitlines()[0]})") from None
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


@dataclass
class Result:
    images: list[Image.Image | None]  # None where the safety checker blanked the edit
    unet_evals: int


def speed_up(unet: torch.nn.Module, device: torch.device, compile: bool) -> torch.nn.Module:
    """PyTorch's fused scaled-dot-product attention everywhere; on CUDA channels_last memory (faster
    convolutions in fp16); with `compile`, torch.compile (a one-off compile, then faster steps)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0())
    if device.type == "cuda":
        unet.to(memory_format=torch.channels_last)
    return torch.compile(unet) if compile else unet


class Engine:
    """Image-to-image and text-to-image over one set of loaded weights."""

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", steps: int = 25, guidance: float = 7.5,
                 allow_pickle: bool = False, compile: bool = False, adapters: tuple[str, ...] = ()):
        from diffusers import StableDiffusionPipeline

        self.device, self.dtype = pick_device(device, dtype)
        self.img2img = load_img2img(model, self.device, self.dtype, allow_pickle)
        self._load_adapters(adapters)
        self.img2img.unet = speed_up(self.img2img.unet, self.device, compile)
        self.txt2img = StableDiffusionPipeline(**self.img2img.components, requires_safety_checker=False)
        self.txt2img.set_progress_bar_config(disable=True)
        self.model, self.identity = model, model_identity(model)
        if self.adapted:  # what an edit is made with: the base weights and every adapter that loaded
            self.identity = hashlib.sha256(" ".join([self.identity, *self._adapter_ids]).encode()).hexdigest()
        self.steps, self.guidance = steps, guidance
        self.size = self.img2img.unet.config.sample_size * self.img2img.vae_scale_factor

    def _load_adapters(self, folders: tuple[str, ...]) -> None:
        """Per-class adapters (models/adapters.py): `adapted` maps each class whose adapter loaded to its token;
        `refused` holds one line for each that did not (its class keeps its plain prompt)."""
        self.adapted: dict[str, str] = {}
        self.loras: set[str] = set()
        self.refused: list[str] = []
        self._adapter_ids: list[str] = []
        if not folders:
            return
        from models.adapters import LORA_FILE, AdapterError, adapter_name, load_adapter

        for folder in map(Path, folders):
            try:
                label, token = load_adapter(self.img2img, folder)
            except AdapterError as err:
                self.refused.append(str(err))
                continue
            self.adapted[label] = token
            self._adapter_ids.append(model_identity(str(folder)))
            if (folder / LORA_FILE).is_file():
                self.loras.add(adapter_name(label))

    def _per_lora(self, prompts: list[str], run, per: int = 1) -> Result:
        """`run(indices)` once per LoRA adapter the prompts call for (its token in the prompt; a pipeline applies
        one set of LoRA weights to a whole batch), the images put back in order (`per` images per prompt)."""
        if not self.loras:
            return run(list(range(len(prompts))))
        groups: dict[str | None, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(next((name for name in sorted(self.loras) if f"<{name}>" in prompt), None), []).append(i)
        images: list = [None] * (len(prompts) * per)
        evals = 0
        for name, indices in groups.items():
            if name is None:
                self.img2img.disable_lora()
            else:
                self.img2img.enable_lora()
                self.img2img.set_adapters([name])
            result = run(indices)
            for j, i in enumerate(indices):
                images[i * per : (i + 1) * per] = result.images[j * per : (j + 1) * per]
            evals += result.unet_evals
        return Result(images, evals)

    def _noise(self, seeds: list[int]) -> list[torch.Generator]:
        # one generator per edit: an edit's noise does not depend on what else is in its batch
        return [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]

    def _passes(self, steps: int) -> int:
        return steps * (2 if self.guidance > 1 else 1)

    def _kept(self, output) -> list[Image.Image | None]:
        flags = getattr(output, "nsfw_content_detected", None) or [False] * len(output.images)
        return [None if flagged else image for image, flagged in zip(output.images, flags)]

    def _resized(self, sources: list[Image.Image]) -> list[Image.Image]:
        return [s.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC) for s in sources]

    def edit(self, sources: list[Image.Image], prompts: list[str], ratio: float, seeds: list[int]) -> Result:
        """Noise each source to ratio `ratio` and denoise it with its prompt (GeNIe / Img2Img)."""
        if not 0 < ratio <= 1:
            raise EngineError(f"noise ratio {ratio} outside (0, 1]")
        return self._per_lora(prompts, lambda ix: self._edit([sources[i] for i in ix], [prompts[i] for i in ix], ratio,
                                                             [seeds[i] for i in ix]))

    def _edit(self, sources: list[Image.Image], prompts: list[str], ratio: float, seeds: list[int]) -> Result:
        output = self.img2img(
            prompt=prompts, image=self._resized(sources), strength=ratio, num_inference_steps=self.steps,
            guidance_scale=self.guidance, negative_prompt=[""] * len(prompts), generator=self._noise(seeds),
        )
        return Result(self._kept(output), len(sources) * self._passes(int(self.steps * ratio)))

    def probe(self, sources: list[Image.Image], prompts: list[str], ratios: list[float], seeds: list[int],
              steps: int = 1) -> Result:
        return self._per_lora(prompts, lambda ix: self._probe([sources[i] for i in ix], [prompts[i] for i in ix],
                                                              ratios, [seeds[i] for i in ix], steps), len(ratios))

    @torch.no_grad()
    def _probe(self, sources: list[Image.Image], prompts: list[str], ratios: list[float], seeds: list[int],
               steps: int = 1) -> Result:
        """A cheap look at what each edit becomes at each ratio. The source is noised exactly as `edit`
        noises it (same seed, same start step); then `steps` deterministic DDIM steps, each from the
        guided estimate of the clean latent x0 = (x_t - sqrt(1 - abar_t) * eps) / sqrt(abar_t), down to
        that estimate at the end. Every (edit, ratio) pair is one sample of the batch at its own timestep,
        so all candidates share each UNet call. `images[i * len(ratios) + k]` is edit i at ratios[k]."""
        pipe, n = self.img2img, len(sources)
        pixels = pipe.image_processor.preprocess(self._resized(sources))
        cond, uncond = pipe.encode_prompt(prompts, self.device, 1, True, [""] * n)
        pipe.scheduler.set_timesteps(self.steps, device=self.device)
        noisy, starts = [], []
        for ratio in ratios:
            timesteps, _ = pipe.get_timesteps(self.steps, ratio, self.device)
            start = timesteps[:1].repeat(n)
            noisy.append(pipe.prepare_latents(pixels, start, n, 1, cond.dtype, self.device, self._noise(seeds)))
            starts.append(start)
        x, t = torch.stack(noisy, 1).flatten(0, 1), torch.stack(starts, 1).flatten()  # edit-major order
        embeds = torch.cat([uncond, cond]).repeat_interleave(len(ratios), 0) if self.guidance > 1 else \
            cond.repeat_interleave(len(ratios), 0)
        abar = pipe.scheduler.alphas_cumprod.to(self.device)
        for i in range(steps):
            x0, eps = self._clean_estimate(x, t, embeds, abar)
            t = (t * (steps - 1 - i) / (steps - i)).round().long()  # evenly down to 0
            a = abar[t].view(-1, 1, 1, 1).to(x.dtype)
            x = a.sqrt() * x0 + (1 - a).sqrt() * eps
        decoded = pipe.vae.decode(x0 / pipe.vae.config.scaling_factor).sample
        images = pipe.image_processor.postprocess(decoded, output_type="pil")
        return Result(images, n * len(ratios) * self._passes(steps))

    def _clean_estimate(self, x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, abar: torch.Tensor):
        """The guided estimates of the clean latent and of the noise, for samples each at its own timestep."""
        unet, guided = self.img2img.unet, self.guidance > 1
        out = unet(torch.cat([x, x]) if guided else x, torch.cat([t, t]) if guided else t,
                   encoder_hidden_states=embeds).sample
        if guided:
            uncond, cond = out.chunk(2)
            out = uncond + self.guidance * (cond - uncond)
        a = abar[t].view(-1, 1, 1, 1).to(x.dtype)
        kind = self.img2img.scheduler.config.prediction_type
        if kind == "epsilon":
            return (x - (1 - a).sqrt() * out) / a.sqrt(), out
        if kind == "v_prediction":
            return a.sqrt() * x - (1 - a).sqrt() * out, a.sqrt() * out + (1 - a).sqrt() * x
        raise EngineError(f"generator model {self.model}: prediction type {kind!r} has no clean-latent estimate")

    def sample(self, prompts: list[str], seeds: list[int]) -> Result:
        """Pure text-to-image from noise (the Txt2Img baseline)."""
        return self._per_lora(prompts, lambda ix: self._sample([prompts[i] for i in ix], [seeds[i] for i in ix]))

    def _sample(self, prompts: list[str], seeds: list[int]) -> Result:
        output = self.txt2img(
            prompt=prompts, num_inference_steps=self.steps, guidance_scale=self.guidance,
            negative_prompt=[""] * len(prompts), generator=self._noise(seeds), height=self.size, width=self.size,
        )
        return Result(self._kept(output), len(prompts) * self._passes(self.steps))


