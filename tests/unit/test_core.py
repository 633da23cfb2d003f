"""The H-Net core on CPU: batching invariance, gradients, step decoding, configs, init."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hnet_seq import ConfigError, HNetLM, Packing, load_config
from hnet_seq.config import config_from_dict, read_mapping

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = ["tiny_1stage.json", "tiny_2stage.json"]


def tiny_model(name: str, seed: int = 0) -> HNetLM:
    torch.manual_seed(seed)
    model = HNetLM(load_config(CONFIGS / name))
    model.init_weights()
    # Random routing projections so that boundaries are neither all nor none.
    for module in model.modules():
        if hasattr(module, "q_proj_layer"):
            torch.nn.init.normal_(module.q_proj_layer.weight, std=0.3)
            torch.nn.init.normal_(module.k_proj_layer.weight, std=0.3)
    return model.eval()


@pytest.mark.parametrize("name", TINY)
def test_packed_padded_and_single_agree(name):
    model = tiny_model(name)
    lengths = [53, 1, 17, 80, 31]
    tokens = [torch.randint(0, 256, (n,)) for n in lengths]
    with torch.no_grad():
        packed = model(torch.cat(tokens), Packing.from_lengths(lengths)).logits
        L = max(lengths)
        padded_in = torch.zeros(len(lengths), L, dtype=torch.long)
        mask = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
        for i, t in enumerate(tokens):
            padded_in[i, : len(t)] = t
        padded = model.forward_padded(padded_in, mask).logits
        start = 0
        for i, t in enumerate(tokens):
            single = model(t, Packing.from_lengths([len(t)])).logits
            assert (single - packed[start:start + len(t)]).abs().max() <= 1e-5
            assert (padded[i, : len(t)] - single).abs().max() <= 1e-5
            start += len(t)


@pytest.mark.parametrize("name", TINY)
def test_neighbours_do_not_change_a_sequence(name):
    model = tiny_model(name)
    target = torch.randint(0, 256, (40,))
    with torch.no_grad():
        alone = model(target, Packing.from_lengths([40])).logits
        for other in (torch.randint(0, 256, (25,)), torch.full((60,), 65)):
            both = model(torch.cat([other, target]), Packing.from_lengths([len(other), 40])).logits
            assert (both[len(other):] - alone).abs().max() <= 1e-5


@pytest.mark.parametrize("name", TINY)
def test_gradients_reach_every_parameter(name):
    model = tiny_model(name).train()
    lengths = [70, 45]
    tokens = torch.randint(0, 256, (sum(lengths),))
    out = model(tokens, Packing.from_lengths(lengths))
    loss = torch.nn.functional.cross_entropy(out.logits[:-1], tokens[1:])
    # The ratio loss's input, as in training, so the router also learns from it.
    loss = loss + sum(r.boundary_prob.mean() for r in out.routing)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_router_gets_gradient_through_ste_and_ema_alone():
    """Only the language-model loss: the routing projections still learn (STE and dechunk EMA)."""
    model = tiny_model("tiny_1stage.json").train()
    tokens = torch.randint(0, 256, (90,))
    out = model(tokens, Packing.from_lengths([90]))
    torch.nn.functional.cross_entropy(out.logits[:-1], tokens[1:]).backward()
    router = model.backbone.routing_module
    assert router.q_proj_layer.weight.grad.abs().sum() > 0
    assert router.k_proj_layer.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", TINY)
def test_step_decoding_matches_full_forward(name):
    model = tiny_model(name)
    n = 64
    tokens = torch.randint(0, 256, (2, n))
    with torch.no_grad():
        full = [model(t, Packing.from_lengths([n])) for t in tokens]
        state = model.new_state(2, n)
        stepped = torch.stack([model.step(tokens[:, t], state)[0] for t in range(n)], dim=1)
    for row in range(2):
        assert (stepped[row] - full[row].logits).abs().max() <= 1e-4
        # the inner stages really were exercised with several chunks
        assert all(r.boundary_mask.sum() > 3 for r in full[row].routing)


def test_init_follows_official_scheme():
    model = HNetLM(load_config(CONFIGS / "tiny_2stage.json"))
    model.init_weights()
    hnet = model.backbone
    assert torch.equal(hnet.residual_proj.weight, torch.zeros_like(hnet.residual_proj.weight))
    eye = torch.eye(hnet.d_model)
    assert torch.equal(hnet.routing_module.q_proj_layer.weight, eye)
    assert hnet.main_network.pad_dimension.shape == (32,)
    # output projections shrink with depth: encoder/decoder heights of stage 0 and 1 add up
    n0 = hnet.encoder.height + hnet.decoder.height
    w = hnet.encoder.layers[0].mixer.out_proj.weight
    assert abs(w.std().item() - 0.02 / n0 ** 0.5) < 0.3 * 0.02 / n0 ** 0.5


def test_official_configs_load_unchanged():
    for path in sorted(CONFIGS.glob("hnet_*stage_*.json")):
        cfg = load_config(path)
        assert cfg.vocab_size == 256 and cfg.ssm_cfg.d_state == 128
        assert read_mapping(path).keys() <= set(cfg.to_dict())


@pytest.mark.parametrize("patch, field", [
    ({"d_modle": [64, 96]}, "d_modle"),
    ({"d_model": [64, "wide"]}, "d_model[1]"),
    ({"ssm_cfg": {"d_state": "big"}}, "ssm_cfg.d_state"),
    ({"attn_cfg": {"num_heads": [4], "rotary_emb_dim": [8, 12], "window_size": [7, -1]}}, "attn_cfg.num_heads"),
    ({"arch_layout": ["T1m1", ["x3"], "m1T1"]}, "arch_layout"),
    ({"tie_embeddings": "yes"}, "tie_embeddings"),
    ({"target_compression": [0.5]}, "target_compression"),
])
def test_bad_config_field_is_named(patch, field):
    data = read_mapping(CONFIGS / "tiny_1stage.json") | patch
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    message = str(err.value)
    assert f"'{field}" in message and "\n" not in message
