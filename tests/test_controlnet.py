"""The ControlNet and the context hook of the shared diffusion stack
(benchmark.diffusion.controlnet / .context): construction at every codec factor, zero
initialisation, training through DiffusionTrainer with the backbone frozen, exact resume,
save_pretrained round trips, and both guidance branches at sampling (checked against
diffusers' own StableDiffusionControlNetPipeline)."""

import shutil

import datasets
import numpy as np
import pytest
import torch
from conftest import make_rows
from diffusers.configuration_utils import register_to_config

from benchmark.data.phantoms import cardiac
from benchmark.diffusion import (
    Backbone,
    ContextHook,
    ControlNetConfig,
    DiffusionTrainer,
    GroupTokenContext,
    TrainConfig,
    attach_controlnet,
    build_backbone,
    build_train_data,
    conditioning_embedding_channels,
    controlled_unet,
    sample_images,
)
from benchmark.diffusion.sampling import _noise, sampling_scheduler
from benchmark.schema import FEATURES
from benchmark.tasks import TASKS

CARDIAC = TASKS.get("phantom-cardiac-hf")
CXR = TASKS.get("phantom-cxr-finding")

CFG = TrainConfig(steps=6, batch_size=4, grad_accum=2, lr=1e-3, lr_schedule="constant",
                  checkpoint_every=2, ema_decay=0.9, log_every=1, cond_dropout=0.5, seed=3)


@pytest.fixture(scope="module")
def cardiac_ds():
    """16 smoke-size phantom-cardiac rows (32 px) with their segmentation masks."""
    return cardiac.generate(16, image_size=32, seed=0)


def _controlnet_setup(ds, channels=1):
    b = build_backbone("smoke", image_channels=1, seed=0)
    attach_controlnet(b, ControlNetConfig(conditioning_channels=channels, seed=1))
    return b, build_train_data(b, ds, CARDIAC, progress=False, control_column="mask")


def _group_token(data, dim=32, seed=0):
    return GroupTokenContext(attributes=list(data.group_names),
                             group_sizes=[len(v) for v in data.group_names.values()], dim=dim,
                             seed=seed)


def _context_setup(ds):
    b = build_backbone("smoke", image_channels=1, seed=0)
    data = build_train_data(b, ds, CARDIAC, progress=False)
    b.context = _group_token(data, dim=b.unet.config.cross_attention_dim, seed=2)
    return b, data


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _perturb_zero_convs(cn, seed=0):
    """Give the zero convolutions (the outputs and the control embedding's last layer)
    non-zero weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in [*cn.controlnet_down_blocks, cn.controlnet_mid_block,
                     cn.controlnet_cond_embedding.conv_out]:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.1)


# -- construction -------------------------------------------------------------------------


def test_conditioning_embedding_channels_follow_the_codec_factor():
    # one stride-2 stage per factor of 2; Stable Diffusion's ControlNet at factor 8
    assert conditioning_embedding_channels(1) == (16,)
    assert conditioning_embedding_channels(2) == (16, 32)
    assert conditioning_embedding_channels(4) == (16, 32, 96)
    assert conditioning_embedding_channels(8) == (16, 32, 96, 256)
    assert conditioning_embedding_channels(16) == (16, 32, 96, 256, 512)
    for bad in (0, 3, 6):
        with pytest.raises(ValueError, match="power of 2"):
            conditioning_embedding_channels(bad)
    with pytest.raises(ValueError, match="1 or 3"):
        ControlNetConfig(conditioning_channels=2)


@pytest.mark.parametrize("profile,factor", [("smoke", 2), ("cpu", 4)])
def test_controlnet_fits_the_profile_unet(profile, factor):
    b = build_backbone(profile, image_channels=1, seed=0)
    assert b.codec_factor == factor
    cn = attach_controlnet(b, ControlNetConfig(conditioning_channels=3))
    assert b.controlnet is cn and not any(p.requires_grad for p in b.unet.parameters())
    R = b.spec.resolution
    x = torch.randn(1, *b.latent_shape)
    c = torch.randn(1, b.spec.max_tokens, b.unet.config.cross_attention_dim)
    with torch.no_grad():
        down, mid = cn(x, torch.tensor([10]), encoder_hidden_states=c,
                       controlnet_cond=torch.rand(1, 3, R, R), return_dict=False)
    # the embedding brings an R x R control image to the UNet's R/f x R/f input
    assert down[0].shape[-1] == R // factor == b.latent_shape[-1]
    # Stable Diffusion's default 8x embedding does not fit the cpu profile's factor 4
    if factor == 4:
        from diffusers import ControlNetModel

        wrong = ControlNetModel.from_unet(b.unet, conditioning_channels=3)
        with torch.no_grad(), pytest.raises(RuntimeError):
            wrong(x, torch.tensor([10]), encoder_hidden_states=c,
                  controlnet_cond=torch.rand(1, 3, R, R), return_dict=False)


def test_controlnet_output_equals_the_unet_at_initialisation():
    b = build_backbone("smoke", image_channels=1, seed=0)
    cn = attach_controlnet(b, ControlNetConfig(conditioning_channels=1))
    x = torch.randn(3, *b.latent_shape)
    t = torch.tensor([1, 400, 999])
    c = torch.randn(3, b.spec.max_tokens, b.unet.config.cross_attention_dim)
    control = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        plain = b.unet(x, t, encoder_hidden_states=c).sample
        down, mid = cn(x, t, encoder_hidden_states=c, controlnet_cond=control,
                       return_dict=False)
        with_cn = controlled_unet(b.unet, x, t, c, controlnet=cn, control=control)
    assert all(float(d.abs().max()) == 0 for d in down) and float(mid.abs().max()) == 0
    torch.testing.assert_close(with_cn, plain, rtol=0, atol=1e-6)
    # ... and once the zero convolutions are not zero, the residuals change the output
    _perturb_zero_convs(cn)
    with torch.no_grad():
        moved = controlled_unet(b.unet, x, t, c, controlnet=cn, control=control)
    assert (moved - plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match="control image"):
        controlled_unet(b.unet, x, t, c, controlnet=cn, control=None)


def test_paper_profile_attaches_to_stable_diffusion_from_a_local_folder(tmp_path):
    """The paper code path: a (tiny) Stable Diffusion folder with a VAE; the embedding's
    down-sampling follows the VAE's factor."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from benchmark.diffusion import build_clip_tokenizer

    torch.manual_seed(0)
    root = tmp_path / "sd"
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4,
                         block_out_channels=(16, 32), norm_num_groups=8, layers_per_block=1,
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                         cross_attention_dim=32, attention_head_dim=8
                         ).save_pretrained(root / "unet")
    AutoencoderKL(block_out_channels=(8, 16), norm_num_groups=8, latent_channels=4,
                  down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2).save_pretrained(root / "vae")
    CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 max_position_embeddings=77)).save_pretrained(
        root / "text_encoder")
    build_clip_tokenizer(77).save_pretrained(root / "tokenizer")
    DDPMScheduler().save_pretrained(root / "scheduler")

    b = build_backbone("paper", image_channels=3, pretrained=str(root))
    assert b.codec_factor == 2  # this VAE has two blocks (Stable Diffusion's has four: 8)
    cn = attach_controlnet(b, ControlNetConfig(conditioning_channels=3))
    assert tuple(cn.config.conditioning_embedding_out_channels) == (16, 32)
    x = torch.randn(1, 4, 8, 8)
    c = torch.randn(1, 77, 32)
    with torch.no_grad():
        out = controlled_unet(b.unet, x, torch.tensor([3]), c, controlnet=cn,
                              control=torch.rand(1, 3, 16, 16))
        torch.testing.assert_close(out, b.unet(x, torch.tensor([3]), c).sample, rtol=0,
                                   atol=1e-6)
    # a ControlNet folder to start from is checked against the backbone
    cn.save_pretrained(tmp_path / "cn")
    again = attach_controlnet(b, ControlNetConfig(conditioning_channels=3,
                                                  pretrained=str(tmp_path / "cn")))
    assert all(torch.equal(p, q) for p, q in zip(cn.parameters(), again.parameters(),
                                                 strict=True))
    with pytest.raises(ValueError, match="conditioning_channels"):
        attach_controlnet(b, ControlNetConfig(conditioning_channels=1,
                                              pretrained=str(tmp_path / "cn")))
    with pytest.raises(FileNotFoundError, match="not a local ControlNet folder"):
        attach_controlnet(b, ControlNetConfig(pretrained=str(tmp_path / "nothing")))


# -- training ------------------------------------------------------------------------------


def test_train_data_holds_the_masks_as_control_images(cardiac_ds):
    b, data = _controlnet_setup(cardiac_ds)
    masks = np.stack([np.asarray(m) for m in cardiac_ds["mask"]])  # (N, 32, 32) labels 0..3
    assert data.controls.dtype == torch.uint8 and data.controls.shape == (16, 1, 32, 32)
    assert np.array_equal(data.controls[:, 0].numpy(), masks) and masks.max() == 3
    # the step batch carries them as value / 255, and the prompt dropout leaves them alone
    trainer = DiffusionTrainer(b, data, CFG, "/nonexistent", progress=False)
    dropped = []
    for step in range(20):
        batch = trainer._batch(np.arange(16), step, 0, 0, "cpu", b.unet, controlnet=b.controlnet)
        torch.testing.assert_close(batch.control, torch.from_numpy(masks[:, None]).float() / 255)
        dropped.append(batch.dropped)
    share = float(torch.cat(dropped).float().mean())  # 320 draws at cond_dropout 0.5
    assert abs(share - 0.5) < 0.1
    # rows without a mask are an error that counts them
    rows = make_rows(6, size=32)
    with pytest.raises(ValueError, match="6 of 6 training rows have no control image"):
        build_train_data(b, datasets.Dataset.from_dict(rows, features=FEATURES), CXR,
                         progress=False, control_column="mask")
    with pytest.raises(ValueError, match="not in the training set"):
        build_train_data(b, cardiac_ds, CARDIAC, progress=False, control_column="sketch")


def test_controlnet_trains_with_the_backbone_frozen(cardiac_ds, tmp_path):
    b, data = _controlnet_setup(cardiac_ds)
    unet0, cn0 = _state(b.unet), _state(b.controlnet)
    text0 = _state(b.text_encoder)
    cfg = TrainConfig(**{**CFG.as_dict(), "steps": 3})
    result = DiffusionTrainer(b, data, cfg, tmp_path, progress=False).train()
    assert result.finished and all(np.isfinite(r["loss"]) for r in result.losses)
    # the UNet and the text encoder are bit-for-bit unchanged, the ControlNet is trained
    assert all(torch.equal(unet0[k], v) for k, v in b.unet.state_dict().items())
    assert all(torch.equal(text0[k], v) for k, v in b.text_encoder.state_dict().items())
    assert result.unet is b.unet and result.controlnet is not b.controlnet  # EMA copy
    moved = [k for k, v in b.controlnet.state_dict().items() if not torch.equal(cn0[k], v)]
    assert any(k.startswith("controlnet_down_blocks") for k in moved)  # zero convs left zero
    assert any(k.startswith("controlnet_cond_embedding") for k in moved)
    # the trained residuals are no longer zero
    x = torch.randn(2, *b.latent_shape)
    c = data.class_embeddings[:2]
    with torch.no_grad():
        down, _ = b.controlnet(x, torch.tensor([5, 500]), encoder_hidden_states=c,
                               controlnet_cond=data.controls[:2].float() / 255,
                               return_dict=False)
    assert max(float(d.abs().max()) for d in down) > 0
    # a ControlNet without control images is an error
    b2 = build_backbone("smoke", image_channels=1, seed=0)
    plain = build_train_data(b2, cardiac_ds, CARDIAC, progress=False)
    attach_controlnet(b2)
    with pytest.raises(ValueError, match="no control images"):
        DiffusionTrainer(b2, plain, cfg, tmp_path / "x", progress=False).train()


@pytest.mark.slow
@pytest.mark.parametrize("part", ["controlnet", "context"])
def test_killed_training_resumes_to_the_same_weights(part, cardiac_ds, tmp_path):
    """As the UNet trainer's resume test: a kill between checkpoints, a half-written
    checkpoint, and the resumed run ends with the same ControlNet / context-hook weights (raw
    and EMA) and the same loss log as an uninterrupted one."""
    setup = _controlnet_setup if part == "controlnet" else _context_setup

    def trained(backbone, result):
        if part == "controlnet":
            return backbone.controlnet, result.controlnet
        return backbone.context, result.context

    b, data = setup(cardiac_ds)
    full = DiffusionTrainer(b, data, CFG, tmp_path / "a", progress=False).train()
    assert full.finished

    b1, data1 = setup(cardiac_ds)
    t1 = DiffusionTrainer(b1, data1, CFG, tmp_path / "b", progress=False)
    t1.train(stop_after=5)
    assert [s for s, _ in t1.checkpoints()] == [4, 5]
    shutil.rmtree(t1.checkpoint_dir / "checkpoint-0000005")
    (t1.checkpoint_dir / ".tmp-checkpoint-0000006").mkdir()

    b2, data2 = setup(cardiac_ds)
    resumed = DiffusionTrainer(b2, data2, CFG, tmp_path / "b", progress=False).train()
    assert resumed.start_step == 4 and resumed.finished
    for (raw_a, ema_a), (raw_b, ema_b) in [(trained(b, full), trained(b2, resumed))]:
        for p, q in zip(raw_a.parameters(), raw_b.parameters(), strict=True):
            assert torch.equal(p, q)
        for p, q in zip(ema_a.parameters(), ema_b.parameters(), strict=True):
            assert torch.equal(p, q)
    for p, q in zip(b.unet.parameters(), b2.unet.parameters(), strict=True):
        assert torch.equal(p, q)  # frozen (controlnet) or trained with the hook (context)
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in full.losses]
    # the checkpoint belongs to this part: resuming it without the part is an error
    b3 = build_backbone("smoke", image_channels=1, seed=0)
    plain = build_train_data(b3, cardiac_ds, CARDIAC, progress=False)
    with pytest.raises(ValueError, match="different training config"):
        DiffusionTrainer(b3, plain, CFG, tmp_path / "b", progress=False).train()


# -- save_pretrained ----------------------------------------------------------------------


def test_backbone_round_trip_with_controlnet_and_context(cardiac_ds, tmp_path):
    b, data = _controlnet_setup(cardiac_ds)
    _perturb_zero_convs(b.controlnet)
    b.context = _group_token(data, seed=4)
    with torch.no_grad():
        b.context.null_token.fill_(0.5)
    b.save_pretrained(tmp_path / "bb")
    assert (tmp_path / "bb" / "controlnet" / "config.json").is_file()
    assert (tmp_path / "bb" / "context" / "config.json").is_file()
    with pytest.raises(ValueError, match="GroupTokenContext.*context_cls"):
        Backbone.from_pretrained(tmp_path / "bb")
    b2 = Backbone.from_pretrained(tmp_path / "bb", context_cls=GroupTokenContext)
    for name in ("controlnet", "context"):
        a, z = getattr(b, name).state_dict(), getattr(b2, name).state_dict()
        assert a.keys() == z.keys() and all(torch.equal(a[k], z[k]) for k in a)
    assert b2.context.config.attributes == ["sex", "bmi_class"]
    # a later save without the parts removes the stale folders
    b2.controlnet = b2.context = None
    b2.save_pretrained(tmp_path / "bb")
    assert not (tmp_path / "bb" / "controlnet").exists()
    assert Backbone.from_pretrained(tmp_path / "bb").controlnet is None


# -- sampling -----------------------------------------------------------------------------


def test_sampling_applies_the_residuals_in_both_guidance_branches(tmp_path):
    """Against diffusers' StableDiffusionControlNetPipeline (which feeds the control image to
    both branches outside its guess mode) on the same models, scheduler and noise."""
    from diffusers import AutoencoderKL, StableDiffusionControlNetPipeline

    b = build_backbone("smoke", image_channels=1, seed=0)
    cn = attach_controlnet(b, ControlNetConfig(conditioning_channels=3, seed=0))
    _perturb_zero_convs(cn)
    prompts = ["female, 80+, edema", "male, 18-39, no finding"]
    rng = np.random.default_rng(0)
    controls = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    kw = dict(seed=5, steps=3, guidance_scale=3.0, sampler="ddim", progress=False)
    ours = sample_images(b, prompts, controls=controls, cache_dir=tmp_path, **kw)

    vae = AutoencoderKL(block_out_channels=(8, 16), norm_num_groups=8, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2)  # factor 2; never decodes
    pipe = StableDiffusionControlNetPipeline(
        vae=vae, text_encoder=b.text_encoder, tokenizer=b.tokenizer, unet=b.unet,
        controlnet=cn, scheduler=sampling_scheduler(b, "ddim"), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    latents = torch.stack([_noise(b.latent_shape, 5, i) for i in range(2)])
    ref = pipe(prompts, image=torch.from_numpy(controls).float() / 255, height=32, width=32,
               num_inference_steps=3, guidance_scale=3.0, negative_prompt=["", ""],
               latents=latents, output_type="latent").images
    ref = ((b.codec.decode(ref).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    # the control image matters, and it is part of the cache key
    other = sample_images(b, prompts, controls=255 - controls, cache_dir=tmp_path, **kw)
    assert not np.array_equal(other, ours)
    assert len(list(tmp_path.glob("samples-*"))) == 2
    with pytest.raises(ValueError, match="one control image per prompt"):
        sample_images(b, prompts, **kw)
    with pytest.raises(ValueError, match="shape"):
        sample_images(b, prompts, controls=controls[:1], **kw)
    b.controlnet = None
    with pytest.raises(ValueError, match="no ControlNet"):
        sample_images(b, prompts, controls=controls, **kw)


# -- the context hook -----------------------------------------------------------------------


def test_group_token_context_appends_one_token():
    hook = GroupTokenContext(attributes=["sex", "age_group"], group_sizes=[2, 3], dim=8)
    with torch.no_grad():
        hook.null_token.fill_(7.0)
    h = torch.randn(3, 5, 8)
    g = {"sex": torch.tensor([0, 1, 1]), "age_group": torch.tensor([2, 0, 1])}
    out = hook(h, g, torch.tensor([False, False, True]))
    assert out.shape == (3, 6, 8)  # one token more
    assert torch.equal(out[:, :5], h)  # the text tokens are untouched
    e_sex, e_age = hook.embeddings[0].weight, hook.embeddings[1].weight
    torch.testing.assert_close(out[0, 5], e_sex[0] + e_age[2])
    torch.testing.assert_close(out[1, 5], e_sex[1] + e_age[0])
    assert torch.equal(out[2, 5], torch.full((8,), 7.0))  # dropped: the null token
    with pytest.raises(KeyError, match="age_group"):
        hook(h, {"sex": g["sex"]}, torch.zeros(3, dtype=torch.bool))


class RecordingContext(ContextHook):
    """A hook that appends a learned token and records what it was called with."""

    @register_to_config
    def __init__(self, dim: int = 32):
        super().__init__()
        self.token = torch.nn.Parameter(torch.zeros(dim))
        self.calls = []

    def forward(self, hidden_states, group_ids, dropped):
        self.calls.append(({a: v.clone() for a, v in group_ids.items()}, dropped.clone()))
        tok = self.token.expand(hidden_states.shape[0], 1, -1)
        return torch.cat([hidden_states, tok.to(hidden_states.dtype)], dim=1)


def test_context_hook_sees_the_batch_groups_and_is_trained_with_the_unet(cardiac_ds, tmp_path):
    b = build_backbone("smoke", image_channels=1, seed=0)
    data = build_train_data(b, cardiac_ds, CARDIAC, progress=False)
    b.context = _group_token(data, seed=2)
    hook0, unet0 = _state(b.context), _state(b.unet)
    trainer = DiffusionTrainer(b, data, CFG, tmp_path, progress=False)
    # in a step batch, the context is the hook applied with the batch's groups and dropout
    batch = trainer._batch(np.arange(8), 0, 0, 0, "cpu", b.unet, context=b.context)
    ctx = batch.to_context(batch.cond)
    assert ctx.shape[1] == batch.cond.shape[1] + 1
    torch.testing.assert_close(ctx, b.context(batch.cond, {a: v[:8] for a, v in
                                                            data.group_ids.items()},
                                              batch.dropped))
    result = trainer.train()
    assert result.finished and result.context is not b.context  # EMA copy
    moved = [k for k, v in b.context.state_dict().items() if not torch.equal(hook0[k], v)]
    assert {"embeddings.0.weight", "embeddings.1.weight", "null_token"} <= set(moved)
    assert any(not torch.equal(unet0[k], v) for k, v in b.unet.state_dict().items())
    # the trained (EMA) hook is saved beside the backbone and restored
    b.context = result.context
    b.save_pretrained(tmp_path / "bb")
    b2 = Backbone.from_pretrained(tmp_path / "bb", context_cls=GroupTokenContext)
    a, z = b.context.state_dict(), b2.context.state_dict()
    assert all(torch.equal(a[k], z[k]) for k in a)


def test_sampling_passes_both_branches_through_the_context_hook(tmp_path):
    b = build_backbone("smoke", image_channels=1, seed=0)
    b.context = RecordingContext(dim=b.unet.config.cross_attention_dim)
    prompts = ["female, 80+, edema", "male, 18-39, no finding", "female, 60-79, edema"]
    gids = {"sex": [0, 1, 0]}
    kw = dict(seed=1, steps=2, batch_size=2, progress=False, cache_dir=tmp_path)
    first = sample_images(b, prompts, group_ids=gids, **kw)
    g, dropped = b.context.calls[0]  # batch 1: two images, unconditional branch first
    assert dropped.tolist() == [True, True, False, False]
    assert g["sex"].tolist() == [0, 1, 0, 1]
    g, dropped = b.context.calls[-1]  # batch 2: the third image
    assert dropped.tolist() == [True, False] and g["sex"].tolist() == [0, 0]
    # the token changes the images, and the hook's weights are part of the cache key
    with torch.no_grad():
        b.context.token.fill_(3.0)
    moved = sample_images(b, prompts, group_ids=gids, **kw)
    assert not np.array_equal(first, moved)
    with pytest.raises(ValueError, match="group_ids"):
        sample_images(b, prompts, **kw)
