"""Audio outputs carry time (issue 17 acceptance 4): beside every sample coordinate its time in
seconds, and the sample rate, in score tables (file and stdout), per-position scores and
embeddings; ``score`` prints the log-likelihood per second of audio.  Real speech from the
package's resources (codec2 test recordings, 8 kHz); a tiny random audio checkpoint.
"""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from hnet_seq.modalities import get_adapter
from hnet_seq.train.data import default_paths
from helpers import make_checkpoint
from helpers import free_port, invoke

OPTIONS = {"sample_rate": 8000, "frame_size": 40, "mixtures": 2}


@pytest.fixture(scope="module")
def speech():
    adapter = get_adapter("audio", **OPTIONS)
    return sorted(p for p in __import__("pathlib").Path(default_paths(adapter)[0]).glob("*.flac"))[:2]


@pytest.fixture(scope="module")
def cka(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "audio", "tiny_1stage.json", "audio", OPTIONS)


def test_score_tables_carry_seconds_and_sample_rate(tmp_path, cka, speech):
    out, pos = tmp_path / "s.parquet", tmp_path / "pos.parquet"
    result = invoke("score", *speech, "--checkpoint", cka, "-o", out, "--per-position", pos, "-q")
    assert result.exit_code == 0, result.output
    t = pq.read_table(out).to_pydict()
    assert t["sample_rate"] == [8000, 8000]
    np.testing.assert_allclose(t["end_s"], np.array(t["end"]) / 8000)
    assert t["start_s"] == [0.0, 0.0] and all(1.5 < e < 4.5 for e in t["end_s"])
    p = pq.read_table(pos).to_pydict()
    np.testing.assert_allclose(p["position_s"], np.array(p["position"]) / 8000)
    assert set(p["sample_rate"]) == {8000}
    seconds = sum(t["end_s"])
    nats = sum(t["log_likelihood"])
    line = next(x for x in result.output.splitlines() if "per second of audio" in x)
    per_s = float(line.split("log-likelihood ")[1].split(" nats")[0].replace(",", ""))
    # scored audio is all but the first frame of each file
    assert per_s == pytest.approx(nats / (seconds - 2 * 40 / 8000), rel=1e-3)


def test_score_stdout_has_the_same_columns(cka, speech):
    result = invoke("score", speech[0], "--checkpoint", cka, "-q")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[:2]
    cols = dict(zip(header.split("\t"), row.split("\t")))
    assert cols["sample_rate"] == "8000" and float(cols["end_s"]) == pytest.approx(int(cols["end"]) / 8000)


def test_embeddings_carry_seconds(tmp_path, cka, speech):
    out = tmp_path / "e.parquet"
    result = invoke("embed", *speech, "--checkpoint", cka, "-o", out, "--chunks", "-q")
    assert result.exit_code == 0, result.output
    for path in (out, tmp_path / "e.chunks.parquet"):
        t = pq.read_table(path).to_pydict()
        np.testing.assert_allclose(t["start_s"], np.array(t["start"]) / 8000)
        np.testing.assert_allclose(t["end_s"], np.array(t["end"]) / 8000)
        assert set(t["sample_rate"]) == {8000}


def test_dna_outputs_have_no_time_columns(tmp_path):
    ck = make_checkpoint(tmp_path / "dna", "tiny_1stage.json")
    fa = tmp_path / "x.fa"
    fa.write_text(">x\nACGTACGGTTAGCATCGATCGATCAGCTAGCATCGACTAGCAT\n")
    result = invoke("score", fa, "--checkpoint", ck, "-o", tmp_path / "s.parquet", "-q")
    assert result.exit_code == 0, result.output
    names = pq.read_table(tmp_path / "s.parquet").column_names
    assert "sample_rate" not in names and "start_s" not in names
    assert "per second" not in result.output


def test_chunks_png_of_audio_draws_waveform_and_spectrogram(tmp_path, cka, speech):
    from PIL import Image

    png = tmp_path / "a.png"
    result = invoke("chunks", speech[0], "--checkpoint", cka, "--png", png)
    assert result.exit_code == 0, result.output
    ck = make_checkpoint(tmp_path / "bytes", "tiny_1stage.json", "bytes")
    doc = tmp_path / "d.txt"
    doc.write_text("All human beings are born free and equal in dignity and rights. " * 4)
    text_png = tmp_path / "t.png"
    assert invoke("chunks", doc, "--checkpoint", ck, "--png", text_png).exit_code == 0
    # one stage track each; audio adds two panels of the same height (1.9 in at 110 dpi)
    extra = Image.open(png).size[1] - Image.open(text_png).size[1]
    assert abs(extra - 2 * 1.9 * 110) <= 2


def test_generate_reports_loglik_per_second_equal_to_score(tmp_path, cka, speech):
    from hnet_seq.inference.generate import continue_audio
    from hnet_seq.inference.score import score

    c = continue_audio(cka, speech[0], tmp_path / "more.wav", seconds=0.05, device="cpu")
    s = score(cka, [speech[0]], progress=False, device="cpu")
    assert c.prompt_seconds == pytest.approx(s.scores[0].units_scored / 8000)
    # the step cache scores the prompt as the full forward does
    assert c.prompt_log_likelihood == pytest.approx(s.scores[0].log_likelihood, rel=1e-4)
    assert c.new_seconds == pytest.approx(0.05) and np.isfinite(c.new_nats_per_second)
    result = invoke("generate", "--checkpoint", cka, "--audio-prompt", speech[0], "--out-wav", tmp_path / "m2.wav",
                    "--seconds", "0.05", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"prompt {c.prompt_nats_per_second:,.1f} nats/s" in result.output


def test_chunks_html_of_audio_is_a_waveform_view(tmp_path, cka, speech):
    from hnet_seq.inference import boundary_tracks, load

    page = tmp_path / "a.html"
    result = invoke("chunks", speech[0], "--checkpoint", cka, "--html", page)
    assert result.exit_code == 0, result.output
    text = page.read_text()
    im = load(cka, device="cpu")
    tracks = boundary_tracks(im, list(im.adapter.read_records([speech[0]])))[0]
    assert text.count("<svg") == 1 and "class='c'" not in text  # no per-sample character cells
    assert text.count("<line") == len(tracks.stages[0].starts) > 3
    assert f"{tracks.length / 8000:.2f} s at 8000 Hz" in text
    assert len(text) < 40 * tracks.length / 8000 * 1000  # tens of kB per second, not MB


def test_time_columns_survive_the_torchrun_merge(tmp_path, cka, speech):
    import os
    import subprocess
    import sys

    from helpers import ROOT

    multi = tmp_path / "m.parquet"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           str(free_port()), "-m", "hnet_seq.cli", "score", *map(str, speech), "--checkpoint",
                           str(cka), "--device", "cpu", "-o", str(multi), "-q"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, "\n".join(x for x in proc.stderr.splitlines() if "rank0" in x)[-3000:]
    single = tmp_path / "s.parquet"
    assert invoke("score", *speech, "--checkpoint", cka, "--device", "cpu", "-o", single, "-q").exit_code == 0
    a, b = pq.read_table(multi).to_pydict(), pq.read_table(single).to_pydict()
    assert list(a) == list(b)
    for col in ("start_s", "end_s", "sample_rate"):
        assert a[col] == b[col], col
