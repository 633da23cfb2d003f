"""The audio adapter on the speech files in ../shared/data: rates, mono mixing, raw and log-mel
frames, the mixture heads' likelihoods, bad files."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import one_line_naming

from hnet_seq.errors import UserError
from hnet_seq.modalities import get_adapter
from hnet_seq.modalities.mixtures import dmol_nll


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
