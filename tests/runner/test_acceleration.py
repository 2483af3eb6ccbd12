"""spec.acceleration on the tiny Wan model: each speed-up really applies (blocks skipped, weights
stored in fp8, blocks compiled, kernel chosen), defaults follow the preset, and the result says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from runner_support import PROMPT, RunInProcess, TinyModels, tiny_spec

from videogen_api import v1alpha1 as api
from videogen_runner import acceleration as accel
from videogen_runner.generate import GenerationRequest, generate
from videogen_runner.memory import MemoryPlan
from videogen_runner.models import LoadedModel, inspect_model, load_pipeline
from videogen_runner.presets import Family, GenerationParams

CPU = MemoryPlan(api.MemoryMode.NONE, on_cuda=False, vae_tiling=False, reason="cpu")
STEPS = 6
PARAMS = GenerationParams(width=64, height=64, num_frames=9, fps=8, steps=STEPS, guidance_scale=5.0, seed=3)


def load(path: Path) -> LoadedModel:
    return load_pipeline(inspect_model(str(path), path, api.Task.TEXT_TO_VIDEO), cuda=False)


def plan_for(spec: dict[str, Any] | None, preset: api.Preset = api.Preset.STANDARD) -> accel.AccelerationPlan:
    parsed = api.AccelerationSpec.model_validate(spec) if spec is not None else None
    return accel.resolve_acceleration(
        parsed, family=Family.WAN, preset=preset, cuda=False, memory_mode=api.MemoryMode.NONE
    )


def count_block_calls(loaded: LoadedModel) -> list[int]:
    """Times each block really computed: its feed-forward runs only then (a step cache that skips
    a block still goes through the block's __call__, returning the cached output)."""
    blocks = loaded.pipe.transformer.blocks
    calls = [0] * len(blocks)

    def counter(index: int) -> Any:
        def hook(_module: Any, _args: Any) -> None:
            calls[index] += 1

        return hook

    for i, block in enumerate(blocks):
        block.ffn.register_forward_pre_hook(counter(i))
    return calls


def run(loaded: LoadedModel) -> int:
    request = GenerationRequest(prompt=PROMPT, negative_prompt=None, params=PARAMS)
    frames = generate(loaded, request, CPU, lambda _s, _t: None, env={})
    return len(list(frames.iterator))


class TestDecision:
    @pytest.mark.parametrize("family", [Family.WAN, Family.LTX, Family.COGVIDEOX])
    def test_only_the_fast_preset_trades_quality(self, family: Family) -> None:
        def resolve(preset: api.Preset) -> accel.AccelerationPlan:
            return accel.resolve_acceleration(
                None, family=family, preset=preset, cuda=True, memory_mode=api.MemoryMode.NONE
            )

        fast = resolve(api.Preset.FAST)
        assert fast.step_cache is not None and fast.step_cache.type is api.StepCacheType.FIRST_BLOCK
        for preset in (api.Preset.STANDARD, api.Preset.QUALITY):
            chosen = resolve(preset)
            assert chosen.step_cache is None and not chosen.fp8_storage, preset
            assert chosen.compile, "compile does not trade quality: on by default with a GPU"

    def test_generic_family_gets_no_step_cache_by_default(self) -> None:
        chosen = accel.resolve_acceleration(
            None, family=Family.GENERIC, preset=api.Preset.FAST, cuda=True, memory_mode=api.MemoryMode.NONE
        )
        assert chosen.step_cache is None

    @pytest.mark.parametrize(
        ("compile_", "cuda", "mode", "expected"),
        [
            ("auto", False, api.MemoryMode.NONE, False),
            ("auto", True, api.MemoryMode.NONE, True),
            ("auto", True, api.MemoryMode.MODEL_OFFLOAD, True),
            ("auto", True, api.MemoryMode.GROUP_OFFLOAD, False),
            ("auto", True, api.MemoryMode.SEQUENTIAL_OFFLOAD, False),
            ("on", False, api.MemoryMode.NONE, True),
            ("off", True, api.MemoryMode.NONE, False),
        ],
    )
    def test_compile_decision(self, compile_: str, cuda: bool, mode: api.MemoryMode, expected: bool) -> None:
        chosen = accel.resolve_acceleration(
            api.AccelerationSpec.model_validate({"compile": compile_}),
            family=Family.WAN,
            preset=api.Preset.STANDARD,
            cuda=cuda,
            memory_mode=mode,
        )
        assert chosen.compile is expected, chosen.reasons["compile"]

    def test_an_explicit_step_cache_wins_over_the_preset(self) -> None:
        chosen = plan_for({"stepCache": {"type": "none"}}, preset=api.Preset.FAST)
        assert chosen.step_cache is None and chosen.reasons["stepCache"] == "requested"
        chosen = plan_for({"stepCache": {"type": "taylorseer", "interval": 3}}, preset=api.Preset.QUALITY)
        assert chosen.step_cache == accel.StepCache(api.StepCacheType.TAYLORSEER, interval=3)

    @pytest.mark.parametrize(
        ("step_cache", "field"),
        [
            ({"type": "mag"}, "magRatios"),
            ({"type": "taylorseer", "threshold": 0.1}, "threshold"),
            ({"type": "first-block", "interval": 2}, "interval"),
            ({"type": "first-block", "magRatios": [1.0, 0.9]}, "magRatios"),
            ({"type": "first-block", "threshold": 0}, "threshold"),
        ],
    )
    def test_bad_step_cache_fields_are_refused_naming_the_field(self, step_cache: dict[str, Any], field: str) -> None:
        with pytest.raises(ValueError, match=field):
            api.AccelerationSpec.model_validate({"stepCache": step_cache})

    def test_acceleration_is_hashed_only_when_set(self) -> None:
        base = api.VideoGenJobSpec.model_validate(tiny_spec("/models/x"))
        explicit_default = api.VideoGenJobSpec.model_validate(tiny_spec("/models/x", acceleration={}))
        cached = api.VideoGenJobSpec.model_validate(
            tiny_spec("/models/x", acceleration={"stepCache": {"type": "first-block"}})
        )
        assert "acceleration" not in base.to_wire()
        assert len({api.spec_hash(base), api.spec_hash(explicit_default), api.spec_hash(cached)}) == 3

    def test_compile_caches_go_to_the_model_cache_volume(self, tmp_path: Path) -> None:
        dirs = accel.compile_cache_dirs({api.ENV_MODEL_CACHE: str(tmp_path)})
        assert dirs == {
            "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "compile-cache" / "inductor"),
            "TRITON_CACHE_DIR": str(tmp_path / "compile-cache" / "triton"),
        }
        mine = {api.ENV_MODEL_CACHE: str(tmp_path), "TRITON_CACHE_DIR": "/elsewhere"}
        assert accel.compile_cache_dirs(mine)["TRITON_CACHE_DIR"] == "/elsewhere", "an explicit setting wins"


class TestApplied:
    def test_first_block_cache_skips_the_remaining_blocks(self, tiny_models: TinyModels) -> None:
        plain = load(tiny_models.wan_t2v)
        plain_calls = count_block_calls(plain)
        assert run(plain) == 9
        # Every step runs every block twice (classifier-free guidance: conditional and unconditional).
        assert plain_calls == [2 * STEPS] * len(plain_calls)

        cached = load(tiny_models.wan_t2v)
        notes = accel.apply_after_placement(
            cached.pipe,
            plan_for({"stepCache": {"type": "first-block", "threshold": 1.0}}),
            cuda=False,
            steps=STEPS,
            env={},
        )
        calls = count_block_calls(cached)
        assert run(cached) == 9, "the video still decodes"
        assert "stepCache: first-block threshold 1.0 (requested)" in notes
        assert calls[0] == 2 * STEPS, "the first block always runs: its residual decides"
        assert 0 < calls[-1] < 2 * STEPS, f"later blocks are skipped on some steps: {calls}"

    def test_taylorseer_predicts_attention_instead_of_computing_it(self, tiny_models: TinyModels) -> None:
        loaded = load(tiny_models.wan_t2v)
        attn = loaded.pipe.transformer.blocks[0].attn1
        computed = [0]
        original = attn.processor.__call__

        class Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(original.__self__, name)

            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                computed[0] += 1
                return original(*args, **kwargs)

        attn.processor = Counting()
        notes = accel.apply_after_placement(
            loaded.pipe,
            plan_for({"stepCache": {"type": "taylorseer", "interval": 2}}),
            cuda=False,
            steps=STEPS,
            env={},
        )
        assert run(loaded) == 9
        assert "stepCache: taylorseer interval 2 (requested)" in notes
        assert 0 < computed[0] < 2 * STEPS, f"attention computed on refresh steps only: {computed[0]}"

    def test_fp8_weight_storage(self, tiny_models: TinyModels) -> None:
        import torch

        loaded = load(tiny_models.wan_t2v)
        before = loaded.component_bytes["transformer"]
        notes = accel.apply_before_placement(loaded.pipe, api.AccelerationSpec(weight_storage=api.WeightStorage.FP8))
        linear = loaded.pipe.transformer.blocks[0].ffn.net[2]
        assert linear.weight.dtype == torch.float8_e4m3fn
        assert loaded.pipe.transformer.patch_embedding.weight.dtype == torch.float32, "precision-critical kept"
        assert notes[0].startswith("weightStorage: fp8 (float8_e4m3fn storage, float32 compute")
        assert accel.with_plan_bytes(loaded).component_bytes["transformer"] < before, "the memory plan sees fewer bytes"
        assert run(loaded) == 9, "layers upcast when they run: the video still decodes"

    def test_compile_wraps_each_repeated_block_with_caches_on_the_volume(
        self, tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Compiling happens lazily at the first call; wrapping is what the runner does at load time.
        # (Running a compile on 2 CPU cores costs minutes; the GPU benchmark runs it.)
        monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
        monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
        loaded = load(tiny_models.wan_t2v)
        notes = accel.apply_after_placement(
            loaded.pipe, plan_for({"compile": "on"}), cuda=False, steps=STEPS, env={api.ENV_MODEL_CACHE: str(tmp_path)}
        )
        blocks = loaded.pipe.transformer.blocks
        assert all(block._compiled_call_impl is not None for block in blocks)
        assert f"compile: regional, {len(blocks)} x WanTransformerBlock fullgraph" in notes[-1]
        import os

        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compile-cache" / "inductor")
        assert (tmp_path / "compile-cache" / "triton").is_dir()

    def test_attention_backend(self, tiny_models: TinyModels) -> None:
        loaded = load(tiny_models.wan_t2v)
        notes = accel.apply_after_placement(
            loaded.pipe, plan_for({"attention": "math"}), cuda=False, steps=STEPS, env={}
        )
        assert notes[0] == "attention: math (requested)"
        assert loaded.pipe.transformer.blocks[0].attn1.processor._attention_backend == "_native_math"
        assert run(loaded) == 9

        other = load(tiny_models.wan_t2v)
        notes = accel.apply_after_placement(
            other.pipe, plan_for({"attention": "cudnn"}), cuda=False, steps=STEPS, env={}
        )
        assert notes[0] == "attention: cudnn not applied: needs a GPU; native SDPA used"
        # The dispatcher's active backend is process-wide: leave it as found for the other tests.
        other.pipe.transformer.set_attention_backend("native")


@pytest.mark.s3
def test_the_result_says_what_was_applied(
    tiny_models: TinyModels, run_inprocess: RunInProcess, s3_env: dict[str, str], bucket: str
) -> None:
    spec = tiny_spec(str(tiny_models.wan_t2v), preset="fast", output={"bucket": bucket})
    code, result = run_inprocess(spec, s3_env)
    assert code == 0, result
    assert result["acceleration"] == [
        "weightStorage: native (auto)",
        "attention: auto (PyTorch SDPA picks the kernel: cuDNN or flash on recent GPUs)",
        f"stepCache: first-block threshold {accel.DEFAULT_FIRST_BLOCK_THRESHOLD} (preset fast)",
        "compile: off (auto: no GPU; compiling for the CPU costs more than it saves)",
    ]


def test_mag_cache_skips_with_the_given_ratios(tiny_models: TinyModels) -> None:
    loaded = load(tiny_models.wan_t2v)
    # Ratios of 1: the residual never changes size, so the accumulated error stays under any threshold
    # and MagCache skips as often as it may (at most 3 steps in a row, never in the first 20%).
    notes = accel.apply_after_placement(
        loaded.pipe,
        plan_for({"stepCache": {"type": "mag", "threshold": 0.5, "magRatios": [1.0] * STEPS}}),
        cuda=False,
        steps=STEPS,
        env={},
    )
    calls = count_block_calls(loaded)
    assert run(loaded) == 9
    assert f"stepCache: mag threshold 0.5 ({STEPS} ratios) (requested)" in notes
    assert 0 < calls[-1] < 2 * STEPS, f"blocks skipped on some steps: {calls}"


def test_step_caches_know_the_blocks_of_wan_ltx_and_cogvideox() -> None:
    from videogen_runner import tiny_models

    cog = tiny_models.build_cogvideox_t2v().transformer
    assert accel.registered_block_lists(tiny_models._wan_transformer(16, None)) == ["blocks"]
    assert accel.registered_block_lists(tiny_models.build_ltx().transformer) == ["transformer_blocks"]
    assert accel.registered_block_lists(cog) == ["transformer_blocks"]
    assert accel.taylorseer_targets(tiny_models._wan_transformer(16, None)) == [
        "blocks.0.attn1",
        "blocks.0.attn2",
        "blocks.1.attn1",
        "blocks.1.attn2",
    ]
