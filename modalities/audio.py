"""Audio: files -> mono waveform at one rate -> frames of continuous vectors.

Reading uses soundfile (WAV/FLAC/OGG; 8/16/48 kHz PCM, G.711 mu-law, ...); channels are
averaged to mono and resampled with ``torchaudio.functional.resample``.  Two framings:

* ``features="raw"``: a frame is ``frame_size`` consecutive samples (frame = hop), so frames
  reshape back to the exact waveform.  The head is a discretized mixture of logistics over the
  16-bit (``quantization="pcm16"``) or mu-law 8-bit (``"mulaw8"``) levels of each sample of the
  next frame (samples of a frame are conditionally independent given the model state): NLL is
  in nats per sample, so ``bits_per_unit`` gives bits per sample.
* ``features="logmel"``: log-mel frames (25 ms window, 10 ms hop); the head is a diagonal
  Gaussian mixture *density* over the next frame, whose bits are not comparable with the
  discrete modalities; decoding goes through Griffin-Lim and is only approximate.

Inputs are normalised per utterance; the stats live in ``meta["norm"]`` so decode inverts them.
"""
from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import nn

from hnet_seq.errors import UserError

from .base import ModalityAdapter, Record, register_adapter
from .mixtures import dmol_nll, gmm_nll

QUANTIZATIONS = {"pcm16": 65536, "mulaw8": 256}


def load_audio(path: str | Path, sample_rate: int) -> tuple[np.ndarray, dict]:
    """Mono float32 samples at ``sample_rate`` and facts about the file; bad files -> UserError."""
    try:
        info = sf.info(str(path))
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise UserError(f"{path}: cannot read audio ({str(e).strip().splitlines()[0]})") from None
    if x.shape[0] == 0:
        raise UserError(f"{path}: empty audio file (0 samples)")
    finite = np.isfinite(x)
    if not finite.all():
        frame, channel = np.argwhere(~finite)[0]
        raise UserError(f"{path}: sample {frame} (channel {channel}) is {x[frame, channel]}; audio must be finite")
    mono = x.mean(1) if x.shape[1] > 1 else x[:, 0]
    if sr != sample_rate:
        mono = AF.resample(torch.from_numpy(mono), sr, sample_rate).numpy()
    return mono, {"source": str(path), "orig_rate": sr, "orig_frames": int(x.shape[0]),
                  "channels": int(x.shape[1]), "subtype": info.subtype, "sample_rate": sample_rate}


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Write a mono waveform in [-1, 1] as 16-bit PCM WAV."""
    # Round to int16 here: libsndfile's own float -> int16 scaling is not the inverse of its reading.
    pcm = np.clip(np.round(np.asarray(waveform, np.float64) * 32768), -32768, 32767).astype(np.int16)
    sf.write(str(path), pcm, sample_rate, subtype="PCM_16")


@register_adapter("audio")
class AudioAdapter(ModalityAdapter):
    input_key = "frames"
    data_key = "samples"
    file_suffixes = (".wav", ".flac", ".ogg", ".oga")
    default_data = "speech"  # 16 s of codec2 test speech, 8 kHz (resources/README.md)

    def __init__(self, sample_rate: int = 16000, features: str = "raw", frame_size: int = 80,
                 quantization: str = "pcm16", mixtures: int = 4, n_mels: int = 80):
        if features not in ("raw", "logmel"):
            raise UserError(f"audio features='{features}': choose 'raw' or 'logmel'")
        if quantization not in QUANTIZATIONS:
            raise UserError(f"audio quantization='{quantization}': choose {', '.join(QUANTIZATIONS)}")
        self.sample_rate, self.features, self.frame_size = sample_rate, features, frame_size
        self.quantization, self.mixtures, self.n_mels = quantization, mixtures, n_mels
        self.num_classes = QUANTIZATIONS[quantization]
        self.step = 1 / 32768 if quantization == "pcm16" else 2 / 255  # level spacing on [-1, 1]
        self.unit_name = "sample" if features == "raw" else "frame"
        self.units_per_position = frame_size if features == "raw" else 1
        self.n_fft = round(0.025 * sample_rate)  # 25 ms window, 10 ms hop
        self.hop = round(0.010 * sample_rate)
        # coordinates are samples (raw) or log-mel frames
        self.units_per_second = sample_rate if features == "raw" else sample_rate / self.hop

    @property
    def frame_dim(self) -> int:
        return self.frame_size if self.features == "raw" else self.n_mels

    # ---- reading ---------------------------------------------------------------------------
    def read_records(self, paths: Iterable[str | Path]) -> Iterator[Record]:
        for path in self.expand_inputs(paths):
            samples, meta = load_audio(path, self.sample_rate)
            meta["num_samples"] = len(samples)
            yield Record(str(path), samples, meta)

    def record_from(self, value, id: str) -> Record:
        """Mono samples (float, in [-1, 1]) already at ``sample_rate``."""
        samples = np.ascontiguousarray(value, np.float32)
        return Record(id, samples, {"sample_rate": self.sample_rate, "num_samples": len(samples)})

    # ---- features --------------------------------------------------------------------------
    @cached_property
    def _mel(self):
        import torchaudio.transforms as T
        return T.MelSpectrogram(self.sample_rate, n_fft=self.n_fft, hop_length=self.hop, n_mels=self.n_mels)

    def _features(self, samples: np.ndarray) -> np.ndarray:
        """Un-normalised frames: raw ``(ceil(N / F), F)`` (zero-padded tail) or log-mel ``(N', M)``."""
        if self.features == "raw":
            n = math.ceil(len(samples) / self.frame_size) * self.frame_size
            return np.pad(samples, (0, n - len(samples))).reshape(-1, self.frame_size)
        with torch.no_grad():
            mel = self._mel(torch.from_numpy(np.ascontiguousarray(samples)))
        return torch.log(mel.clamp(min=1e-10)).T.numpy()

    def _norm(self, record: Record, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Computed once per utterance and kept in meta, so decode (and shards) can invert it.
        if "norm" not in record.meta:
            if self.features == "raw":
                mean, std = [float(record.data.mean())], [float(record.data.std())]
            else:
                mean, std = feats.mean(0).tolist(), feats.std(0).tolist()
            record.meta["norm"] = {"mean": mean, "std": [max(s, 1e-5) for s in std]}
        norm = record.meta["norm"]
        return np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)

    def encode(self, record: Record) -> torch.Tensor:
        """Normalised frames ``(N, F)`` float32 (``F`` = frame_size, or n_mels)."""
        feats = self._features(record.data)
        mean, std = self._norm(record, feats)
        return torch.from_numpy(((feats - mean) / std).astype(np.float32))

    def decode(self, encoded, meta: dict | None = None) -> np.ndarray:
        """Frames -> waveform ``(num_samples,)`` float32: exact for raw, Griffin-Lim for log-mel."""
        frames = np.asarray(encoded.detach().cpu() if isinstance(encoded, torch.Tensor) else encoded, np.float32)
        meta = meta or {}
        if "norm" in meta:
            frames = frames * np.asarray(meta["norm"]["std"], np.float32) + np.asarray(meta["norm"]["mean"], np.float32)
        n = meta.get("num_samples")
        if self.features == "raw":
            return frames.reshape(-1)[:n]
        import torchaudio.transforms as T
        power = torch.from_numpy(np.exp(frames).T.copy())  # (M, N')
        # Least-squares inverse of the mel filterbank (pseudo-inverse: fast, tolerates empty filters).
        spec = (torch.linalg.pinv(self._mel.mel_scale.fb.T) @ power).clamp(min=0)
        length = n or (frames.shape[0] - 1) * self.hop
        return T.GriffinLim(self.n_fft, n_iter=32, hop_length=self.hop, power=2.0, length=length)(spec).numpy()

    def quantize(self, samples: np.ndarray) -> np.ndarray:
        """Waveform in [-1, 1] -> integer levels ``0 .. C-1`` (16-bit PCM or mu-law)."""
        if self.quantization == "pcm16":
            return (np.clip(np.round(samples * 32768), -32768, 32767) + 32768).astype(np.int32)
        return AF.mu_law_encoding(torch.from_numpy(samples), self.num_classes).numpy().astype(np.int32)

    def dequantize(self, codes) -> np.ndarray:
        codes = torch.as_tensor(codes)
        if self.quantization == "pcm16":
            return ((codes.float() - 32768) / 32768).numpy()
        return AF.mu_law_decoding(codes, self.num_classes).numpy()

    def example_arrays(self, record: Record) -> dict[str, np.ndarray]:
        """Raw: inputs are normalised frames, targets the quantised samples ``(N, F)``; the partial
        last frame is dropped so every scored sample is real.  Log-mel: targets = inputs."""
        frames = self.encode(record).numpy()
        if self.features == "raw":
            n = len(record.data) // self.frame_size
            frames = frames[:n]
            targets = self.quantize(record.data[: n * self.frame_size]).reshape(n, self.frame_size)
        else:
            targets = frames
        return {"inputs": frames, "targets": targets, "weights": np.ones(len(frames), np.float32)}

    # ---- model parts -----------------------------------------------------------------------
    def make_embedding(self, d_model: int) -> nn.Module:
        """Learned linear projection frame ``(T, F)`` -> ``(T, d_model)``."""
        return nn.Linear(self.frame_dim, d_model)

    def make_head(self, d_model: int) -> nn.Module:
        """Raw: ``(T, F * 3 * K)`` logistic-mixture params; log-mel: ``(T, K * (1 + 2M))``."""
        k = self.mixtures
        out = self.frame_size * 3 * k if self.features == "raw" else k * (1 + 2 * self.n_mels)
        return nn.Linear(d_model, out)

    def loss(self, head_out, targets, weights=None):
        """Raw: nats per frame (sum over its samples); log-mel: density nats per frame."""
        if self.features == "raw":
            params = head_out.view(*head_out.shape[:-1], self.frame_size, 3, self.mixtures)
            nll = dmol_nll(params, targets, self.num_classes, self.step).sum(-1)
        else:
            nll = gmm_nll(head_out, targets, self.mixtures)
        return nll if weights is None else nll * weights
