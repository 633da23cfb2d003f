"""``hnet-seq score`` on CPU with tiny random checkpoints: per-position log-probabilities sum to the
table's likelihood across tiles, and every modality (DNA, bytes, raw audio) scores through one API."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import invoke, make_checkpoint


def test_score_per_position_and_tiling(ck2, small_fasta, tmp_path):
    fasta, lengths = small_fasta
    out, pp = tmp_path / "s.tsv", tmp_path / "pp.parquet"
    r = invoke("score", fasta, "--checkpoint", ck2, "-o", out, "--per-position", pp, "--window", 2000,
               "--overlap", 256, "--quiet")
    assert r.exit_code == 0, r.output
    lines = [l.split("\t") for l in out.read_text().splitlines() if not l.startswith("#")]
    header, body = lines[0], lines[1:]
    table = {row[0]: dict(zip(header, row)) for row in body}
    positions = pq.read_table(str(pp))
    sid = np.array(positions.column("seq_id").to_pylist())
    for name, n in lengths.items():
        row = table[name]
        assert int(row["length"]) == n and int(row["units_scored"]) == n - 1  # first base has no context
        m = sid == name
        pos = positions.column("position").to_numpy()[m]
        assert np.array_equal(pos, np.arange(1, n))
        lp = positions.column("logprob").to_numpy()[m].astype(np.float64)
        assert abs(lp.sum() - float(row["log_likelihood"])) < 1e-2
        assert abs(float(row["bits_per_unit"]) + lp.sum() / ((n - 1) * np.log(2))) < 1e-4


def test_score_every_modality(shared_data, tmp_path):
    """bytes (a UDHR text, BOS scored from) and raw audio (a real WAV) through the same API."""
    from hnet_seq.inference.score import score

    text = shared_data / "text" / "udhr2"
    wavs = sorted((shared_data / "audio" / "codec2").glob("*.wav"))
    if not text.is_dir() or not wavs:
        pytest.skip("shared text/audio data missing")
    sample = next(p for p in sorted(text.glob("*.txt")) if 1500 < p.stat().st_size)
    doc = tmp_path / "doc.txt"
    doc.write_bytes(sample.read_bytes()[:1200])
    ckb = make_checkpoint(tmp_path / "bytes", "tiny_1stage.json", "bytes")
    s = score(ckb, [doc], progress=False).scores[0]
    assert s.length == 1200 and s.units_scored == 1200  # every byte is predicted (BOS first)
    assert 4.0 < s.bits_per_unit < 16.0
    cka = make_checkpoint(tmp_path / "audio", "tiny_1stage.json", "audio",
                          {"sample_rate": 8000, "frame_size": 80, "mixtures": 2})
    import soundfile as sf

    wav = tmp_path / "clip.wav"
    data, sr = sf.read(str(wavs[0]), dtype="int16")
    sf.write(str(wav), data[: sr // 2], sr, subtype="PCM_16")
    a = score(cka, [wav], progress=False).scores[0]
    n_frames = len(data[: sr // 2]) * 8000 // sr // 80
    assert a.units_scored == (n_frames - 1) * 80 and np.isfinite(a.log_likelihood)
