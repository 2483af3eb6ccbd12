"""Small, explicit bridges between library versions, applied to a loaded pipeline.

Each shim names the break it bridges and does nothing where the break is absent, so a fixed
library version makes it inert rather than wrong.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def apply_compat_shims(pipe: Any) -> list[str]:
    """Apply every shim that fits this pipeline; return what was done (for the logs)."""
    done: list[str] = []
    text_encoder = getattr(pipe, "text_encoder", None)
    # transformers 5 flattened CLIPTextModel (no .text_model wrapper any more), while pipelines
    # that apply clip_skip (I2VGen-XL, clip_skip=1 by default) still call
    # text_encoder.text_model.final_layer_norm. Point .text_model at the model itself; set through
    # object.__setattr__ so torch does not register a module cycle (state_dict, .to() stay as they are).
    if (
        text_encoder is not None
        and type(text_encoder).__name__ == "CLIPTextModel"
        and "text_model" not in vars(text_encoder)
        and "text_model" not in getattr(text_encoder, "_modules", {})
        and hasattr(text_encoder, "final_layer_norm")
    ):
        object.__setattr__(text_encoder, "text_model", text_encoder)
        done.append("CLIPTextModel.text_model -> itself (transformers 5 layout, clip_skip callers)")
    # diffusers' EasyAnimateInpaintPipeline reads vae.config.cache_mag_vae, which AutoencoderKLMagvit
    # does not register (so loading drops it): every image-to-video call fails with AttributeError.
    # EasyAnimate V5.1's magvit VAE processes the first frame on its own, i.e. True.
    vae = getattr(pipe, "vae", None)
    if type(pipe).__name__ == "EasyAnimateInpaintPipeline" and vae is not None and "cache_mag_vae" not in vae.config:
        vae.register_to_config(cache_mag_vae=True)
        done.append("AutoencoderKLMagvit config cache_mag_vae=True (read by EasyAnimateInpaintPipeline)")
    for note in done:
        log.info("compat: %s", note)
    return done
