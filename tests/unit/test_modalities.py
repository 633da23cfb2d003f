"""Modality adapters on the real files in ../shared/data: round trips, counts, bad inputs."""
from __future__ import annotations

import gzip
import json
import math
import shutil

import numpy as np
import pysam
import pytest
import soundfile as sf
import torch
from Bio import SeqIO
from torch import nn

from hnet_seq.errors import UserError
from hnet_seq.modalities import Record, get_adapter
from hnet_seq.modalities.dna import decode_tokens, encode_ascii, reverse_complement
from hnet_seq.modalities.mixtures import dmol_nll


def one_line_naming(err: pytest.ExceptionInfo, name: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and name in msg, msg


def write_fasta(path, text: str):
    path.write_text(text)
    return path


# ---- registry -----------------------------------------------------------------------------------
def test_registry_builds_each_modality_and_rejects_unknown():
    assert {get_adapter(n).unit_name for n in ("dna", "bytes", "audio")} == {"base", "byte", "sample"}
    with pytest.raises(UserError, match="unknown modality 'rna'"):
        get_adapter("rna")
    with pytest.raises(UserError, match="modality 'dna'"):
        get_adapter("dna", colour="blue")


def test_discrete_parts_use_official_parameter_names():
    for name, table in (("dna", 8), ("bytes", 256)):
        adapter = get_adapter(name)
        model = nn.Module()
        model.embeddings, model.lm_head = adapter.make_embedding(16), adapter.make_head(16)
        assert set(model.state_dict()) == {"embeddings.weight", "lm_head.weight"}
        assert model.embeddings.weight.shape == (table, 16) and model.lm_head.weight.shape == (table, 16)
        logits = model.lm_head(model.embeddings(torch.tensor([0, 1, 2, 3])))
        nll = adapter.loss(logits, torch.tensor([1, 2, 3, 4]))
        assert nll.shape == (4,) and (nll > 0).all()


# ---- DNA ------------------------------------------------------------------------------------------
def test_dna_round_trip_keeps_case_and_maps_iupac_to_n(tmp_path):
    path = write_fasta(tmp_path / "x.fa", ">r1 desc\nACGTNacgtn\nRYkmAc\n>r2\nggggTTTT\n")
    dna = get_adapter("dna")
    recs = list(dna.read_records([path]))
    assert [r.id for r in recs] == ["r1", "r2"]
    assert dna.decode(dna.encode(recs[0]), recs[0].meta) == "ACGTNacgtnNNnnAc"
    assert dna.decode(dna.encode(recs[1]), recs[1].meta) == "ggggTTTT"
    assert recs[0].meta["mask"].tolist() == [c.islower() for c in "ACGTNacgtnRYkmAc"]


def test_dna_counts_and_sequences_match_biopython(shared_data):
    dna = get_adapter("dna")
    for path in sorted(p for p in (shared_data / "dna").iterdir() if p.name.endswith((".fasta", ".fna.gz"))):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:
            expected = {r.id: str(r.seq) for r in SeqIO.parse(f, "fasta")}
        got = {r.id: r for r in dna.read_records([path])}
        assert {k: len(r) for k, r in got.items()} == {k: len(s) for k, s in expected.items()}, path.name
        for rid, seq in expected.items():  # the round trip is the identity on every real record
            assert dna.decode(dna.encode(got[rid]), got[rid].meta) == seq


def test_reverse_complement(shared_data):
    tokens, _ = encode_ascii("AACGTNG")
    assert decode_tokens(reverse_complement(tokens)) == "CNACGTT"
    rec = next(get_adapter("dna").read_records([shared_data / "dna" / "shigella_sonnei_53G_plasmids.fasta"]))
    assert np.array_equal(reverse_complement(reverse_complement(rec.data)), rec.data)
    t = torch.from_numpy(rec.data.astype(np.int64))
    assert torch.equal(reverse_complement(reverse_complement(t)), t)
    assert torch.equal(reverse_complement(t), torch.from_numpy(reverse_complement(rec.data).astype(np.int64)))
    bio = str(SeqIO.read(_first_record(shared_data), "fasta").seq.reverse_complement())
    assert decode_tokens(reverse_complement(rec.data)) == bio


def _first_record(shared_data):
    import io
    text = (shared_data / "dna" / "shigella_sonnei_53G_plasmids.fasta").read_text()
    return io.StringIO(">" + text.split(">")[1])


def test_soft_mask_policy_downweights_lowercase(tmp_path):
    path = write_fasta(tmp_path / "m.fa", ">r\nACGTacgtAC\n")
    rec = next(get_adapter("dna").read_records([path]))
    assert (get_adapter("dna").example_arrays(rec)["weights"] == 1).all()
    w = get_adapter("dna", soft_mask="downweight", soft_mask_weight=0.1).example_arrays(rec)["weights"]
    assert np.allclose(w, [1, 1, 1, 1, .1, .1, .1, .1, 1, 1])


def test_bgzip_without_index_gets_one(tmp_path, shared_data, monkeypatch):
    plain = shutil.copy(shared_data / "dna" / "shigella_sonnei_53G_plasmids.fasta", tmp_path / "s.fa")
    pysam.tabix_compress(str(plain), str(tmp_path / "s.fa.gz"))
    dna = get_adapter("dna")
    rec = dna.fetch(tmp_path / "s.fa.gz", "NC_016833.1", 100, 160)
    assert (tmp_path / "s.fa.gz.fai").exists() and (tmp_path / "s.fa.gz.gzi").exists()
    whole = next(dna.read_records([plain]))
    assert np.array_equal(rec.data, whole.data[100:160])
    # A read-only folder (../shared/data): the index goes to the cache directory instead.
    monkeypatch.setenv("HNET_SEQ_CACHE", str(tmp_path / "cache"))
    kleb = shared_data / "dna" / "klebsiella_MGH78578.fna.gz"
    lengths = dna.contig_lengths(kleb)
    assert lengths["CP000647.1"] == 5315120 and len(lengths) == 6
    assert dna.decode(dna.fetch(kleb, "CP000648.1", 0, 12).data) == "ATGGATTTTGAA"


def test_plain_gzip_is_streamed_with_a_bgzip_hint(tmp_path):
    path = tmp_path / "p.fa.gz"
    path.write_bytes(gzip.compress(b">a\nACGTACGT\n"))
    with pytest.warns(UserWarning, match="bgzip"):
        recs = list(get_adapter("dna").read_records([path]))
    assert len(recs) == 1 and len(recs[0]) == 8
    with pytest.raises(UserError, match="bgzip") as err:
        get_adapter("dna").fetch(path, "a", 0, 4)
    one_line_naming(err, "p.fa.gz")


def test_bed_regions_with_contig_aliases(tmp_path):
    fa = write_fasta(tmp_path / "g.fa", ">1\nACGTACGTAC\n>MT\nGGGGCCCCAA\n")
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\nchr1\t2\t6\tname\nchrM\t0\t4\n")
    recs = list(get_adapter("dna").read_regions(fa, bed))
    # looked up through aliases, kept as the BED names them; the BED name is the record id
    assert [(r.id, r.meta["contig"], r.meta["ref_contig"], get_adapter("dna").decode(r.data)) for r in recs] == [
        ("name", "chr1", "1", "GTAC"), ("chrM:1-4", "chrM", "MT", "GGGG")]


@pytest.mark.parametrize("case", ["no_header", "empty_record", "only_n_region", "bed_past_end",
                                  "bed_missing_contig", "fetch_missing_contig", "bad_character"])
def test_bad_dna_inputs_raise_one_line_user_errors(tmp_path, case):
    dna = get_adapter("dna")
    fa = write_fasta(tmp_path / "g.fa", ">chr1\nACGTACGTAC\n>allN\nNNNNNNNN\n")
    bed = tmp_path / "r.bed"
    with pytest.raises(UserError) as err:
        if case == "no_header":
            list(dna.read_records([write_fasta(tmp_path / "nohdr.fa", "ACGT\nACGT\n")]))
        elif case == "empty_record":
            list(dna.read_records([write_fasta(tmp_path / "empty.fa", ">a\n>b\nACGT\n")]))
        elif case == "only_n_region":
            dna.fetch(fa, "allN")
        elif case == "bed_past_end":
            bed.write_text("1\t5\t11\n")
            list(dna.read_regions(fa, bed))
        elif case == "bed_missing_contig":
            bed.write_text("chr1\t0\t5\nchr2\t0\t5\n")
            list(dna.read_regions(fa, bed))
        elif case == "fetch_missing_contig":
            dna.fetch(fa, "chrX", 0, 5)
        else:
            list(dna.read_records([write_fasta(tmp_path / "bad.fa", ">a\nAC-GT\n")]))
    name = {"no_header": "nohdr.fa", "empty_record": "empty.fa", "bad_character": "bad.fa"}.get(case, "g.fa")
    one_line_naming(err, "r.bed" if case.startswith("bed") else name)
    if case == "bed_past_end":
        assert "r.bed:1" in str(err.value) and "length 10" in str(err.value)
    if case == "empty_record":
        assert "'a'" in str(err.value)


# ---- bytes ----------------------------------------------------------------------------------------
def test_bytes_round_trip_including_invalid_utf8(tmp_path):
    raw = "héllo wörld ✓ 漢字".encode() + b"\xff\xfe\xc3\x28\x80 \xfe\xff end"
    (tmp_path / "x.txt").write_bytes(raw)
    ad = get_adapter("bytes")
    rec = next(ad.read_records([tmp_path / "x.txt"]))
    tokens = ad.encode(rec)
    assert tokens[0] == 254 and len(tokens) == len(raw) + 1  # official ByteTokenizer: BOS first
    assert ad.decode(tokens) == raw
    eos = get_adapter("bytes", add_eos=True)
    assert eos.encode(rec)[-1] == 255 and eos.decode(eos.encode(rec)) == raw


def test_every_udhr_file_with_its_language_tag(shared_data):
    folder = shared_data / "text" / "udhr2"
    files = sorted(folder.glob("*.txt"))
    recs = list(get_adapter("bytes").read_records([folder]))
    assert len(recs) == len(files) == 388
    assert [r.meta["lang"] for r in recs] == [f.stem for f in files]
    assert [len(r) for r in recs] == [f.stat().st_size for f in files]
    assert sum(map(len, recs)) == sum(len(f.read_bytes()) for f in files)
    by_lang = {r.meta["lang"]: r for r in recs}
    assert get_adapter("bytes").decode(get_adapter("bytes").encode(by_lang["eng"])).startswith(b"Universal Declaration")


def test_jsonl_text_and_language_fields(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"content": "bonjour", "language": "fra"}) + "\n\n"
                    + json.dumps({"content": "hello"}) + "\n")
    recs = list(get_adapter("bytes", text_field="content", lang_field="language").read_records([path]))
    assert [(r.data.tobytes(), r.meta["lang"]) for r in recs] == [(b"bonjour", "fra"), (b"hello", None)]
    with pytest.raises(UserError, match="c.jsonl:1: no string field 'text'"):
        list(get_adapter("bytes").read_records([path]))
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{oops\n')
    with pytest.raises(UserError, match="bad.jsonl:2: invalid JSON"):
        list(get_adapter("bytes").read_records([tmp_path / "bad.jsonl"]))


# ---- audio ----------------------------------------------------------------------------------------
def speech_files(shared_data):
    return sorted((shared_data / "audio").rglob("*.wav"))


def test_every_speech_file_loads_at_the_configured_rate(shared_data):
    files = speech_files(shared_data)
    audio = get_adapter("audio", sample_rate=16000)
    recs = list(audio.read_records([shared_data / "audio"]))
    assert [r.id for r in recs] == [str(f) for f in files] and len(recs) == 24
    rates = set()
    for f, r in zip(files, recs):
        info = sf.info(str(f))
        rates.add((info.samplerate, info.subtype))
        assert len(r) == math.ceil(info.frames * 16000 / info.samplerate), f.name  # samples counted
        assert r.data.dtype == np.float32 and r.data.ndim == 1 and r.meta["orig_rate"] == info.samplerate
    assert {(8000, "PCM_16"), (8000, "ULAW"), (16000, "PCM_16"), (48000, "PCM_16")} <= rates


def test_stereo_flac_is_mixed_to_mono_and_resampled(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], 1) * 0.5
    sf.write(tmp_path / "s.flac", stereo, 44100)
    rec = next(get_adapter("audio", sample_rate=8000).read_records([tmp_path / "s.flac"]))
    assert len(rec) == 8000 and rec.meta["channels"] == 2
    assert abs(np.abs(rec.data).max() - 0.25) < 0.01  # the mean of the two channels


def test_raw_frames_reconstruct_the_waveform(shared_data, tmp_path, report):
    audio = get_adapter("audio", sample_rate=8000, frame_size=80)
    path = shared_data / "audio" / "codec2" / "hts1a.wav"
    rec = next(audio.read_records([path]))
    frames = audio.encode(rec)
    assert frames.shape == (math.ceil(len(rec) / 80), 80)
    assert abs(float(frames.mean())) < 0.05 and abs(float(frames.std()) - 1) < 0.05  # normalised
    wave = audio.decode(frames, rec.meta)
    err = float(np.abs(wave - rec.data).max())
    report("raw frames max abs reconstruction error (float)", f"{err:.2e}")
    assert err < 1e-6
    from hnet_seq.modalities.audio import write_wav
    write_wav(tmp_path / "back.wav", wave, 8000)
    back, _ = sf.read(tmp_path / "back.wav", dtype="int16")
    orig, _ = sf.read(path, dtype="int16")
    report("raw frames max abs error after 16-bit WAV write", f"{int(np.abs(back.astype(int) - orig).max())} LSB")
    assert np.array_equal(back, orig)  # exact up to 16-bit quantisation


def test_logmel_frames_decode_approximately(shared_data, report):
    audio = get_adapter("audio", sample_rate=8000, features="logmel", n_mels=40)
    rec = next(audio.read_records([shared_data / "audio" / "codec2" / "forig.wav"]))
    frames = audio.encode(rec)
    assert frames.shape[1] == 40 and "norm" in rec.meta
    wave = audio.decode(frames, rec.meta)
    assert wave.shape == rec.data.shape
    again = get_adapter("audio", sample_rate=8000, features="logmel", n_mels=40)._features(wave.astype(np.float32))
    err = float(np.abs(again - audio._features(rec.data)).mean())
    report("log-mel -> Griffin-Lim -> log-mel mean abs error (nats)", f"{err:.3f}")
    assert err < 1.0


def test_mixture_heads_are_proper_likelihoods():
    torch.manual_seed(0)
    params = torch.randn(3, 4)
    for classes, step in ((256, 2 / 255), (65536, 1 / 32768)):
        codes = torch.arange(classes)
        mass = torch.exp(-dmol_nll(params.expand(classes, 3, 4), codes, classes, step)).sum()
        assert abs(float(mass) - 1) < 1e-3
    audio = get_adapter("audio", frame_size=16, mixtures=3)
    head = audio.make_head(32)(audio.make_embedding(32)(torch.randn(5, 16)))
    nll = audio.loss(head, torch.randint(0, 65536, (5, 16))).detach()
    assert nll.shape == (5,) and torch.isfinite(nll).all()
    assert audio.bits_per_unit(nll, 5 * 16) == pytest.approx(float(nll.sum()) / (80 * math.log(2)))
    mel = get_adapter("audio", features="logmel", n_mels=8, mixtures=2)
    assert mel.loss(mel.make_head(32)(torch.randn(5, 32)), torch.randn(5, 8)).shape == (5,)


@pytest.mark.parametrize("case", ["garbage", "zero_bytes", "no_samples"])
def test_bad_audio_raises_one_line_user_error(tmp_path, case):
    path = tmp_path / f"{case}.wav"
    if case == "garbage":
        path.write_bytes(b"RIFF not really a wave file" * 10)
    elif case == "zero_bytes":
        path.write_bytes(b"")
    else:
        sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(UserError) as err:
        list(get_adapter("audio").read_records([path]))
    one_line_naming(err, path.name)


def test_record_dataclass():
    r = Record("x", np.zeros(3, np.uint8))
    assert len(r) == 3 and r.meta == {}


def test_text_forms_are_adapter_capabilities():
    """Typed sequences and prompts go through the adapter; modalities without a text form refuse."""
    from hnet_seq.errors import UserError
    from hnet_seq.modalities import get_adapter

    dna, text, audio = get_adapter("dna"), get_adapter("bytes"), get_adapter("audio")
    assert dna.text_record("AC GT\nn", "s").data.tolist() == [0, 1, 2, 3, 4]
    assert dna.prompt_tokens("ACG").tolist() == [0, 1, 2] and dna.text_of(np.array([3, 2, 4])) == "TGN"
    assert text.prompt_tokens("hé").tolist() == [254, 104, 195, 169]  # BOS + UTF-8, no EOS
    assert text.text_of(text.prompt_tokens("hé")) == "hé" and text.eos_token == 255 and dna.eos_token is None
    assert (dna.double_stranded, dna.genomic, text.double_stranded, text.genomic) == (True, True, False, False)
    with pytest.raises(UserError, match="--sequence: audio input must come from files"):
        audio.text_record("abc", where="--sequence")
    with pytest.raises(UserError, match="at least one base"):
        dna.prompt_tokens(" \n")


def test_no_code_outside_the_adapters_branches_on_a_modality_name():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"""\.name\s*[!=]=\s*["'](dna|bytes|audio)["']""")
    hits = [f"{p.relative_to(root)}:{i}" for folder in ("hnet_seq", "cli") for p in sorted((root / folder).rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
