"""``hnet-seq embed`` on CPU with tiny random checkpoints and real sequence (the packaged plasmids):
chunk coordinates tile every sequence at every stage, RC averaging is strand-symmetric, BED
coordinates round-trip, pooling options and .npz output, and tile plans cover the input exactly."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from helpers import GENOME, chunk_rows, invoke


def assert_tiles(rows: dict, lengths: dict[str, int], stages: int, offsets: dict[str, int] | None = None) -> None:
    """Chunks of every stage tile every sequence: sorted, no gap, no overlap, first at 0, last at the end."""
    sid = np.array(rows["seq_id"])
    for name, n in lengths.items():
        off = (offsets or {}).get(name, 0)
        for s in range(1, stages + 1):
            m = (sid == name) & (rows["stage"] == s)
            assert m.sum() > 3, (name, s)
            a, b = rows["start"][m], rows["end"][m]
            order = np.argsort(a)
            a, b = a[order], b[order]
            assert a[0] == off and b[-1] == off + n, (name, s, a[0], b[-1])
            assert np.array_equal(a[1:], b[:-1]), (name, s)
            assert (b > a).all()

def test_embed_chunks_tile_every_sequence_cli(ck2, small_fasta, tmp_path, report):
    fasta, lengths = small_fasta
    out = tmp_path / "emb.parquet"
    r = invoke("embed", fasta, "--checkpoint", ck2, "-o", out, "--chunks", "--window", 2000, "--overlap", 256,
               "--quiet")
    assert r.exit_code == 0, r.output
    seqs = pq.read_table(str(out))
    assert seqs.column("seq_id").to_pylist() == list(lengths)
    assert seqs.column("length").to_pylist() == list(lengths.values())
    assert seqs.column("tiles").to_pylist()[0] == 3  # 5,153 bp in tiles of 2,000 every 1,744
    meta = json.loads(pq.read_schema(str(out)).metadata[b"hnet_seq"])
    assert meta["window"] == 2000 and meta["overlap"] == 256 and "tiles of 2000" in meta["tiling"]
    emb = np.stack(seqs.column("embedding").to_numpy(zero_copy_only=False))
    assert emb.shape == (3, 64) and np.isfinite(emb).all()
    rows = chunk_rows(tmp_path / "emb.chunks.parquet")
    assert_tiles(rows, lengths, stages=2)
    dims = {s: len(rows["vector"][int(np.flatnonzero(rows["stage"] == s)[0])]) for s in (1, 2)}
    assert dims == {1: 96, 2: 128} == {s: meta["dims"][s] for s in (1, 2)}
    for s in (1, 2):  # chunk counts per stage agree with the sequence table
        per_seq = [int(((np.array(rows["seq_id"]) == n) & (rows["stage"] == s)).sum()) for n in lengths]
        assert per_seq == [c[s - 1] for c in seqs.column("num_chunks").to_pylist()]
    ratio = [len(rows["start"][rows["stage"] == s]) for s in (1, 2)]
    report("chunks per stage (7,653 bp)", ratio)


def test_rc_average_is_strand_symmetric(ck2, plasmids):
    from hnet_seq.inference.embed import embed
    from hnet_seq.modalities.base import Record
    from hnet_seq.modalities.dna import encode_ascii, reverse_complement

    seq = encode_ascii(next(iter(plasmids.values()))[5000:6400])[0]
    n = len(seq)
    records = [Record("fwd", seq, {}), Record("rev", reverse_complement(seq), {})]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "rc.parquet"
        # tiles of 600 every 500 on both strands, so stitching and strand mapping both matter
        embed(ck2, out=out, records=records, chunks=True, rc_average=True, window=600, overlap=100, progress=False)
        emb = np.stack(pq.read_table(str(out)).column("embedding").to_numpy(zero_copy_only=False))
        rows = chunk_rows(Path(d) / "rc.chunks.parquet")
    assert np.abs(emb[0] - emb[1]).max() < 1e-5
    assert not np.allclose(emb[0], 0)
    assert_tiles(rows, {"fwd": n, "rev": n}, stages=2)
    sid = np.array(rows["seq_id"])
    for s in (1, 2):
        f, r = (sid == "fwd") & (rows["stage"] == s), (sid == "rev") & (rows["stage"] == s)
        fa, fb = rows["start"][f], rows["end"][f]
        ra, rb = n - rows["end"][r], n - rows["start"][r]  # mirrored into forward coordinates
        of, orr = np.argsort(fa), np.argsort(ra)
        assert np.array_equal(fa[of], ra[orr]) and np.array_equal(fb[of], rb[orr])
        vf = np.array([rows["vector"][i] for i in np.flatnonzero(f)])[of]
        vr = np.array([rows["vector"][i] for i in np.flatnonzero(r)])[orr]
        assert np.abs(vf - vr).max() < 1e-5
        # boundary probability at a cut c of the sequence = at cut n - c of its reverse complement
        pf = dict(zip(fa.tolist(), rows["boundary_prob"][f].tolist()))
        pr = {n - a: p for a, p in zip(rows["start"][r].tolist(), rows["boundary_prob"][r].tolist())}
        inner = [c for c in pf if 0 < c < n]
        assert set(inner) == {c for c in pr if 0 < c < n}
        assert max(abs(pf[c] - pr[c]) for c in inner) < 1e-5


def test_bed_coordinates_round_trip(ck1, plasmids, tmp_path):
    """BED input: rows carry genomic coordinates; chunks equal those of the same bases as FASTA, shifted."""
    names = list(plasmids)
    bed = tmp_path / "regions.bed"
    # the second interval names its contig with a chr prefix: aliased to find it, kept in the output
    bed.write_text(f"{names[0]}\t100200\t101000\tgeneA\n{'chr' + names[2]}\t3000\t3700\tgeneB\n")
    out = tmp_path / "bed.parquet"
    r = invoke("embed", "--bed", bed, "--reference", GENOME, "--checkpoint", ck1, "-o", out, "--chunks",
               "--quiet")
    assert r.exit_code == 0, r.output
    seqs = pq.read_table(str(out)).to_pylist()
    assert [(s["chrom"], s["start"], s["end"]) for s in seqs] == [(names[0], 100200, 101000),
                                                                 ("chr" + names[2], 3000, 3700)]
    rows = chunk_rows(tmp_path / "bed.chunks.parquet")
    ids = [s["seq_id"] for s in seqs]
    assert_tiles(rows, {ids[0]: 800, ids[1]: 700}, stages=1, offsets={ids[0]: 100200, ids[1]: 3000})
    assert set(rows["chrom"]) == {names[0], "chr" + names[2]}
    # the same bases written as FASTA give the same chunks, 100,200 / 3,000 positions earlier
    fa = tmp_path / "same.fa"
    fa.write_text(f">a\n{plasmids[names[0]][100200:101000]}\n>b\n{plasmids[names[2]][3000:3700]}\n")
    r = invoke("embed", fa, "--checkpoint", ck1, "-o", tmp_path / "fa.parquet", "--chunks", "--quiet")
    assert r.exit_code == 0, r.output
    plain = chunk_rows(tmp_path / "fa.chunks.parquet")
    for bed_id, fa_id, off in ((ids[0], "a", 100200), (ids[1], "b", 3000)):
        mb, mf = np.array(rows["seq_id"]) == bed_id, np.array(plain["seq_id"]) == fa_id
        assert np.array_equal(rows["start"][mb] - off, plain["start"][mf])
        assert np.array_equal(rows["end"][mb] - off, plain["end"][mf])
        assert np.allclose(rows["boundary_prob"][mb], plain["boundary_prob"][mf], atol=1e-6)


def test_embed_pooling_options_and_npz(ck2, plasmids, tmp_path):
    from hnet_seq.inference.embed import embed
    from hnet_seq.modalities.base import Record
    from hnet_seq.modalities.dna import encode_ascii

    rec = [Record("x", encode_ascii(next(iter(plasmids.values()))[:700])[0], {})]
    vecs = {}
    for pool, stage, layer in (("mean", 0, "output"), ("chunks", None, "output"), ("last", 2, "output"),
                               ("mean", 1, "input")):
        out = tmp_path / f"{pool}{stage}{layer}.npz"
        embed(ck2, out=out, records=rec, pool=pool, stage=stage, layer=layer, chunks=True, progress=False)
        z = np.load(out)
        vecs[(pool, stage, layer)] = z["embedding"][0]
        assert json.loads(str(z["metadata"]))["pool"] == pool
        assert z["chunk_start"].shape == z["chunk_end"].shape
        # chunk vectors follow --layer: stage-1 chunks' outputs are 96-wide, their inputs 64-wide
        assert z["chunk_vector_stage1"].shape == ((z["chunk_stage"] == 1).sum(), 96 if layer == "output" else 64)
    assert vecs[("mean", 0, "output")].shape == (64,)
    assert vecs[("chunks", None, "output")].shape == (96,)
    assert vecs[("last", 2, "output")].shape == (128,)
    assert vecs[("mean", 1, "input")].shape == (64,)  # a chunk's input is the stage-0 encoder state


def test_tiles_cover_input_exactly():
    from hnet_seq.inference.tiling import plan_tiles

    for n, w, o in ((1, 8, 2), (8, 8, 2), (9, 8, 2), (100, 8, 3), (1000, 97, 0), (5153, 2000, 256)):
        tiles = plan_tiles(n, w, o)
        owned = np.concatenate([np.arange(t.own_start, t.end) for t in tiles])
        assert np.array_equal(owned, np.arange(n))
        assert all(t.end - t.start <= w and (t.index == 0 or t.own_start - t.start == o) for t in tiles)
