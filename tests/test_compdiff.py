"""CompDiff: the Hierarchical Conditioner Network (shapes, loss terms on fixed inputs by
hand), its token appended and dropped, the prompt without the composed attributes, and a
fit -> save -> load -> sample round trip with the loss terms logged separately."""

from __future__ import annotations

import csv
import math

import datasets
import numpy as np
import pytest
import torch
from conftest import make_rows

from benchmark import GENERATORS
from benchmark.generators import FitContext, OptionError, Plan, PlanRow
from benchmark.profiles import PROFILES
from benchmark.schema import FEATURES
from benchmark.tasks import TASKS
from methods.compdiff import (
    COMPDIFF_PROFILE_DEFAULTS,
    CompDiff,
    HierarchicalConditioner,
    composition_loss,
    kl_standard_normal,
)

if CompDiff.name not in GENERATORS.names():  # the shared venv may not list the entry point
    GENERATORS.register(CompDiff.name, CompDiff)

TASK = TASKS.get("phantom-cxr-finding")
NAMES = [["female", "male"], ["18-39", "40-59", "80+"], ["a", "b", "c", "d"]]


def _ids(b=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {a: torch.randint(0, len(n), (b,), generator=g)
            for a, n in zip(["sex", "age_group", "race"], NAMES, strict=True)}


def test_hcn_shapes_three_attributes():
    hcn = HierarchicalConditioner(attributes=["sex", "age_group", "race"], group_names=NAMES,
                                  dim=12, d_node=8, aux_hidden=10).eval()
    assert len(hcn.composers) == 3 and hcn.child is not None
    assert hcn.child[1].in_features == 3 * 8 and hcn.child[1].out_features == 2 * 8
    assert hcn.composers[0][1].in_features == 16 and hcn.composers[0][-1].out_features == 8
    out = hcn.encode(_ids())
    assert out["mu"].shape == out["logsigma"].shape == (5, 8)
    assert out["token"].shape == (5, 12)
    assert [lg.shape for lg in out["logits"]] == [(5, 2), (5, 3), (5, 4)]
    assert torch.equal(out["z"], out["mu"])  # evaluation: the mean
    # log-sigma head: bias -1 and near-zero weights at initialisation, clamped to [-5, 1]
    assert torch.allclose(out["logsigma"], torch.full_like(out["logsigma"], -1.0), atol=0.1)
    with torch.no_grad():
        hcn.logsigma_head.bias.fill_(10.0)
    assert float(hcn.encode(_ids())["logsigma"].detach().max()) == 1.0
    # embeddings start at N(0, 0.02^2)
    w = torch.cat([e.weight.detach().flatten() for e in hcn.embeddings])
    assert 0.005 < float(w.std()) < 0.05


def test_hcn_two_attributes_uses_the_one_pair_as_the_child():
    hcn = HierarchicalConditioner(attributes=["sex", "race"], group_names=[NAMES[0], NAMES[2]],
                                  dim=6, d_node=4, aux_hidden=5).eval()
    assert hcn.child is None and len(hcn.composers) == 1
    ids = {"sex": torch.tensor([0, 1]), "race": torch.tensor([3, 2])}
    out = hcn.encode(ids)
    e = [hcn.embeddings[0](ids["sex"]), hcn.embeddings[1](ids["race"])]
    assert torch.allclose(out["child"], hcn.composers[0](torch.cat(e, -1)))


def test_kl_by_hand_and_against_torch_distributions():
    mu = torch.tensor([[1.0, 0.0], [0.5, -2.0]])
    logsigma = torch.tensor([[0.0, math.log(2.0)], [-1.0, 0.5]])
    # sample 1: 0.5 * ((1 + 1 - 1 - 0) + (0 + 4 - 1 - 2 ln 2)); sample 2 likewise
    k1 = 0.5 * (1.0 + (3.0 - 2 * math.log(2.0)))
    k2 = 0.5 * ((0.25 + math.exp(-2.0) - 1 + 2.0) + (4.0 + math.exp(1.0) - 1 - 1.0))
    assert float(kl_standard_normal(mu, logsigma)) == pytest.approx((k1 + k2) / 2, rel=1e-6)
    q = torch.distributions.Normal(mu, logsigma.exp())
    p = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    ref = torch.distributions.kl_divergence(q, p).sum(-1).mean()
    assert float(kl_standard_normal(mu, logsigma)) == pytest.approx(float(ref), rel=1e-6)


def test_cosine_term_by_hand():
    child = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    e1 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    e2 = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    # sums: [1, 2] (cos 1/sqrt 5 with [1, 0]) and [0, 1] (cos 1 with [0, 3])
    want = ((1 - 1 / math.sqrt(5)) + 0.0) / 2
    assert float(composition_loss(child, [e1, e2])) == pytest.approx(want, rel=1e-6)


def test_auxiliary_ce_is_the_mean_over_attributes_by_hand():
    hcn = HierarchicalConditioner(attributes=["sex", "race"], group_names=[NAMES[0], NAMES[2]],
                                  dim=4, d_node=4, aux_hidden=4)
    out = {"mu": torch.zeros(1, 4), "logsigma": torch.zeros(1, 4),
           "child": torch.tensor([[1.0, 0, 0, 0]]), "embeddings": [torch.tensor([[1.0, 0, 0, 0]])],
           "logits": [torch.tensor([[0.0, math.log(3.0)]]), torch.zeros(1, 4)]}
    t = hcn.losses(out, {"sex": torch.tensor([1]), "race": torch.tensor([2])})
    ce_sex = -math.log(3.0 / 4.0)  # softmax(0, ln 3) = (1/4, 3/4), true class 1
    ce_race = math.log(4.0)  # uniform over 4
    assert float(t["aux_ce"]) == pytest.approx((ce_sex + ce_race) / 2, rel=1e-6)
    assert float(t["kl"]) == pytest.approx(0.0, abs=1e-7)  # mu 0, sigma 1
    assert float(t["cos"]) == pytest.approx(0.0, abs=1e-7)


def test_token_appended_after_the_text_and_zeroed_where_dropped():
    hcn = HierarchicalConditioner(attributes=["sex", "age_group", "race"], group_names=NAMES,
                                  dim=12, d_node=8, aux_hidden=10).eval()
    h = torch.randn(5, 7, 12)
    dropped = torch.tensor([False, True, False, True, False])
    ctx = hcn(h, _ids(), dropped)
    assert ctx.shape == (5, 8, 12)
    assert torch.equal(ctx[:, :7], h)  # the text tokens come first, unchanged
    assert torch.equal(ctx[dropped, 7], torch.zeros(2, 12))
    assert torch.allclose(ctx[~dropped, 7], hcn.encode(_ids())["token"][~dropped])
    assert (ctx[~dropped, 7].abs().sum(-1) > 0).all()
    # training: the reparameterised draw comes from the given generator (repeatable), and the
    # loss terms of the forward are kept for the method
    hcn.train()
    draws = []
    for seed in range(2):
        torch.manual_seed(seed)  # the global RNG is not used (dropout included)
        hcn.use_generator(torch.Generator().manual_seed(1))
        draws.append(hcn(h, _ids(), dropped))
    a, b = draws
    assert torch.equal(a, b) and set(hcn.last_losses) == {"kl", "cos", "aux_ce"}


def test_prompt_drops_the_composed_attributes_only():
    gen = CompDiff({})
    gen.resolved = gen.resolve(PROFILES.get("smoke"))
    assert gen.prompt_of(TASK, {"sex": "female", "age_group": "80+"}, "pleural_effusion") == \
        "pleural effusion"
    gen = CompDiff({"compose": ["sex"]})
    gen.resolved = gen.resolve(PROFILES.get("smoke"))
    assert gen.prompt_of(TASK, {"sex": "female", "age_group": "80+"}, "edema") == "80+, edema"
    with pytest.raises(OptionError, match="compose"):
        CompDiff({"compose": ["race"]}).composed(TASK)
    with pytest.raises(OptionError, match="prompt_style"):
        CompDiff({"prompt_style": "task"})
    with pytest.raises(OptionError, match="token_dropout"):
        CompDiff({"token_dropout": 1.5})


def test_profile_sizes():
    assert CompDiff({}).resolve(PROFILES.get("paper"))["d_node"] == 256
    assert CompDiff({}).resolve(PROFILES.get("paper"))["aux_hidden"] == 512
    assert CompDiff({}).resolve(PROFILES.get("smoke"))["d_node"] == \
        COMPDIFF_PROFILE_DEFAULTS["smoke"]["d_node"]


def test_fit_logs_each_loss_term_and_round_trips(tmp_path):
    train = datasets.Dataset.from_dict(make_rows(30, size=32), features=FEATURES)
    gen = CompDiff({"steps": 3, "sample_steps": 2, "checkpoint_every": 3})
    gen.progress = False
    gen.fit(train, FitContext(task=TASK, profile=PROFILES.get("smoke"), seed=0,
                              work_dir=tmp_path / "w"))
    assert isinstance(gen.backbone.context, HierarchicalConditioner)
    assert gen.backbone.context.config.dim == gen.backbone.unet.config.cross_attention_dim
    with open(tmp_path / "w" / "diffusion" / "loss_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    r = gen.resolved
    for row in rows:
        step, v = int(row["step"]), {k: float(x) for k, x in row.items()}
        assert v["kl_scale"] == pytest.approx(min(1.0, step / r["kl_warmup"]))
        want = (v["mse"] + v["kl_scale"] * r["kl_weight"] * v["kl"] + r["cos_weight"] * v["cos"]
                + r["aux_weight"] * v["aux_ce"])
        assert v["loss"] == pytest.approx(want, rel=1e-5)
        assert v["aux_ce"] > 0 and v["kl"] > 0
    plan = Plan(TASK.name, TASK.sensitive_attributes, (
        PlanRow((("sex", "female"), ("age_group", "80+")), "edema", 2, "p"),
        PlanRow((("sex", "male"), ("age_group", "18-39")), "no_finding", 1, "p"),
    ), seed=3)
    assert gen.prompts_for(plan) == ["edema", "edema", "no finding"]
    names = gen.backbone.context.config.group_names
    ids = gen.sampling_inputs(plan)["group_ids"]
    assert ids["sex"] == [names[0].index("female")] * 2 + [names[0].index("male")]
    out = gen.sample(plan)
    assert out["sex"] == ["female", "female", "male"] and len(out) == 3
    gen.save(tmp_path / "ckpt")
    again = CompDiff.load(tmp_path / "ckpt")
    again.progress = False
    assert isinstance(again.backbone.context, HierarchicalConditioner)
    out2 = again.sample(plan)
    assert [np.asarray(i).tolist() for i in out["image"]] == [
        np.asarray(i).tolist() for i in out2["image"]]


def _trainer(train, work, seed=0):
    from benchmark.diffusion import DiffusionTrainer, build_backbone

    smoke = PROFILES.get("smoke")
    gen = CompDiff({"steps": 4, "checkpoint_every": 2, "ema_decay": 0.0})
    gen.progress = False
    gen.resolved = gen.resolve(smoke)
    ctx = FitContext(task=TASK, profile=smoke, seed=seed, work_dir=work)
    gen.backbone = build_backbone(gen.resolved["backbone"], image_channels=1, seed=seed)
    data = gen.train_data(train, ctx)
    gen.prepare_backbone(data, ctx)
    return gen, DiffusionTrainer(gen.backbone, data, gen.train_config(seed), work / "diffusion",
                                 hooks=gen, progress=False)


def test_a_killed_fit_resumes_to_the_same_hcn_weights(tmp_path):
    train = datasets.Dataset.from_dict(make_rows(24, size=32), features=FEATURES)
    gen, tr = _trainer(train, tmp_path / "straight")
    tr.train()
    want = {k: v.clone() for k, v in gen.backbone.context.state_dict().items()}
    gen1, tr1 = _trainer(train, tmp_path / "killed")
    tr1.train(stop_after=2)  # as a kill after the step-2 checkpoint
    gen2, tr2 = _trainer(train, tmp_path / "killed")  # a new process
    res = tr2.train()
    assert res.start_step == 2 and res.end_step == 4
    got = gen2.backbone.context.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert not all(torch.equal(want[k], gen1.backbone.context.state_dict()[k]) for k in want)
