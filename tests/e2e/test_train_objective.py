"""The training objective (ratio loss, per-unit normalisation) and the optimiser (parameter groups,
learning-rate multipliers, schedules)."""
from __future__ import annotations

import math

import pytest
import torch

from hnet_seq.nn.packing import Packing
from hnet_seq.nn.routing import RoutingOutput
from hnet_seq.train import Objective, load_run_config, ratio_loss, ratio_loss_value
from hnet_seq.train.optim import LRSchedule, auto_lr_multipliers, param_groups

# ---- objective ---------------------------------------------------------------------------------


def test_ratio_loss_formula_on_hand_made_inputs():
    # N = 3; F = 2/6 selected; G = mean prob = 2.4/6 = 0.4
    prob = torch.tensor([1.0, 0.2, 0.1, 0.6, 0.3, 0.2], requires_grad=True)
    mask = prob > 0.5
    F, G, N = 2 / 6, 0.4, 3.0
    expected = N / (N - 1) * ((N - 1) * F * G + (1 - F) * (1 - G))
    assert expected == pytest.approx(1.5 * (2 * (1 / 3) * 0.4 + (2 / 3) * 0.6))
    assert ratio_loss(prob, mask, N).item() == pytest.approx(expected, abs=1e-6)
    # minimum 1 at F = G = 1/N; a collapsed router (F = G = 1, every position a chunk) costs N
    assert ratio_loss_value(1 / 3, 1 / 3, 3.0) == pytest.approx(1.0)
    assert ratio_loss_value(1.0, 1.0, 3.0) == pytest.approx(3.0)
    assert ratio_loss_value(0.25, 0.25, 4.0) == pytest.approx(1.0)
    # gradient wrt each probability: N/(N-1) * ((N-1) F - (1 - F)) / T
    ratio_loss(prob, mask, N).backward()
    assert prob.grad == pytest.approx(torch.full((6,), 1.5 * (2 * F - (1 - F)) / 6), abs=1e-6)


def test_objective_normalises_per_unit_and_adds_alpha_times_ratio():
    nll = torch.tensor([1.0, 2.0, 3.0, 4.0])
    weights = torch.tensor([1.0, 1.0, 0.0, 1.0])
    prob = torch.tensor([1.0, 0.9, 0.2, 0.4])
    routing = [RoutingOutput(prob, prob > 0.5, Packing.from_lengths([4]))]
    out = Objective([2.0], alpha=0.5)(nll, weights, routing)
    assert out.nll == pytest.approx(7.0 / 3) and out.units == 3.0
    rl = ratio_loss_value(0.5, 2.5 / 4, 2.0)
    assert out.ratio_losses[0] == pytest.approx(rl)
    assert out.total == pytest.approx(7 / 3 + 0.5 * rl)
    assert out.loss.item() == pytest.approx(out.total, rel=1e-6)
    assert out.compression == [2.0]
    assert out.bits_per_unit == pytest.approx(7 / 3 / math.log(2))


# ---- optimiser -----------------------------------------------------------------------------------


def test_param_groups_exclude_norms_biases_and_flagged_from_decay():
    from hnet_seq import HNetLM
    from hnet_seq.config import config_from_dict
    from helpers import MICRO_MODEL

    model = HNetLM(config_from_dict(MICRO_MODEL))
    groups = param_groups(model, 2, [2.0, 1.0], weight_decay=0.1)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    plain = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert all("norm" not in n and not n.endswith(".bias") and "A_log" not in n and "dt_bias" not in n
               for n in decayed)
    assert "backbone.encoder.layers.0.norm1.weight" in plain and "backbone.encoder.layers.0.mixer.D" in plain
    assert "backbone.main_network.pad_dimension" in plain
    stage = {n: g["stage"] for g in groups for n in g["names"]}
    assert stage["embeddings.weight"] == 0 and stage["backbone.routing_module.q_proj_layer.weight"] == 0
    assert stage["backbone.main_network.main_network.layers.0.mixer.Wqkv.weight"] == 1
    assert {g["stage"]: g["lr_mult"] for g in groups} == {0: 2.0, 1: 1.0}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_auto_lr_multipliers_and_schedules():
    cfg = load_run_config("dna-paper-1stage").model_config
    m = auto_lr_multipliers(cfg, [3.0])
    assert m == pytest.approx([math.sqrt(3 * cfg.d_model[1] / cfg.d_model[0]), 1.0])
    opt = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr_mult": 2.0}], lr=1.0)
    cos = LRSchedule(opt, 1.0, 100, "cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)  # step 0: 1/10 of the peak, times 2
    assert [round(cos.factor(s), 4) for s in (9, 10, 55, 100)] == [1.0, 1.0, 0.55, 0.1]
    wsd = LRSchedule(opt, 1.0, 100, "wsd", warmup_steps=10, min_lr_ratio=0.0, decay_fraction=0.2)
    assert [round(wsd.factor(s), 4) for s in (50, 79, 80, 89, 99)] == [1.0, 1.0, 0.95, 0.5, 0.0]
