"""N never counts as sequence (score, training/held-out loss, variants, pooled embeddings).

Real sequence: the plasmid genome shipped in ``hnet_seq/resources`` (so CI needs no extra data),
with N runs and IUPAC codes (which read as N) added where a real assembly has them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hnet_seq.modalities import get_adapter
from hnet_seq.modalities.base import Record
from hnet_seq.modalities.dna import N_TOKEN, encode_ascii
from helpers import make_checkpoint
from helpers import GENOME


@pytest.fixture(scope="module")
def plasmid() -> str:
    """2,000 bp of the first shipped plasmid (real sequence, ACGT only there)."""
    import pysam

    with pysam.FastaFile(str(GENOME)) as fa:
        seq = fa.fetch(fa.references[0], 10000, 12000).upper()
    assert set(seq) <= set("ACGT")
    return seq


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "dna1", "tiny_1stage.json")


def _record(name: str, seq: str) -> Record:
    return Record(name, encode_ascii(seq)[0], {})


def _score(ck, seqs: dict[str, str], **kw):
    from hnet_seq.inference.score import score

    s = score(ck, records=[_record(k, v) for k, v in seqs.items()], progress=False, **kw)
    return {sc.seq_id: sc for sc in s.scores}, s.metadata


def test_score_ignores_an_appended_n_run(ck, plasmid):
    """Bits/base of a real sequence with a 500 bp N run (and IUPAC codes) appended is
    that of the sequence alone; units_scored counts the scorable bases only."""
    gap = "N" * 450 + "RYKMSWBDHV" * 5
    got, meta = _score(ck, {"plain": plasmid, "gap": plasmid + gap, "inner": plasmid[:1000] + gap + plasmid[1000:]},
                       window=4096)
    plain, with_gap, inner = got["plain"], got["gap"], got["inner"]
    assert plain.units_scored == len(plasmid) - 1  # every base but the first, which has no context
    assert with_gap.units_scored == plain.units_scored and with_gap.length == len(plasmid) + 500
    assert with_gap.log_likelihood == pytest.approx(plain.log_likelihood, rel=1e-6)
    assert with_gap.bits_per_unit == pytest.approx(plain.bits_per_unit, rel=1e-6)
    # a gap inside: the bases after it are still scored (as context, the N change their scores)
    assert inner.units_scored == plain.units_scored and np.isfinite(inner.log_likelihood)
    assert "not_scored" in meta and "N" in meta["not_scored"]


def test_score_tiled_units_equal_scorable_targets(ck, plasmid):
    """With tiles, units_scored = ACGT positions with a left context; an N gap spanning tiles adds none."""
    seq = plasmid[:700] + "N" * 1300 + plasmid[700:]
    got, _ = _score(ck, {"x": seq}, window=512, overlap=0)
    tokens = encode_ascii(seq)[0]
    starts = np.arange(0, len(seq), 512)  # overlap 0: every tile's first position has no context
    scorable = tokens != N_TOKEN
    scorable[starts] = False
    assert got["x"].units_scored == int(scorable.sum())


def test_runner_nll_is_nan_exactly_at_n_targets(ck, plasmid):
    """The one mechanism under score and score-variants: NaN NLL where the target is N, else unchanged."""
    from hnet_seq.inference.model import load
    from hnet_seq.inference.runner import Runner
    from hnet_seq.inference.tiling import WorkItem

    im = load(ck, device="cpu")
    runner = Runner(im, scores=True)
    seq = plasmid[:300] + "NNNNNNNNNNRY" + plasmid[300:600]
    x = torch.from_numpy(encode_ascii(seq)[0].astype(np.int64))
    clean = x.clone()
    clean[clean == N_TOKEN] = 0  # the same positions as targets, none of them N
    (_, [res]), = list(runner.stream([[WorkItem(x, 0, x)]]))
    (_, [ref]), = list(runner.stream([[WorkItem(x, 0, clean)]]))
    is_n = (x == N_TOKEN).numpy()
    assert np.isnan(res.nll[0]) and np.isnan(res.nll[is_n]).all()
    ok = ~is_n
    ok[0] = False
    assert np.isfinite(res.nll[ok]).all()
    np.testing.assert_array_equal(res.nll[ok], ref.nll[ok])  # same inputs: same scores elsewhere
    assert np.isfinite(ref.nll[is_n]).all()  # and the N positions are scorable once they are not N


def test_training_weights_and_loss_ignore_n_targets(tmp_path, plasmid):
    """In a training window with N, N targets have weight 0 and the loss does not
    depend on them (replacing them by any other target leaves it unchanged)."""
    from hnet_seq.data import Corpus, WindowDataset
    from hnet_seq.train import Objective
    from helpers import MICRO_MODEL
    from hnet_seq.config import config_from_dict
    from hnet_seq.model import HNetLM

    seq = plasmid[:600] + "N" * 40 + "RYS" + plasmid[600:1400]
    fa = tmp_path / "g.fa"
    fa.write_text(f">g\n{seq}\n")
    dna = get_adapter("dna")
    ds = WindowDataset(Corpus(dna, dna.read_records([fa])), 256, 2048, shuffle=False, max_n_frac=0.5)
    batch = next(iter(ds))
    t, w = batch["targets"], batch["loss_weights"]
    assert (t == N_TOKEN).sum() == 43
    assert torch.equal(w == 0, t == N_TOKEN)
    torch.manual_seed(0)
    cfg = config_from_dict(MICRO_MODEL)
    model = HNetLM(cfg, embeddings=dna.make_embedding(32), lm_head=dna.make_head(32)).eval()
    model.init_weights()
    from hnet_seq.nn.packing import Packing

    packing = Packing(batch["cu_seqlens"], batch["max_seqlen"], int(batch["cu_seqlens"][-1]))
    with torch.no_grad():
        out = model(batch["tokens"], packing)
    objective = Objective([3.0])
    losses = []
    for fill in (N_TOKEN, 0, 3):
        targets = torch.where(t == N_TOKEN, torch.full_like(t, fill), t)
        res = objective(dna.loss(out.logits, targets), w, out.routing)
        losses.append(res.nll)
        assert res.units == float((t != N_TOKEN).sum())
    assert losses[0] == losses[1] == losses[2]


def test_windows_skip_long_n_gaps_and_metrics_count_them(tmp_path, plasmid):
    """A Mbp-like gap makes no window (not even at max_n_frac=1: a window needs a scorable target),
    and the eval record reports the N kept in held-out windows but left out of the loss."""
    from hnet_seq.data import Corpus
    from hnet_seq.train import load_run_config, train
    from hnet_seq.train.metrics import read_metrics
    from helpers import micro_config

    # 6,520 bp: a 3,000 N gap in the training part, 20 N inside the held-out tail (its last 30%)
    seq = plasmid[:1000] + "N" * 3000 + plasmid[1000:] + plasmid[:1000] + "N" * 20 + plasmid[1000:1500]
    fa = tmp_path / "gap.fa"
    fa.write_text(f">gap\n{seq}\n")
    dna = get_adapter("dna")
    corpus = Corpus(dna, dna.read_records([fa]))
    for frac in (0.1, 1.0):
        wins = corpus.windows(127, max_n_frac=frac)
        tokens = corpus.arrays["gap"]["targets"]
        assert all((tokens[w.start + 1:w.end] != N_TOKEN).any() for w in wins)
        assert corpus.unknown_stats["windows_dropped"] >= 3000 // 128 - 1
        assert corpus.unknown_stats["unknown_skipped"] + corpus.unknown_stats["unknown_kept"] >= 3000
    cfg = load_run_config(str(micro_config(tmp_path, steps=1)), [
        f"data.paths=[{fa}]", "data.heldout_fraction=0.3", "data.eval_tokens=4096", "data.max_n_frac=0.5",
        "checkpoint.every=0"])
    result = train(cfg, tmp_path / "run", quiet=True)
    rows = read_metrics(tmp_path / "run")
    start = next(r for r in rows if r["kind"] == "start")
    train_stats, heldout_stats = start["unknown"]["train"], start["unknown"]["heldout"]
    assert train_stats["windows_dropped"] >= 3000 // 128 - 1  # the gap's windows; its edges may stay
    assert train_stats["unknown_skipped"] > 2500 and train_stats["unknown_skipped"] + train_stats["unknown_kept"] >= 3000
    assert heldout_stats["windows_dropped"] == 0 and heldout_stats["unknown_kept"] == 20
    ev = [r for r in rows if r["kind"] == "eval"][-1]
    assert ev["unscored"] == 20 == result.heldout_unscored  # the 20 N of the held-out tail
    assert np.isfinite(ev["bits_per_unit"])


def test_embed_mean_pool_excludes_n(ck, plasmid, tmp_path):
    """Acceptance (c): the pooled vector of a record with N is the mean over its non-N positions."""
    from hnet_seq.inference.embed import embed
    from hnet_seq.inference.model import load
    from hnet_seq.nn.packing import Packing

    seq = plasmid[:400] + "N" * 100 + "WS" + plasmid[400:700]
    out = tmp_path / "e.npz"
    embed(ck, out=out, records=[_record("x", seq)], pool="mean", stage=0, progress=False, device="cpu")
    pooled = np.load(out)["embedding"][0]
    im = load(ck, device="cpu")
    x = torch.from_numpy(encode_ascii(seq)[0].astype(np.int64))
    with torch.no_grad():
        hidden, _ = im.model.backbone(im.model.embeddings(x), Packing(torch.tensor([0, len(x)], dtype=torch.int32),
                                                                      len(x), len(x)))
    keep = (x != N_TOKEN).numpy()
    np.testing.assert_allclose(pooled, hidden.numpy()[keep].mean(0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(pooled, hidden.numpy().mean(0), atol=1e-4)  # N would have moved it


# ---- runs that resume as they say ---------------------------------------------------------------
def test_interrupted_run_resumes_without_data(tmp_path):
    """`train --resume --out RUN` (the command the interrupt message prints) needs no
    --data: run_config.json records the paths --data gave."""
    import json
    import signal
    import yaml

    from hnet_seq.train.loop import RUN_CONFIG
    from helpers import cli_popen, invoke, micro_config, train_steps, wait_for

    cfg_path = micro_config(tmp_path, steps=500, checkpoint={"every": 0})
    cfg = yaml.safe_load(cfg_path.read_text())
    fasta = cfg["data"].pop("paths")[0]  # the data comes from --data only
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    proc = cli_popen("train", "--config", str(cfg_path), "--data", fasta, "--out", str(run))
    wait_for(lambda: len(train_steps(run)) >= 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"--resume --out {run}" in err
    assert json.loads((run / RUN_CONFIG).read_text())["data"]["paths"] == [str(Path(fasta).resolve())]
    stopped = train_steps(run)[-1]
    again = invoke("train", "--resume", "--out", str(run), "--steps", str(stopped + 2))
    assert again.exit_code == 0, again.output
    assert train_steps(run) == list(range(1, stopped + 3))


def test_preset_name_beats_a_local_folder(tmp_path, monkeypatch):
    """`-c audio` is the preset even with an `audio/` folder in the working directory."""
    from hnet_seq.config import ConfigError
    from hnet_seq.train import load_run_config
    from hnet_seq.train.config import presets_dir, resolve_config_path

    monkeypatch.chdir(tmp_path)
    for name in ("audio", "dna-tiny"):
        (tmp_path / name).mkdir()
        assert resolve_config_path(name) == presets_dir() / f"{name}.yaml"
        assert load_run_config(name).modality.name == name.split("-")[0]
    (tmp_path / "mine").mkdir()
    with pytest.raises(ConfigError, match="mine: is a folder"):
        resolve_config_path("mine")
    own = tmp_path / "audio.yaml"  # a file given by path is still that file
    own.write_text((presets_dir() / "dna-tiny.yaml").read_text())
    assert resolve_config_path("./audio.yaml") == Path("./audio.yaml")


def test_score_variants_ll_over_the_same_non_n_positions(ck, plasmid, tmp_path):
    """An SNV whose window holds an N run: the ref log-likelihood leaves the N out, exactly as
    `score` does for the same window (alt is the same window but the allele: same positions)."""
    import pysam

    from hnet_seq.inference.variants import score_variants

    contig = plasmid[:800] + "N" * 200 + plasmid[800:1800]
    fa = tmp_path / "ref.fa"
    fa.write_text(f">c\n{contig}\n")
    pysam.faidx(str(fa))
    pos = 1300  # 1-based: the 1,024 bp window [787, 1811) holds the whole N run [800, 1000)
    ref_base = contig[pos - 1]
    alt_base = "A" if ref_base != "A" else "C"
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=c,length=2000>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"c\t{pos}\tv1\t{ref_base}\t{alt_base}\t.\t.\t.\n")
    s = score_variants(ck, vcf, fa, window=1024, progress=False, keep_alleles=True, device="cpu")
    [a] = s.alleles_list
    assert a.status == "scored" and np.isfinite(a.scores["ref_ll"]) and np.isfinite(a.scores["alt_ll"])
    start = pos - 1 - 1024 // 2
    window = contig[start:start + 1024]
    assert window.count("N") == 200
    got, _ = _score(ck, {"w": window}, window=1024)
    assert a.scores["ref_ll"] == pytest.approx(got["w"].log_likelihood, rel=1e-5)
    assert got["w"].units_scored == 1023 - 200
