"""``hnet-seq generate`` on CPU: the step cache reproduces the full-forward likelihood, and an
official-layout .pt checkpoint generates through the CLI."""
from __future__ import annotations

import numpy as np
import torch

from hnet_seq.config import load_config
from hnet_seq.model import HNetLM
from helpers import CONFIGS, invoke, randomise_routing


def test_generate_step_cache_matches_full_forward(ck2):
    from hnet_seq.inference.generate import generate, sequence_logprobs
    from hnet_seq.inference.model import load

    im = load(ck2)
    gens = generate(im, "GATTACAGGCTTAACG", max_new_tokens=48, num_samples=2, seed=3, top_k=4, top_p=0.95)
    assert len(gens) == 2 and gens[0].text != gens[1].text
    for g in gens:
        assert len(g.tokens) == 48 and set(g.text) <= set("ACGTN")
        full = sequence_logprobs(im, g.full_tokens)[len(g.prompt_tokens) - 1:]
        assert np.abs(full - g.logprobs).max() < 1e-4
        assert abs(full.sum() - g.log_likelihood) < 1e-3
    again = generate(im, "GATTACAGGCTTAACG", max_new_tokens=48, num_samples=2, seed=3, top_k=4, top_p=0.95)
    assert [g.text for g in again] == [g.text for g in gens]  # same seed, same samples
    greedy = generate(im, "GATTACA", max_new_tokens=8, temperature=0)[0]
    assert len(greedy.tokens) == 8


def test_generate_official_layout_checkpoint_cli(tmp_path):
    """Random weights of tiny_1stage in the official key layout (torch.save(state_dict) as .pt)."""
    torch.manual_seed(0)
    model = HNetLM(load_config(CONFIGS / "tiny_1stage.json"))
    model.init_weights()
    randomise_routing(model)
    pt = tmp_path / "hnet_tiny.pt"
    torch.save(model.state_dict(), pt)
    out = tmp_path / "samples.txt"
    r = invoke("generate", "--checkpoint", pt, "--config", CONFIGS / "tiny_1stage.json", "--prompt",
               "Hello, H-Net", "-n", 24, "--seed", 1, "--top-p", 0.9, "--num-samples", 2, "-o", out)
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.count("# sample") == 2 and "Hello, H-Net" in text
    from hnet_seq.inference.generate import generate, sequence_logprobs
    from hnet_seq.inference.model import load

    im = load(pt, CONFIGS / "tiny_1stage.json")
    g = generate(im, "Hello, H-Net", max_new_tokens=24, seed=1, top_p=0.9)[0]
    assert g.prompt_tokens[0] == 254  # official byte models start with BOS
    full = sequence_logprobs(im, g.full_tokens)[len(g.prompt_tokens) - 1:]
    assert np.abs(full - g.logprobs[: len(full)]).max() < 1e-4
    r = invoke("generate", "--checkpoint", pt, "--prompt", "x")
    assert r.exit_code == 2 and "needs --config" in r.output
