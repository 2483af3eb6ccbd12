"""Tiny random-weight pipelines of real families, built offline, for tests and demos.

They go through every production loading path (a save_pretrained directory, the
Hugging Face cache layout, an s3:// prefix) and generate 64x64 video in seconds
on a CPU. Shapes follow diffusers' own fast tests; the text encoders and
tokenizers, which those tests fetch from the Hub, are built here instead
(WordLevel tokenizers, T5/UMT5/Llama/Llava encoders of width 16-32; for
HunyuanVideo I2V a tokenizer that splits as Llava-Llama-3's does, so the
pipeline's default prompt template applies unchanged).

    python -m videogen_runner.tiny_models --family wan-t2v --out DIR \
        [--hf-cache HF_HOME --repo-id org/name] [--s3-uri s3://bucket/prefix]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FAMILIES = (
    "wan-t2v",
    "wan-i2v",
    "wan22-ti2v",
    "ltx",
    "cogvideox-t2v",
    "cogvideox-i2v",
    "mochi",
    "skyreels-v2-t2v",
    "skyreels-v2-i2v",
    "i2vgen-xl",
    "easyanimate-t2v",
    "easyanimate-inp",
    "hunyuanvideo-t2v",
    "hunyuanvideo-i2v",
    "hunyuanvideo-i2v-33ch",
    "svd",
    "ltx2",
)
SEED = 0
TEXT_DIM = 32

# Enough words that demo prompts tokenize to something other than <unk>.
_WORDS = (
    "a an the of in on at with and to from over under near by is are "
    "cat dog bird fish horse fox person child robot car boat train tree flower "
    "runs walks flies swims jumps dances sits sleeps plays rides "
    "beach sea ocean river lake forest city street mountain snow rain sky sunset night day "
    "red orange yellow green blue purple black white golden bright dark slow fast small big "
    "camera shot close wide cinematic video"
)


def _lib(name: str) -> Any:
    """diffusers, transformers and tokenizers as untyped handles: their constructors carry no annotations."""
    return importlib.import_module(name)


def _seeded() -> None:
    import torch

    torch.manual_seed(SEED)


def build_tokenizer(model_max_length: int = 512) -> Any:
    """A T5-like tokenizer (pad=0, eos=1, unk=2) that needs no download."""
    tokenizers = _lib("tokenizers")
    transformers = _lib("transformers")

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in _WORDS.split():
        vocab.setdefault(word, len(vocab))
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = None
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.post_processor = tokenizers.processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def _text_encoder(kind: str, vocab_size: int) -> Any:
    transformers = _lib("transformers")
    _seeded()
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "d_model": TEXT_DIM,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
    }
    if kind == "umt5":
        return transformers.UMT5EncoderModel(transformers.UMT5Config(**common))
    return transformers.T5EncoderModel(transformers.T5Config(**common))


def _clip_vision_config() -> Any:
    """The tiny CLIP image encoder Wan-style image-to-video pipelines share."""
    return _lib("transformers").CLIPVisionConfig(
        hidden_size=4,
        projection_dim=4,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        intermediate_size=16,
        patch_size=1,
    )


def _wan_vae() -> Any:
    _seeded()
    return _lib("diffusers").AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def _wan_transformer(
    in_channels: int, image_dim: int | None, out_channels: int = 16, model: str = "WanTransformer3DModel"
) -> Any:
    """A tiny Wan-architecture DiT; `model` names the class (SkyReels-V2 shares Wan's configuration)."""
    _seeded()
    return getattr(_lib("diffusers"), model)(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        # As the real models: positional tables long enough for any size the contract allows.
        rope_max_seq_len=1024,
        image_dim=image_dim,
    )


def build_wan_t2v() -> Any:
    diffusers = _lib("diffusers")
    tokenizer = build_tokenizer()
    return diffusers.WanPipeline(
        tokenizer=tokenizer,
        text_encoder=_text_encoder("umt5", len(tokenizer)),
        vae=_wan_vae(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=_wan_transformer(in_channels=16, image_dim=None),
    )


def build_wan_i2v() -> Any:
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")
    tokenizer = build_tokenizer()
    _seeded()
    image_encoder = transformers.CLIPVisionModel(_clip_vision_config())
    return diffusers.WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=_text_encoder("umt5", len(tokenizer)),
        vae=_wan_vae(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0),
        image_processor=transformers.CLIPImageProcessor(crop_size=32, size=32),
        image_encoder=image_encoder,
        # 16 noise + 4 mask + 16 image-latent channels.
        transformer=_wan_transformer(in_channels=36, image_dim=4),
    )


def build_wan22_ti2v() -> Any:
    """Wan 2.2 TI2V-5B's layout: a 16x VAE with 2x2 pixel patches and 48 latent channels, one
    transformer, expand_timesteps; text and image to video from the same directory."""
    diffusers = _lib("diffusers")
    tokenizer = build_tokenizer()
    _seeded()
    vae = diffusers.AutoencoderKLWan(
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )
    return diffusers.WanPipeline(
        tokenizer=tokenizer,
        text_encoder=_text_encoder("umt5", len(tokenizer)),
        vae=vae,
        scheduler=diffusers.UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
        ),
        transformer=_wan_transformer(in_channels=48, image_dim=None, out_channels=48),
        expand_timesteps=True,
    )


def _cogvideox_vae() -> Any:
    _seeded()
    return _lib("diffusers").AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )


def build_cogvideox_t2v() -> Any:
    diffusers = _lib("diffusers")
    tokenizer = build_tokenizer()
    _seeded()
    transformer = diffusers.CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=TEXT_DIM,
        num_layers=1,
        sample_width=8,
        sample_height=8,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
    )
    return diffusers.CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=_text_encoder("t5", len(tokenizer)),
        vae=_cogvideox_vae(),
        transformer=transformer,
        scheduler=diffusers.CogVideoXDDIMScheduler(),
    )


def build_cogvideox_i2v() -> Any:
    """As CogVideoX-5b-I2V: rotary plus learned positional embeddings, which exist for one size only
    (here 64x64, latent 8x8)."""
    diffusers = _lib("diffusers")
    tokenizer = build_tokenizer()
    _seeded()
    transformer = diffusers.CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=TEXT_DIM,
        num_layers=1,
        sample_width=8,
        sample_height=8,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )
    return diffusers.CogVideoXImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=_text_encoder("t5", len(tokenizer)),
        vae=_cogvideox_vae(),
        transformer=transformer,
        scheduler=diffusers.CogVideoXDDIMScheduler(),
    )


def build_mochi() -> Any:
    diffusers = _lib("diffusers")
    tokenizer = build_tokenizer()
    _seeded()
    transformer = diffusers.MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=12,
        out_channels=None,
        qk_norm="rms_norm",
        text_embed_dim=TEXT_DIM,
        time_embed_dim=4,
        activation_fn="swiglu",
    )
    _seeded()
    vae = diffusers.AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        # Group norms of 32 groups: 32 channels is the floor.
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    )
    return diffusers.MochiPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_text_encoder("t5", len(tokenizer)),
        tokenizer=tokenizer,
        transformer=transformer,
    )


def build_skyreels_v2_t2v() -> Any:
    diffusers = _lib("diffusers")
    tokenizer = build_tokenizer()
    transformer = _wan_transformer(16, None, model="SkyReelsV2Transformer3DModel")
    return diffusers.SkyReelsV2Pipeline(
        tokenizer=tokenizer,
        text_encoder=_text_encoder("umt5", len(tokenizer)),
        transformer=transformer,
        vae=_wan_vae(),
        scheduler=diffusers.UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0
        ),
    )


def build_i2vgen_xl() -> Any:
    """I2VGen-XL: a 3D UNet (no temporal compression, no callback_on_step_end, target_fps), CLIP text
    and image encoders; 77-token CLIP prompts."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")
    tokenizer = build_tokenizer(model_max_length=77)
    _seeded()
    unet = diffusers.I2VGenXLUNet(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=4,
        attention_head_dim=4,
        num_attention_heads=None,
        norm_num_groups=2,
    )
    _seeded()
    vae = diffusers.AutoencoderKL(
        # 4x spatial compression: keeps the UNet's work small on a CPU.
        block_out_channels=(8, 8, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        sample_size=32,
        norm_num_groups=2,
    )
    _seeded()
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=0,
            hidden_size=4,
            intermediate_size=16,
            layer_norm_eps=1e-05,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            hidden_act="gelu",
            projection_dim=32,
        )
    )
    _seeded()
    image_encoder = transformers.CLIPVisionModelWithProjection(_clip_vision_config())
    return diffusers.I2VGenXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=image_encoder,
        feature_extractor=transformers.CLIPImageProcessor(crop_size=32, size=32),
        unet=unet,
        scheduler=diffusers.DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
        ),
    )


def build_svd() -> Any:
    """Stable Video Diffusion (img2vid, 14 frames): a spatio-temporal UNet conditioned on the CLIP image
    embedding, on the image's VAE latents (concatenated per frame) and on fps/motion bucket/noise
    augmentation (three added time ids); an 8x VAE with a temporal decoder; no text at all. Shapes as
    diffusers' fast tests, but the VAE compresses 8x as the real one (its group norms need 32 channels)
    and the CLIP encoder reads the 224x224 image the pipeline resizes every input to."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")
    _seeded()
    unet = diffusers.UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        in_channels=8,  # noise latents + the image's latents
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=(2, 4),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=3 * 8,  # fps, motion_bucket_id, noise_aug_strength
        num_frames=14,
    )
    _seeded()
    vae = diffusers.AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 32, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        latent_channels=4,
    )
    _seeded()
    image_encoder = transformers.CLIPVisionModelWithProjection(
        transformers.CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            intermediate_size=37,
            patch_size=32,
        )
    )
    return diffusers.StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        # SVD's own scheduler configuration (stabilityai/stable-video-diffusion-img2vid).
        scheduler=diffusers.EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            interpolation_type="linear",
            num_train_timesteps=1000,
            prediction_type="v_prediction",
            sigma_max=700.0,
            sigma_min=0.002,
            steps_offset=1,
            timestep_spacing="leading",
            timestep_type="continuous",
            use_karras_sigmas=True,
        ),
        feature_extractor=transformers.CLIPImageProcessor(crop_size=224, size=224),
    )


# Renders the chat messages EasyAnimate builds ({"role", "content": [{"type": "text", "text"}]}) as plain text.
_CHAT_TEMPLATE = (
    "{% for message in messages %}{% for part in message['content'] %}{{ part['text'] }}{% endfor %}{% endfor %}"
)


def _easyanimate(inpaint: bool) -> Any:
    """EasyAnimate V5.1 layout with a small BERT text encoder (a type the pipeline accepts) in place of
    Qwen2-VL; the inpaint variant's transformer also takes the mask and masked-video latents."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")
    tokenizer = build_tokenizer()
    tokenizer.chat_template = _CHAT_TEMPLATE
    _seeded()
    text_encoder = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=512,
        ),
        add_pooling_layer=False,
    )
    _seeded()
    transformer = diffusers.EasyAnimateTransformer3DModel(
        # 3D RoPE splits the head dimension 2:3:3, each part even: 16 is the smallest that works.
        num_attention_heads=2,
        attention_head_dim=16,
        # noise latents (4), plus for inpainting the mask (1) and the masked video's latents (4)
        in_channels=9 if inpaint else 4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=16,
        num_layers=1,
        sample_width=16,
        sample_height=16,
        patch_size=2,
    )
    _seeded()
    vae = diffusers.AutoencoderKLMagvit(
        in_channels=3,
        out_channels=3,
        down_block_types=(
            "SpatialDownBlock3D",
            "SpatialTemporalDownBlock3D",
            "SpatialTemporalDownBlock3D",
            "SpatialTemporalDownBlock3D",
        ),
        up_block_types=(
            "SpatialUpBlock3D",
            "SpatialTemporalUpBlock3D",
            "SpatialTemporalUpBlock3D",
            "SpatialTemporalUpBlock3D",
        ),
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        spatial_group_norm=False,
    )
    cls = diffusers.EasyAnimateInpaintPipeline if inpaint else diffusers.EasyAnimatePipeline
    return cls(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
    )


def build_easyanimate_t2v() -> Any:
    return _easyanimate(inpaint=False)


def build_easyanimate_inp() -> Any:
    return _easyanimate(inpaint=True)


def _hunyuan_clip_text(tokenizer_2: Any) -> Any:
    """The CLIP text encoder HunyuanVideo takes its pooled prompt embedding from."""
    _seeded()
    return _lib("transformers").CLIPTextModel(
        _lib("transformers").CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=0,
            hidden_size=8,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer_2),
            max_position_embeddings=77,
            projection_dim=32,
        )
    )


def _hunyuan_transformer(**variant: Any) -> Any:
    _seeded()
    config: dict[str, Any] = {
        "in_channels": 4,
        "out_channels": 4,
        "num_attention_heads": 2,
        "attention_head_dim": 10,
        "num_layers": 1,
        "num_single_layers": 1,
        "num_refiner_layers": 1,
        "patch_size": 1,
        "patch_size_t": 1,
        "guidance_embeds": True,
        "text_embed_dim": 16,
        "pooled_projection_dim": 8,
        "rope_axes_dim": (2, 4, 4),
    }
    return _lib("diffusers").HunyuanVideoTransformer3DModel(**{**config, **variant})


def _hunyuan_vae() -> Any:
    _seeded()
    return _lib("diffusers").AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )


def build_hunyuanvideo_t2v() -> Any:
    """HunyuanVideo: Llama text encoder (hidden states, 95-token template crop) plus CLIP pooled text,
    guidance-embedded transformer; the encoders are tiny and built here instead of fetched."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")
    tokenizer = build_tokenizer()
    tokenizer_2 = build_tokenizer(model_max_length=77)
    _seeded()
    text_encoder = transformers.LlamaModel(
        transformers.LlamaConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=0,
            hidden_size=16,
            intermediate_size=37,
            num_attention_heads=4,
            num_key_value_heads=4,
            num_hidden_layers=3,
            vocab_size=len(tokenizer),
            max_position_embeddings=512,
        )
    )
    return diffusers.HunyuanVideoPipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=_hunyuan_transformer(),
        vae=_hunyuan_vae(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=_hunyuan_clip_text(tokenizer_2),
        tokenizer_2=tokenizer_2,
    )


# Llama 3's pre-tokenizer pattern: the library's default HunyuanVideo-I2V prompt template counts
# Llama 3 tokens (<image> at 5, the user's prompt from 103, <|end_header_id|> marking the sections),
# so a tokenizer that splits text as Llama 3 does lets the tiny model run with that default template.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAVA_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<image>",
    "<unk>",
)


def build_llava_llama3_tokenizer(template: str) -> Any:
    """A word-level tokenizer that splits as Llava-Llama-3's does (same special tokens, BOS first,
    Llama 3's pre-tokenizer), with the template's pieces and the demo words in its vocabulary."""
    import re

    tokenizers = _lib("tokenizers")
    transformers = _lib("transformers")

    split = tokenizers.pre_tokenizers.Split(tokenizers.Regex(_LLAMA3_SPLIT), behavior="isolated")
    vocab = {token: i for i, token in enumerate(_LLAVA_SPECIALS)}
    for segment in re.split("|".join(map(re.escape, _LLAVA_SPECIALS)), template.replace("{}", "")):
        for piece, _ in split.pre_tokenize_str(segment):
            vocab.setdefault(piece, len(vocab))
    for word in _WORDS.split():
        vocab.setdefault(word, len(vocab))
        vocab.setdefault(" " + word, len(vocab))
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = split
    tok.add_special_tokens(list(_LLAVA_SPECIALS))
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 0)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        unk_token="<unk>",
    )


def _hunyuanvideo_i2v(image_condition_type: str) -> Any:
    """HunyuanVideo-I2V: a Llava text encoder that reads the image as 576 tokens inside the
    library's default prompt template, CLIP pooled text, and a transformer conditioned on the image
    in one of the two ways the checkpoints use (`image_condition_type`)."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")
    # The pipeline's own default template, which the runner leaves in place.
    template = _lib("diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video").DEFAULT_PROMPT_TEMPLATE

    tokenizer = build_llava_llama3_tokenizer(str(template["template"]))
    tokenizer_2 = build_tokenizer(model_max_length=77)
    # 24x24 pixels in patches of 1: the 576 image tokens the default template reserves.
    side = 24
    _seeded()
    text_encoder = transformers.LlavaForConditionalGeneration(
        transformers.LlavaConfig(
            text_config=transformers.LlamaConfig(
                bos_token_id=0,
                eos_token_id=4,
                pad_token_id=1,
                hidden_size=16,
                intermediate_size=37,
                num_attention_heads=4,
                num_key_value_heads=4,
                num_hidden_layers=2,
                vocab_size=len(tokenizer),
                # 256 prompt tokens plus the template, with <image> expanded to 576.
                max_position_embeddings=1024,
            ),
            vision_config=transformers.CLIPVisionConfig(
                hidden_size=8,
                intermediate_size=37,
                projection_dim=32,
                num_attention_heads=4,
                num_hidden_layers=2,
                image_size=side,
                patch_size=1,
            ),
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            pad_token_id=1,
        )
    )
    if image_condition_type == "token_replace":
        # The 16-channel checkpoint: guidance embedded, the first latent frame is the image's latent.
        transformer = _hunyuan_transformer(image_condition_type="token_replace")
    else:
        # The 33-channel checkpoint: noise, image latents (frame 0 only) and a mask, concatenated;
        # no guidance embedding.
        transformer = _hunyuan_transformer(
            image_condition_type="latent_concat", in_channels=2 * 4 + 1, guidance_embeds=False
        )
    return diffusers.HunyuanVideoImageToVideoPipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=_hunyuan_vae(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=_hunyuan_clip_text(tokenizer_2),
        tokenizer_2=tokenizer_2,
        image_processor=transformers.CLIPImageProcessor(crop_size=side, size=side),
    )


def build_hunyuanvideo_i2v() -> Any:
    return _hunyuanvideo_i2v("token_replace")


def build_hunyuanvideo_i2v_33ch() -> Any:
    return _hunyuanvideo_i2v("latent_concat")


def build_skyreels_v2_i2v() -> Any:
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")
    tokenizer = build_tokenizer()
    _seeded()
    image_encoder = transformers.CLIPVisionModelWithProjection(_clip_vision_config())
    # 16 noise + 4 mask + 16 image-latent channels.
    transformer = _wan_transformer(36, 4, model="SkyReelsV2Transformer3DModel")
    return diffusers.SkyReelsV2ImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=_text_encoder("umt5", len(tokenizer)),
        image_encoder=image_encoder,
        image_processor=transformers.CLIPImageProcessor(crop_size=32, size=32),
        transformer=transformer,
        vae=_wan_vae(),
        scheduler=diffusers.UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
        ),
    )


def build_ltx() -> Any:
    diffusers = _lib("diffusers")
    tokenizer = build_tokenizer()
    _seeded()
    transformer = diffusers.LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=TEXT_DIM,
    )
    _seeded()
    vae = diffusers.AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    return diffusers.LTXPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_text_encoder("t5", len(tokenizer)),
        tokenizer=tokenizer,
        transformer=transformer,
    )


def build_ltx2() -> Any:
    """LTX-2: video and audio denoised together by one transformer, a Gemma 3 text encoder whose
    stacked hidden states feed the text connectors, a 32x/8x video VAE (4x4 pixel patches, as the
    real one), an audio VAE of mel spectrograms and a vocoder. The vocoder upsamples by the mel hop
    (160), so the waveform lasts as long as the video, as with the real model. The connectors and the
    vocoder are classes of diffusers.pipelines.ltx2 (model_index.json names the library `ltx2`)."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")
    ltx2 = _lib("diffusers.pipelines.ltx2")
    tokenizer = build_tokenizer(model_max_length=1024)
    _seeded()
    # The connectors' attention width (4 heads x 8) must equal the text encoder's hidden size.
    text_encoder = transformers.Gemma3ForConditionalGeneration(
        transformers.Gemma3Config(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 1,
                "head_dim": 8,
                "max_position_embeddings": 1024,
                "sliding_window": 64,
                "pad_token_id": 0,
                "bos_token_id": 1,
                "eos_token_id": 1,
            },
            vision_config={
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 28,
                "patch_size": 14,
            },
            mm_tokens_per_image=4,
            image_token_index=len(tokenizer) - 1,
            boi_token_index=len(tokenizer) - 2,
            eoi_token_index=len(tokenizer) - 3,
        )
    )
    hidden = 32
    _seeded()
    transformer = diffusers.LTX2VideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=hidden,
        rope_double_precision=False,
        rope_type="split",
    )
    _seeded()
    connectors = ltx2.LTX2TextConnectors(
        caption_channels=hidden,
        text_proj_in_factor=2 + 1,  # the encoder's layers plus its embeddings
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_double_precision=False,
        rope_type="split",
    )
    _seeded()
    vae = diffusers.AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 16, 32, 64),
        decoder_block_out_channels=(8, 16, 32),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal",) * 3,
        upsample_residual=(True,) * 3,
        upsample_factor=(2, 2, 2),
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
    )
    _seeded()
    audio_vae = diffusers.AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    )
    _seeded()
    vocoder = ltx2.vocoder.LTX2Vocoder(
        in_channels=2 * 8,  # audio VAE output channels x mel bins
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[20, 8, 8],
        upsample_factors=[10, 4, 4],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000,
    )
    return diffusers.LTX2Pipeline(
        transformer=transformer,
        vae=vae,
        audio_vae=audio_vae,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        connectors=connectors,
        vocoder=vocoder,
    )


BUILDERS: dict[str, Callable[[], Any]] = {
    "wan-t2v": build_wan_t2v,
    "wan-i2v": build_wan_i2v,
    "wan22-ti2v": build_wan22_ti2v,
    "ltx": build_ltx,
    "cogvideox-t2v": build_cogvideox_t2v,
    "cogvideox-i2v": build_cogvideox_i2v,
    "mochi": build_mochi,
    "skyreels-v2-t2v": build_skyreels_v2_t2v,
    "skyreels-v2-i2v": build_skyreels_v2_i2v,
    "i2vgen-xl": build_i2vgen_xl,
    "easyanimate-t2v": build_easyanimate_t2v,
    "easyanimate-inp": build_easyanimate_inp,
    "hunyuanvideo-t2v": build_hunyuanvideo_t2v,
    "hunyuanvideo-i2v": build_hunyuanvideo_i2v,
    "hunyuanvideo-i2v-33ch": build_hunyuanvideo_i2v_33ch,
    "svd": build_svd,
    "ltx2": build_ltx2,
}
# What a tiny model's own profile adds to its CPU presets: LTX-2 applies spatio-temporal guidance at
# block 28 of 48 by default; the tiny transformer has 2.
TINY_PROFILE_EXTRAS: dict[str, dict[str, Any]] = {
    "ltx2": {"callDefaults": {"spatio_temporal_guidance_blocks": [1]}},
}


def tiny_profile(frame_step: int, size_multiple: int) -> dict[str, Any]:
    """The profile a tiny model ships in its directory: presets a CPU runs in seconds, valid for the
    model's own shape rules, so a minimal spec (model, task, prompt) works with every preset."""

    def frames(k: int) -> int:
        return k * frame_step + 1 if frame_step > 1 else 4 * k

    side = max(64, size_multiple)
    return {
        "presets": {
            "fast": {"width": side, "height": side, "frames": frames(1), "fps": 8, "steps": 2, "guidanceScale": 5.0},
            "standard": {
                "width": side,
                "height": side,
                "frames": frames(2),
                "fps": 8,
                "steps": 2,
                "guidanceScale": 5.0,
            },
            "quality": {
                "width": side + size_multiple,
                "height": side,
                "frames": frames(2),
                "fps": 8,
                "steps": 3,
                "guidanceScale": 5.0,
            },
        },
    }


def save_tiny_pipeline(family: str, out: Path) -> Path:
    """Build the family's tiny pipeline and save_pretrained it to `out` (created; must be empty or absent),
    with a videogen-profile.json whose presets fit a CPU (see profiles.py)."""
    from .profiles import MODEL_PROFILE_FILES, resolve_profile

    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    pipe = BUILDERS[family]()
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(out), safe_serialization=True)
    resolved = resolve_profile(pipe, out, {})
    profile = {
        **tiny_profile(resolved.geometry.frame_step, resolved.size_multiple),
        **TINY_PROFILE_EXTRAS.get(family, {}),
    }
    (out / MODEL_PROFILE_FILES[1]).write_text(json.dumps(profile, indent=2) + "\n")
    log.info("saved tiny %s pipeline to %s", family, out)
    return out


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_commit(root: Path) -> str:
    """A 40-hex 'commit' that names the directory's content (same files, same commit)."""
    digest = hashlib.sha1()
    for path in _files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + _sha256(path).encode() + b"\n")
    return digest.hexdigest()


def install_in_hf_cache(model_dir: Path, hf_home: Path, repo_id: str, revision: str = "main") -> Path:
    """Lay the model out as huggingface_hub does: blobs by hash, snapshot symlinks, refs/<revision>."""
    hub = hf_home / "hub"
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    commit = tree_commit(model_dir)
    snapshot = repo / "snapshots" / commit
    for path in _files(model_dir):
        rel = path.relative_to(model_dir)
        blob = repo / "blobs" / _sha256(path)
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            shutil.copyfile(path, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    refs = repo / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / revision).write_text(commit)
    log.info("installed %s@%s (commit %s) in %s", repo_id, revision, commit[:12], hub)
    return snapshot


def upload_to_s3(model_dir: Path, s3_uri: str, client: Any | None = None) -> list[str]:
    """Upload every file under s3://bucket/prefix/, with its sha256 in the object metadata."""
    from .s3 import make_client, split_s3_uri

    client = client or make_client()
    bucket, prefix = split_s3_uri(s3_uri)
    prefix = prefix.strip("/")
    keys = []
    for path in _files(model_dir):
        rel = path.relative_to(model_dir).as_posix()
        key = f"{prefix}/{rel}" if prefix else rel
        client.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": _sha256(path)}})
        keys.append(key)
    log.info("uploaded %d files to %s", len(keys), s3_uri)
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m videogen_runner.tiny_models", description=__doc__.split("\n")[0])
    parser.add_argument("--family", required=True, choices=FAMILIES)
    parser.add_argument("--out", required=True, type=Path, help="directory to save_pretrained into")
    parser.add_argument("--hf-cache", type=Path, help="HF_HOME to install the model into (with --repo-id)")
    parser.add_argument("--repo-id", help="org/name under which it appears in the HF cache")
    parser.add_argument("--revision", default="main")
    parser.add_argument("--s3-uri", help="s3://bucket/prefix to upload the model to")
    args = parser.parse_args(argv)
    if bool(args.hf_cache) != bool(args.repo_id):
        parser.error("--hf-cache and --repo-id go together")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = save_tiny_pipeline(args.family, args.out)
    report: dict[str, Any] = {"family": args.family, "path": str(out)}
    if args.hf_cache:
        snapshot = install_in_hf_cache(out, args.hf_cache, args.repo_id, args.revision)
        report["hf"] = {"uri": f"hf://{args.repo_id}@{args.revision}", "snapshot": str(snapshot)}
    if args.s3_uri:
        report["s3"] = {"uri": args.s3_uri, "keys": upload_to_s3(out, args.s3_uri)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
