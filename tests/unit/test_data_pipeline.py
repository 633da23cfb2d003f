"""Data pipeline on the real files: windows and splits, packing, order, workers, ranks, shards."""
from __future__ import annotations

import gc
import io
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hnet_seq.data import (Corpus, Interval, WindowDataset, overlapping, pack_examples, plan_batches,
                           read_shards, split_by_record, split_by_region, stream_batches, write_shards)
from hnet_seq.data.packing import Example
from hnet_seq.errors import UserError
from hnet_seq.modalities import get_adapter
from hnet_seq.modalities.dna import reverse_complement

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def klebsiella(shared_data):
    dna = get_adapter("dna")
    files = sorted((shared_data / "dna").glob("klebsiella_*.fna.gz"))
    assert len(files) == 4
    return Corpus(dna, dna.read_records(files))


@pytest.fixture(scope="module")
def shigella(shared_data):
    dna = get_adapter("dna")
    return Corpus(dna, dna.read_records([shared_data / "dna" / "shigella_sonnei_53G_plasmids.fasta"]))


def inside(windows, intervals):
    return all(any(w.contig == iv.contig and iv.start <= w.start and w.end <= iv.end for iv in intervals)
               for w in windows)


# ---- packing ---------------------------------------------------------------------------------------
def test_pack_examples_has_no_padding_and_shifts_targets():
    seqs = [np.arange(n + 1, dtype=np.uint8) + 10 * i for i, n in enumerate([5, 1, 7])]
    examples = [Example(f"s{i}", s[:-1], s[1:], np.ones(len(s) - 1, np.float32)) for i, s in enumerate(seqs)]
    b = pack_examples(examples)
    assert b["tokens"].dtype == torch.int64 and b["tokens"].shape == (13,)
    assert b["cu_seqlens"].dtype == torch.int32 and b["cu_seqlens"].tolist() == [0, 5, 6, 13]
    assert b["max_seqlen"] == 7 and b["ids"] == ["s0", "s1", "s2"]
    assert torch.equal(b["targets"], torch.from_numpy(np.concatenate([s[1:] for s in seqs]).astype(np.int64)))
    assert plan_batches([3, 3, 3, 5, 1], 6) == [[0, 1], [2], [3, 4]]


# ---- windows and held-out splits --------------------------------------------------------------------
def test_klebsiella_heldout_windows_never_overlap_training(klebsiella):
    assert sum(klebsiella.lengths.values()) > 22_000_000 and len(klebsiella) == 16
    strain = [rid for rid, src in klebsiella.sources.items() if "NTUH" in src]  # hold out a whole genome
    assert overlapping([Interval("a", 0, 10)], [Interval("a", 9, 20)])  # the check can fail
    for split in (split_by_region(klebsiella.lengths, 0.1, "end"),
                  split_by_region(klebsiella.lengths, 0.1, "random", seed=3),
                  split_by_record(klebsiella.lengths, 0.25, seed=1),
                  split_by_record(klebsiella.lengths, strain)):
        assert not overlapping(split.train, split.heldout)
        train = klebsiella.windows(4096, intervals=split.train)
        held = klebsiella.windows(4096, intervals=split.heldout)
        assert not overlapping(train, held)
        assert inside(train, split.train) and inside(held, split.heldout)
        assert {w.contig for w in train} | {w.contig for w in held} <= set(klebsiella.lengths)
        covered = sum(len(w) - 1 for w in train) + sum(len(w) - 1 for w in held)
        assert covered > 0.99 * sum(klebsiella.lengths.values())  # nothing much lost to windowing


def test_text_heldout_is_the_tail_of_each_document(shared_data):
    corpus = Corpus(get_adapter("bytes"), get_adapter("bytes").read_records([shared_data / "text" / "udhr2"]))
    split = split_by_region(corpus.lengths, 0.1, "end")
    train, held = corpus.windows(512, intervals=split.train), corpus.windows(512, intervals=split.heldout)
    assert not overlapping(train, held)
    assert all(w.end <= corpus.lengths[w.contig] and w.start >= 0.9 * corpus.lengths[w.contig] - 1 for w in held)
    assert len({w.contig for w in held}) > 380  # every non-trivial language has a held-out tail


def test_n_windows_are_dropped_and_all_n_records_skipped(tmp_path):
    dna = get_adapter("dna")
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 1000))
    seq = seq[:300] + "N" * 200 + seq[500:]
    (tmp_path / "g.fa").write_text(f">good\n{seq}\n>allN\n{'N' * 500}\n")
    with pytest.warns(UserWarning, match="g.fa: record 'allN' is all N"):
        wins = Corpus(dna, dna.read_records([tmp_path / "g.fa"])).windows(99, max_n_frac=0.1)
    assert {w.contig for w in wins} == {"good"}
    assert all(w.end <= 300 or w.start >= 500 or min(w.end, 500) - max(w.start, 300) <= 10 for w in wins)
    (tmp_path / "n.fa").write_text(">onlyN\nNNNNNNNNNNNN\n")
    with pytest.raises(UserError, match="n.fa: no usable windows") as err, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Corpus(dna, dna.read_records([tmp_path / "n.fa"])).windows(4)
    assert "\n" not in str(err.value)


# ---- the dataset: strands, order, resume, workers, ranks -------------------------------------------
def test_rc_augmented_batch_contains_both_strands(shigella):
    ds = WindowDataset(shigella, 1000, 64_000, rc_augment=True, seed=0)
    batch = next(iter(ds))
    assert {"+", "-"} <= set(batch["strands"])
    cu = batch["cu_seqlens"].tolist()
    for i, (rid, (s, e), strand) in enumerate(zip(batch["ids"], batch["spans"], batch["strands"])):
        span = shigella.arrays[rid]["inputs"][s:e]
        expected = reverse_complement(span) if strand == "-" else span
        assert np.array_equal(batch["tokens"][cu[i]:cu[i + 1]].numpy(), expected[:-1])
        assert np.array_equal(batch["targets"][cu[i]:cu[i + 1]].numpy(), expected[1:])


def keys(batches):
    return [(b["ids"], b["spans"], b["strands"]) for b in batches]


def test_order_is_seeded_and_resumable(shigella):
    make = lambda seed=0: WindowDataset(shigella, 500, 2000, rc_augment=True, seed=seed)  # noqa: E731
    full = keys(make())
    assert full == keys(make()) and full != keys(make(seed=1)) and len(full) > 10
    ds = make()
    it = iter(ds)
    for _ in range(3):
        state = next(it)["state"]
    assert state == ds.state_dict() == {"seed": 0, "epoch": 0, "position": 3}
    resumed = make()
    resumed.load_state_dict(state)
    assert keys(resumed) == full[3:] and keys(resumed) == full[3:]  # passes do not move the start
    assert resumed.state_dict() == {"seed": 0, "epoch": 1, "position": 0}
    resumed.set_epoch(1)
    epoch1 = keys(resumed)
    assert epoch1 != full and len(epoch1) == len(full)  # a new order of the same windows


def test_dataloader_workers_split_the_work_and_keep_the_order(shigella):
    ds = WindowDataset(shigella, 500, 2000, seed=0)
    single = keys(DataLoader(ds, batch_size=None, num_workers=0))
    multi = keys(DataLoader(ds, batch_size=None, num_workers=2))
    assert multi == single
    spans = [(i, tuple(s)) for ids, sp, _ in multi for i, s in zip(ids, sp)]
    assert len(spans) == len(set(spans))  # no window twice in an epoch


def test_ranks_get_disjoint_windows(shigella):
    parts = [WindowDataset(shigella, 500, 2000, seed=0, rank=r, world_size=2) for r in (0, 1)]
    seen = [{(i, tuple(s)) for ids, sp, _ in keys(p) for i, s in zip(ids, sp)} for p in parts]
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert len(parts[0]) == len(parts[1])
    assert len(seen[0] | seen[1]) >= len(parts[0].windows) - 4  # at most the ragged tail dropped


def test_batches_feed_the_core_model(shigella, shared_data):
    from hnet_seq import HNetLM, Packing, load_config

    cfg = load_config(CONFIGS / "tiny_1stage.json")
    d = cfg.d_model[0]
    for adapter, corpus in ((shigella.adapter, shigella),
                            (get_adapter("audio", sample_rate=8000, frame_size=40, mixtures=2), None)):
        if corpus is None:
            corpus = Corpus(adapter, adapter.read_records([shared_data / "audio" / "codec2" / "hts1a.wav"]))
        torch.manual_seed(0)
        model = HNetLM(cfg, embeddings=adapter.make_embedding(d), lm_head=adapter.make_head(d)).eval()
        batch = next(iter(WindowDataset(corpus, 32, 96, seed=0)))
        with torch.no_grad():
            out = model(batch[adapter.input_key], Packing(batch["cu_seqlens"], batch["max_seqlen"]))
        nll = adapter.loss(out.logits, batch["targets"], batch["loss_weights"])
        bits = adapter.bits_per_unit(nll, len(nll) * adapter.units_per_position)
        assert nll.shape == (batch["cu_seqlens"][-1],) and 0 < bits < 40


# ---- shards ------------------------------------------------------------------------------------------
def same_records(a, b):
    assert [r.id for r in a] == [r.id for r in b]
    for x, y in zip(a, b):
        assert np.array_equal(x.data, y.data) and x.data.dtype == y.data.dtype
        assert {k for k in x.meta} == {k for k in y.meta}
        for k, v in x.meta.items():
            assert np.array_equal(v, y.meta[k]) if isinstance(v, np.ndarray) else v == y.meta[k]


@pytest.mark.parametrize("modality,inputs", [
    ("dna", ["dna/shigella_sonnei_53G_plasmids.fasta", "dna/klebsiella_Klebs_Kp1084.fna.gz"]),
    ("bytes", ["text/udhr2"]),
    ("audio", ["audio/codec2"]),
])
def test_shard_round_trip_equals_direct_read(shared_data, tmp_path, modality, inputs):
    adapter = get_adapter(modality)
    paths = [shared_data / p for p in inputs]
    shards = write_shards(adapter, paths, tmp_path / "out", max_shard_bytes=1 << 18)
    assert len(shards) > 1 and not list(tmp_path.glob(".out.partial*"))
    pattern = str(tmp_path / "out" / f"shard-{{000000..{len(shards) - 1:06d}}}.tar")
    same_records(list(read_shards(pattern, modality=modality)), list(adapter.read_records(paths)))
    shuffled = list(read_shards(tmp_path / "out", shuffle_buffer=8, seed=1))
    assert sorted(r.id for r in shuffled) == sorted(r.id for r in adapter.read_records(paths))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["modality"] == modality and manifest["records"] == len(shuffled)


def tar_with(path, members: dict[str, bytes]):
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_shard_with_missing_keys_raises(tmp_path):
    other = tar_with(tmp_path / "other.tar", {"000.txt": b"hello"})
    with pytest.raises(UserError, match=r"other.tar: sample '000' has no '000.json'"):
        list(read_shards(other))
    meta = json.dumps({"id": "x", "data_key": "tokens", "arrays": ["mask"]}).encode()
    partial = tar_with(tmp_path / "partial.tar", {"001.json": meta, "001.tokens.npy": b"x"})
    with pytest.raises(UserError, match=r"partial.tar: sample '001' has no '001.mask.npy'") as err:
        list(read_shards(partial))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no such shard"):
        list(read_shards(tmp_path / "missing-{0..3}.tar"))


def trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc), so that RSS growth shows what is live."""
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_shard_reader_memory_is_bounded_by_the_buffer(tmp_path, report):
    rng = np.random.default_rng(0)
    src = tmp_path / "docs"
    src.mkdir()
    n_docs, doc_bytes, buffer = 96, 512 << 10, 4
    for i in range(n_docs):
        (src / f"d{i:03d}.txt").write_bytes(rng.integers(0, 256, doc_bytes, dtype=np.uint8).tobytes())
    write_shards(get_adapter("bytes"), [src], tmp_path / "shards", max_shard_bytes=4 << 20)
    total_mib = n_docs * doc_bytes / (1 << 20)
    trim_heap()
    base = peak = rss_mib()
    count = 0
    for record in read_shards(tmp_path / "shards", shuffle_buffer=buffer, seed=0):
        count += len(record)
        peak = max(peak, rss_mib())
    growth = peak - base
    report("shard reader RSS growth", f"{growth:.1f} MiB reading {total_mib:.0f} MiB of shards "
           f"with a {buffer}-record ({buffer * doc_bytes >> 20} MiB) shuffle buffer")
    assert count == n_docs * doc_bytes
    assert growth < total_mib / 4


def test_stream_batches_pack_shards_within_budget(shared_data, tmp_path):
    adapter = get_adapter("bytes")
    write_shards(adapter, [shared_data / "text" / "udhr2"], tmp_path / "s")
    batches = list(stream_batches(adapter, read_shards(tmp_path / "s", shuffle_buffer=16), 1024, 8192))
    assert all(int(b["cu_seqlens"][-1]) <= 8192 and b["max_seqlen"] <= 1024 for b in batches)
    total = sum(int(b["cu_seqlens"][-1]) for b in batches)
    files = list((shared_data / "text" / "udhr2").glob("*.txt"))
    # Every byte is predicted once; only the BOS of each non-empty document is not a target.
    assert total == sum(f.stat().st_size for f in files)


def test_cli_shard_leaves_no_partial_output_on_error(shared_data, tmp_path):
    from typer.testing import CliRunner

    from hnet_seq.cli.main import app

    good = shared_data / "dna" / "shigella_sonnei_53G_plasmids.fasta"
    bad = tmp_path / "bad.fa"
    bad.write_text("ACGT\n")
    runner = CliRunner()
    res = runner.invoke(app, ["shard", "--modality", "dna", str(good), str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "bad.fa" in res.output
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.partial*"))
    res = runner.invoke(app, ["shard", "-m", "dna", str(good), "-o", str(tmp_path / "o"), "--max-shard-mb", "0.1"])
    assert res.exit_code == 0, res.output
    assert len(list(read_shards(tmp_path / "o"))) == 3
    assert "Examples" in runner.invoke(app, ["shard", "--help"]).output
