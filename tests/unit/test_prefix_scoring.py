"""Shared-prefix variant scoring equals full recomputation.

* ``HNetLM.prefill`` continuing a decoding state (in blocks, ragged rows, copied/expanded
  states) gives the logits of one full forward pass, for 1- and 2-stage tiny H-Nets with
  Mamba-2 and attention layers at every stage; the SSD kernel's ``initial_states`` splits a scan.
* ``shared_logprobs``: the reference and every ALT window (SNVs at the window edges and inside,
  several ALTs per position, insertions, deletions) equal their own full forward passes.
* ``score_variants(share_prefix=True)`` equals ``share_prefix=False`` (forward and ``--rc-average``),
  and ``--saturate`` rows equal full recomputation of the same windows.
Fast (CUDA) kernels for the new pieces are checked against the references (marked ``gpu``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pysam
import pytest
import torch
from typer.testing import CliRunner

from hnet_seq import Packing
from hnet_seq.checkpoint import save_checkpoint
from hnet_seq.cli.main import app
from hnet_seq.config import load_config
from hnet_seq.inference.model import InferenceModel
from hnet_seq.inference.saturation import saturation_mutagenesis
from hnet_seq.inference.variant_prefix import shared_logprobs
from hnet_seq.inference.variants import score_variants
from hnet_seq.kernels import attention_kvcache, ssd
from hnet_seq.kernels.reference import attention_kvcache_reference, ssd_reference
from hnet_seq.modalities import get_adapter
from hnet_seq.model import HNetLM

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = ["tiny_1stage.json", "tiny_2stage.json"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def dna_model(name: str, seed: int = 0) -> HNetLM:
    torch.manual_seed(seed)
    adapter = get_adapter("dna")
    cfg = load_config(CONFIGS / name)
    model = HNetLM(cfg, embeddings=adapter.make_embedding(cfg.d_model[0]), lm_head=adapter.make_head(cfg.d_model[0]))
    model.init_weights()
    for module in model.modules():  # random routing projections: boundaries neither all nor none
        if hasattr(module, "q_proj_layer"):
            torch.nn.init.normal_(module.q_proj_layer.weight, std=0.3)
            torch.nn.init.normal_(module.k_proj_layer.weight, std=0.3)
    return model.eval()


def full_logits(model: HNetLM, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens.long(), Packing.from_lengths([len(tokens)], device=tokens.device)).logits


def full_logprobs(model: HNetLM, tokens: np.ndarray) -> np.ndarray:
    logits = full_logits(model, torch.from_numpy(tokens))
    lp = np.full(len(tokens), np.nan, np.float32)
    lp[1:] = -get_adapter("dna").loss(logits[:-1], torch.from_numpy(tokens[1:]).long()).numpy()
    return lp


# ---------------------------------------------------------------------------------- prefill
@pytest.mark.parametrize("name", TINY)
def test_prefill_in_blocks_equals_full_forward(name):
    model = dna_model(name)
    n = 90
    tokens = torch.randint(0, 5, (3, n))
    full = torch.stack([full_logits(model, t) for t in tokens])
    state = model.new_state(3, n)
    with torch.no_grad():
        pieces = [model.prefill(tokens[:, a:b], state) for a, b in ((0, 1), (1, 33), (33, 34), (34, n))]
    assert (torch.cat(pieces, 1) - full).abs().max() <= 1e-5
    with torch.no_grad():  # the inner stages really had several chunks
        assert all(r.boundary_mask.sum() > 3 for r in model(tokens[0], Packing.from_lengths([n])).routing)


@pytest.mark.parametrize("name", TINY)
def test_prefill_ragged_rows_and_copied_states(name):
    model = dna_model(name, seed=1)
    n = 80
    tokens = torch.randint(0, 5, (3, n))
    full = torch.stack([full_logits(model, t) for t in tokens])
    first = torch.tensor([0, 17, 50])  # one row has fed nothing yet
    state = model.new_state(3, n)
    with torch.no_grad():
        head = model.prefill(tokens[:, :50], state, first)
        rest = torch.stack([torch.cat([t[k:], torch.zeros(k, dtype=torch.long)])
                            for t, k in zip(tokens, first.tolist())])
        tail = model.prefill(rest, state, n - first)
    for row, k in enumerate(first.tolist()):
        got = torch.cat([head[row, :k], tail[row, :n - k]])
        assert (got - full[row]).abs().max() <= 1e-5
    # one prefix state, copied for several continuations (the ALTs of one variant)
    state = model.new_state(1, n)
    with torch.no_grad():
        model.prefill(tokens[:1, :40], state)
        copies = model.select_state(state, torch.zeros(3, dtype=torch.long))
        alts = tokens[:1, 40:].repeat(3, 1)
        alts[:, 0] = torch.tensor([0, 1, 2])
        out = model.prefill(alts, copies)
        again = model.prefill(tokens[:1, 40:], state)  # the original state was not touched by the copies
    assert (again[0] - full[0, 40:]).abs().max() <= 1e-5
    for row in range(3):
        alt = torch.cat([tokens[0, :40], alts[row]])
        assert (out[row] - full_logits(model, alt)[40:]).abs().max() <= 1e-5


def test_ssd_initial_states_split_a_scan():
    torch.manual_seed(0)
    b, l, h, p, g, n = 2, 70, 4, 8, 2, 16
    x, dt, B, C = torch.randn(b, l, h, p), torch.randn(b, l, h), torch.randn(b, l, g, n), torch.randn(b, l, g, n)
    A, D, bias = -torch.rand(h) * 3, torch.randn(h), torch.randn(h)
    kw = dict(chunk_size=16, D=D, dt_bias=bias, dt_softplus=True, return_final_state=True)
    y, final = ssd_reference(x, dt, A, B, C, **kw)
    y1, mid = ssd_reference(x[:, :23], dt[:, :23], A, B[:, :23], C[:, :23], **kw)
    y2, end = ssd_reference(x[:, 23:], dt[:, 23:], A, B[:, 23:], C[:, 23:], initial_states=mid, **kw)
    assert (torch.cat([y1, y2], 1) - y).abs().max() <= 1e-4 * y.abs().max()
    assert (end - final).abs().max() <= 1e-4 * final.abs().max()
    with pytest.raises(ValueError, match="seq_idx"):
        ssd_reference(x, dt, A, B, C, chunk_size=16, seq_idx=torch.zeros(b, l, dtype=torch.int32), initial_states=mid)


# ------------------------------------------------------------------------ shared log-probs
def mutate(ref: np.ndarray, o: int, base: int) -> np.ndarray:
    alt = ref.copy()
    alt[o] = base
    return alt


@pytest.mark.parametrize("name", TINY)
def test_shared_logprobs_equal_full_passes(name):
    model = dna_model(name, seed=2)
    im = InferenceModel(model, get_adapter("dna"), torch.device("cpu"))
    rng = np.random.default_rng(0)
    W = 120
    refs = [rng.integers(0, 4, W).astype(np.uint8) for _ in range(3)]
    alts = [(0, mutate(refs[0], o, (refs[0][o] + k) % 4)) for o in (0, 1, 2, 59, 60, 61, W - 2, W - 1)
            for k in (1, 2, 3)]  # edges, neighbours, every ALT
    alts += [(1, mutate(refs[1], 64, (refs[1][64] + 1) % 4)),
             (1, np.concatenate([refs[1][:64], [0, 3, 2], refs[1][64:]]).astype(np.uint8)),  # insertion
             (1, np.concatenate([refs[1][:60], refs[1][66:]]).astype(np.uint8)),  # deletion
             (1, np.concatenate([refs[1], [2, 2]]).astype(np.uint8))]  # insertion at the end
    # window 2 has no ALT; the small budget forces several suffix batches and chain rounds
    ref_lps, alt_lps, positions = shared_logprobs(im, refs, alts, budget=300)
    for got, ref in zip(ref_lps, refs):
        np.testing.assert_allclose(got, full_logprobs(model, ref), rtol=1e-5, atol=1e-5)
    for got, (_, alt) in zip(alt_lps, alts):
        np.testing.assert_allclose(got, full_logprobs(model, alt), rtol=1e-5, atol=1e-5)
    assert positions < sum(len(a) for _, a in alts) + sum(len(r) for r in refs)


# ------------------------------------------------------------------ score-variants and CLI
@pytest.fixture(scope="module")
def ck(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ck") / "dna"
    save_checkpoint(path, dna_model("tiny_2stage.json", seed=3), "dna", {})
    return path


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> tuple[Path, str]:
    rng = np.random.default_rng(5)
    seq = "".join(rng.choice(list("ACGT"), 900))
    seq = seq[:700] + "NN" + seq[702:]
    path = tmp_path_factory.mktemp("ref") / "ref.fa"
    path.write_text(f">chr1\n{seq}\n")
    pysam.faidx(str(path))
    return path, seq


def test_score_variants_share_prefix_equals_full(ck, genome, tmp_path):
    ref, seq = genome
    other = lambda b, k=1: "ACGT"[("ACGT".index(b) + k) % 4]  # noqa: E731
    recs = [(300, seq[299], f"{other(seq[299])},{other(seq[299], 2)}"), (301, seq[300], other(seq[300])),
            (420, seq[419:422], seq[419]), (500, seq[499], seq[499] + "TTG"), (5, seq[4], other(seq[4]))]
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=900>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   + "".join(f"chr1\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for p, r, a in recs))
    for rc in (False, True):
        runs = [score_variants(ck, vcf, ref, window=100, rc_average=rc, progress=False, keep_alleles=True,
                               device="cpu", share_prefix=share).alleles_list for share in (True, False)]
        assert len(runs[0]) == 6
        for a, b in zip(*runs):
            assert a.status == b.status == "scored"
            assert a.scores.keys() == b.scores.keys()
            for field in a.scores:  # score, site_llr, ref_ll, alt_ll, per strand too
                assert a.scores[field] == pytest.approx(b.scores[field], rel=1e-5, abs=1e-4), field


def test_saturation_equals_full_recomputation(ck, genome, tmp_path):
    ref, seq = genome
    region = "chr1:681-720"  # 1-based: [680, 720) crosses the NN at 700-702 and is cut into two scoring regions
    shared = saturation_mutagenesis(ck, ref, region, window=40, rc_average=True, device="cpu")
    full = saturation_mutagenesis(ck, ref, region, window=40, rc_average=True, device="cpu", share_prefix=False)
    assert [a.pos for a in shared.alleles_list] == [a.pos for a in full.alleles_list]
    assert shared.scored == 3 * 38 and shared.skipped == {"reference_not_acgt": 2}
    assert {(a.start, a.end) for a in shared.alleles_list if a.status == "scored"} == {(670, 710), (690, 730)}
    for a, b in zip(shared.alleles_list, full.alleles_list):
        assert (a.alt, a.status) == (b.alt, b.status)
        if a.status == "scored":
            assert a.ref == seq[a.pos - 1] != a.alt
            assert a.score == pytest.approx(b.score, rel=1e-5, abs=1e-4)
            assert a.scores["score_rev"] == pytest.approx(b.scores["score_rev"], rel=1e-5, abs=1e-4)
    # and the CLI: a table, same rows; misuse is one line and exit status 2
    out = tmp_path / "sat.tsv"
    res = CliRunner().invoke(app, ["score-variants", "--saturate", region, "--reference", str(ref), "--checkpoint",
                                   str(ck), "--window", "40", "--device", "cpu", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in out.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == 1 + 3 * 38 + 2
    res = CliRunner().invoke(app, ["score-variants", "--saturate", "chr1:10-5", "--reference", str(ref),
                                   "--checkpoint", str(ck)])
    assert res.exit_code == 2 and "region 'chr1:10-5'" in res.output
    res = CliRunner().invoke(app, ["score-variants", "--reference", str(ref), "--checkpoint", str(ck)])
    assert res.exit_code == 2 and "--vcf or --saturate" in res.output


# ------------------------------------------------------------------------ fast vs reference
def test_fast_wrappers_pass_initial_states_and_mask(monkeypatch):
    """CPU plumbing of the fast paths: the SSD wrapper hands mamba-ssm fp32 initial states, and the
    KV-cache attention runs in bf16 what the reference computes in fp32."""
    from hnet_seq.kernels import fast

    seen = {}

    def fake_scan(x, dt, A, B, C, chunk_size, D=None, dt_bias=None, seq_idx=None, dt_softplus=False,
                  return_final_states=False, initial_states=None):
        seen["init"] = initial_states.dtype
        return ssd_reference(x, dt, A, B, C, chunk_size=chunk_size, D=D, initial_states=initial_states,
                             return_final_state=return_final_states)

    monkeypatch.setattr(fast, "_mamba_chunk_scan", fake_scan)
    x, B, C = torch.randn(2, 30, 2, 4), torch.randn(2, 30, 1, 8), torch.randn(2, 30, 1, 8)
    dt, A, init = torch.rand(2, 30, 2), -torch.rand(2), torch.randn(2, 2, 4, 8).double()
    y, state = fast._ssd_fast(x.bfloat16(), dt, A, B, C, chunk_size=16, initial_states=init, return_final_state=True)
    y_ref, state_ref = ssd_reference(x.bfloat16(), dt, A, B, C, chunk_size=16, initial_states=init,
                                     return_final_state=True)
    assert seen["init"] == torch.float32 and torch.equal(y, y_ref) and torch.equal(state, state_ref)
    q, k, v = torch.randn(2, 6, 2, 16), torch.randn(2, 40, 2, 16), torch.randn(2, 40, 2, 16)
    pos = torch.tensor([[0], [30]]) + torch.arange(6)
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    for window in (-1, 3):
        got = fast._attention_kvcache_fast(q.bfloat16(), k.bfloat16(), v.bfloat16(), pos, valid, window_size=window)
        want = attention_kvcache_reference(q, k, v, pos, valid, window_size=window)
        assert got.dtype == torch.bfloat16 and (got.float() - want)[valid].abs().max() <= 3e-2


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_fast_ssd_initial_states_and_kvcache_attention_match_reference(dtype):
    ssd_fast, why = ssd.fast_impl()
    if ssd_fast is None:
        pytest.skip(f"fast ssd unavailable: {why}")
    torch.manual_seed(0)
    dev, tol = "cuda", 1e-3 if dtype == torch.float32 else 2e-2
    b, l, h, p, g, n = 3, 200, 4, 32, 1, 32
    x, B, C = (torch.randn(*s, device=dev).to(dtype) for s in ((b, l, h, p), (b, l, g, n), (b, l, g, n)))
    dt, A, init = torch.rand(b, l, h, device=dev) * 0.1, -torch.rand(h, device=dev), torch.randn(b, h, p, n, device=dev)
    kw = dict(chunk_size=64, D=torch.randn(h, device=dev), initial_states=init, return_final_state=True)
    for f, r in zip(ssd_fast(x, dt, A, B, C, **kw), ssd_reference(x, dt, A, B, C, **kw)):
        assert (f.float() - r.float()).abs().max() <= tol * r.float().abs().max()
    attn_fast, why = attention_kvcache.fast_impl()
    q, k, v = torch.randn(b, 20, h, p, device=dev).to(dtype), *(torch.randn(b, 90, h, p, device=dev).to(dtype)
                                                                  for _ in range(2))
    pos = torch.tensor([0, 30, 70], device=dev)[:, None] + torch.arange(20, device=dev)
    valid = torch.arange(20, device=dev)[None] < torch.tensor([20, 11, 20], device=dev)[:, None]
    for window in (-1, 9):
        f = attn_fast(q, k, v, pos, valid, window_size=window)
        r = attention_kvcache_reference(q, k, v, pos, valid, window_size=window)
        assert (f.float() - r.float())[valid].abs().max() <= tol * r.float().abs().max()


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", TINY)
def test_prefill_on_gpu_fast_kernels_equals_full_forward(name):
    model = dna_model(name).cuda()
    n = 300
    tokens = torch.randint(0, 5, (2, n), device="cuda")
    full = torch.stack([full_logits(model, t) for t in tokens])
    state = model.new_state(2, n)
    with torch.no_grad():
        got = torch.cat([model.prefill(tokens[:, :130], state), model.prefill(tokens[:, 130:], state)], 1)
    assert (got - full).abs().max() <= 2e-3 * full.abs().max()
