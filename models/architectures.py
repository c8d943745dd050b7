"""Random-weight Stable Diffusion 1.5 pipelines: the real block layout at full or tiny width.

Used to exercise the exact loading path of a real checkpoint offline, and to benchmark the
engine at the full SD 1.5 size on a GPU. The weights are random: images are noise-like.
"""
from __future__ import annotations

from pathlib import Path

from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from models.embedded_ldm import MAX_TOKENS, SCHEDULE, write_tokenizer

SD15 = {  # widths of the released model, then a tiny variant with the same layout
    "full": dict(unet=(320, 640, 1280, 1280), vae=(128, 256, 512, 512), text=768, layers=12, heads=12, groups=32,
                 head_dim=8),
    "tiny": dict(unet=(32, 64, 64, 64), vae=(16, 32, 32, 32), text=32, layers=2, heads=2, groups=8, head_dim=2),
}


def sd15_pipeline(width: str, resolution: int, words: list[str], tokenizer_dir: Path) -> StableDiffusionPipeline:
    w = SD15[width]
    tokenizer = write_tokenizer(tokenizer_dir, words)
    unet = UNet2DConditionModel(
        sample_size=resolution // 8, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=w["unet"], norm_num_groups=w["groups"], cross_attention_dim=w["text"],
        attention_head_dim=w["head_dim"],
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=resolution, layers_per_block=2,
        block_out_channels=w["vae"], norm_num_groups=w["groups"],
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        scaling_factor=0.18215,
    )
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=w["text"], intermediate_size=4 * w["text"],
        num_hidden_layers=w["layers"], num_attention_heads=w["heads"], max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"), eos_token_id=eos, pad_token_id=eos,
    ))
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DPMSolverMultistepScheduler(**SCHEDULE, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
