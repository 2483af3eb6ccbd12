"""spec.acceleration on the tiny Wan model: each speed-up really applies (blocks skipped, weights
stored in fp8, blocks compiled, kernel chosen), defaults follow the preset, and the result says so.
A step cache the model cannot run (one transformer block, blocks diffusers does not register, a
pipeline without cache contexts) is skipped and reported, through the runner, on other tiny families."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from runner_support import PROMPT, RunInProcess, TinyModels, tiny_spec

from videogen_api import v1alpha1 as api
from videogen_runner import acceleration as accel
from videogen_runner.generate import GenerationRequest, generate
from videogen_runner.memory import MemoryPlan
from videogen_runner.models import LoadedModel, inspect_model, load_pipeline
from videogen_runner.presets import Family, GenerationParams

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CPU = MemoryPlan(api.MemoryMode.NONE, on_cuda=False, vae_tiling=False, reason="cpu")
STEPS = 6
PARAMS = GenerationParams(width=64, height=64, num_frames=9, fps=8, steps=STEPS, guidance_scale=5.0, seed=3)


def load(path: Path, task: api.Task = api.Task.TEXT_TO_VIDEO) -> LoadedModel:
    return load_pipeline(inspect_model(str(path), path, task), cuda=False)


@pytest.fixture(scope="module")
def tiny_family(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The tiny model of a family (videogen_runner.tiny_models), built on first use."""
    from videogen_runner import tiny_models

    root = tmp_path_factory.mktemp("acceleration-families")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = tiny_models.save_tiny_pipeline(family, root / family)
        return built[family]

    return get


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


def run(loaded: LoadedModel, params: GenerationParams = PARAMS) -> int:
    request = GenerationRequest(prompt=PROMPT, negative_prompt=None, params=params)
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


def test_step_caches_read_the_blocks_from_the_model() -> None:
    from videogen_runner import tiny_models

    wan = tiny_models._wan_transformer(16, None)
    assert accel.hooked_blocks(wan) == accel.HookedBlocks(lists=(("blocks", 2),), unregistered=())
    assert accel.hooked_blocks(tiny_models.build_ltx().transformer) == accel.HookedBlocks(
        lists=(("transformer_blocks", 1),), unregistered=()
    )
    cog = accel.hooked_blocks(tiny_models.build_cogvideox_t2v().transformer)
    assert cog.count == 1 and cog.describe() == "1 transformer block (transformer_blocks: 1)"
    skyreels = tiny_models._wan_transformer(16, None, model="SkyReelsV2Transformer3DModel")
    assert accel.hooked_blocks(skyreels).unregistered == ("SkyReelsV2TransformerBlock",)
    assert accel.taylorseer_targets(wan) == [
        "blocks.0.attn1",
        "blocks.0.attn2",
        "blocks.1.attn1",
        "blocks.1.attn2",
    ]


def test_cache_contexts_are_read_from_the_pipelines_code() -> None:
    import diffusers

    assert accel.runs_denoiser_in_cache_context(diffusers.WanPipeline)
    assert accel.runs_denoiser_in_cache_context(diffusers.CogVideoXPipeline)
    assert accel.runs_denoiser_in_cache_context(diffusers.HunyuanVideoPipeline)
    assert not accel.runs_denoiser_in_cache_context(diffusers.HunyuanVideoImageToVideoPipeline)

    class Subclassed(diffusers.WanPipeline):
        """Inherits __call__: its code is WanPipeline's."""

    assert accel.runs_denoiser_in_cache_context(Subclassed)


class TestNotApplicable:
    """Caches the loaded model cannot run: no hook is installed, the note says why, the video decodes."""

    @pytest.mark.parametrize(
        ("step_cache", "why"),
        [
            ({"type": "first-block"}, "first-block needs 2 or more: the first decides, the rest are skipped"),
            ({"type": "mag", "magRatios": [1.0] * STEPS}, "mag needs 2 or more: the last block counts the steps"),
        ],
    )
    def test_block_caches_on_a_single_block_transformer(
        self, tiny_family: Callable[[str], Path], step_cache: dict[str, Any], why: str
    ) -> None:
        loaded = load(tiny_family("cogvideox-t2v"))
        notes = accel.apply_after_placement(
            loaded.pipe, plan_for({"stepCache": step_cache}), cuda=False, steps=STEPS, env={}
        )
        kind = step_cache["type"]
        assert notes[1].startswith(
            f"stepCache: {kind} not applied: CogVideoXTransformer3DModel has 1 transformer block "
            "(transformer_blocks: 1); "
        ), notes[1]
        assert why in notes[1] and notes[1].endswith("(requested)"), notes[1]
        assert not loaded.pipe.transformer.is_cache_enabled
        assert run(loaded) == 9

    def test_taylorseer_still_runs_on_a_single_block_transformer(self, tiny_family: Callable[[str], Path]) -> None:
        loaded = load(tiny_family("cogvideox-t2v"))
        notes = accel.apply_after_placement(
            loaded.pipe, plan_for({"stepCache": {"type": "taylorseer", "interval": 2}}), cuda=False, steps=STEPS, env={}
        )
        assert notes[1] == "stepCache: taylorseer interval 2 (requested)"
        assert loaded.pipe.transformer.is_cache_enabled
        assert run(loaded) == 9

    @pytest.mark.parametrize("step_cache", [{"type": "first-block"}, {"type": "taylorseer"}])
    def test_a_pipeline_without_cache_contexts(
        self, tiny_family: Callable[[str], Path], step_cache: dict[str, Any]
    ) -> None:
        # HunyuanVideo I2V calls its transformer outside any cache_context: first-block and TaylorSeer
        # would raise "No cache context is set" at the first step.
        from PIL import Image

        loaded = load(tiny_family("hunyuanvideo-i2v"), api.Task.IMAGE_TO_VIDEO)
        notes = accel.apply_after_placement(
            loaded.pipe, plan_for({"stepCache": step_cache}), cuda=False, steps=2, env={}
        )
        assert notes[1] == (
            f"stepCache: {step_cache['type']} not applied: HunyuanVideoImageToVideoPipeline does not run its "
            f"denoiser in a cache context, where {step_cache['type']} keeps its state (requested)"
        )
        params = GenerationParams(width=64, height=64, num_frames=9, fps=8, steps=2, guidance_scale=5.0, seed=3)
        request = GenerationRequest(
            prompt=PROMPT, negative_prompt=None, params=params, image=Image.new("RGB", (64, 64), (200, 30, 30))
        )
        frames = generate(loaded, request, CPU, lambda _s, _t: None, env={})
        assert len(list(frames.iterator)) == 9

    def test_taylorseer_with_a_single_step(self, tiny_models: TinyModels) -> None:
        # The first step always computes: there is nothing before it to predict from.
        loaded = load(tiny_models.wan_t2v)
        notes = accel.apply_after_placement(
            loaded.pipe, plan_for({"stepCache": {"type": "taylorseer", "interval": 2}}), cuda=False, steps=1, env={}
        )
        assert notes[1] == "stepCache: taylorseer interval 2 (requested)"
        params = GenerationParams(width=64, height=64, num_frames=9, fps=8, steps=1, guidance_scale=5.0, seed=3)
        assert run(loaded, params) == 9


ONE_BLOCK = "has 1 transformer block (transformer_blocks: 1); first-block needs 2 or more: the first decides, the rest are skipped"


@pytest.mark.s3
@pytest.mark.parametrize(
    ("family", "preset", "acceleration", "expected"),
    [
        (
            "cogvideox-t2v",
            "fast",
            None,
            f"first-block not applied: CogVideoXTransformer3DModel {ONE_BLOCK} (preset fast)",
        ),
        ("ltx", "fast", None, f"first-block not applied: LTXVideoTransformer3DModel {ONE_BLOCK} (preset fast)"),
        (
            "cogvideox-t2v",
            "standard",
            {"stepCache": {"type": "first-block"}},
            f"first-block not applied: CogVideoXTransformer3DModel {ONE_BLOCK} (requested)",
        ),
        (
            "mochi",
            "standard",
            {"stepCache": {"type": "first-block"}},
            f"first-block threshold {accel.DEFAULT_FIRST_BLOCK_THRESHOLD} (requested)",
        ),
    ],
    ids=["cogvideox-fast", "ltx-fast", "cogvideox-requested", "mochi-two-blocks"],
)
def test_the_runner_skips_a_step_cache_the_model_cannot_run(
    tiny_family: Callable[[str], Path],
    run_inprocess: RunInProcess,
    s3_env: dict[str, str],
    bucket: str,
    s3_client: S3Client,
    family: str,
    preset: str,
    acceleration: dict[str, Any] | None,
    expected: str,
) -> None:
    """Through the runner: the job succeeds with the video, and its result says what was not applied and
    why (a request is no different from the preset's choice: a speed-up, never a change of the video)."""
    extra = {"acceleration": acceleration} if acceleration is not None else {}
    spec = tiny_spec(
        str(tiny_family(family)), preset=preset, output={"bucket": bucket, "key": f"{family}.mp4"}, **extra
    )
    code, result = run_inprocess(spec, s3_env)
    assert code == 0, result
    assert f"stepCache: {expected}" in result["acceleration"], result["acceleration"]
    assert s3_client.head_object(Bucket=bucket, Key=f"{family}.mp4")["ContentLength"] > 0
