"""Sampling with the incremental decoding cache (``HNetLM.new_state`` / ``HNetLM.step``).

The prompt is fed one position at a time through :meth:`HNetLM.step` (the recurrent state of
every Mamba layer, the KV cache of every attention layer and the routing/dechunk state of every
stage), then each new token is sampled from the last logits and fed back.  Rows of a batch of
samples that reach EOS stop being stepped.

* DNA: the prompt is a sequence (``ACGT...``, N and IUPAC codes read as N); samples are over
  A, C, G, T, N.
* bytes: the prompt is UTF-8 text; like the official byte models, ``BOS = 254`` is prepended,
  and sampling stops at ``EOS = 255``.  Works with official ``.pt`` checkpoints + JSON config.
* audio (raw features): :func:`continue_audio` continues a WAV file frame by frame, sampling
  each frame's samples from the mixture-of-logistics head.

Every :class:`Generation` keeps the model's (untempered) log-probability of each generated
token, so ``sum(logprobs)`` equals the full-forward log-likelihood of the generated tokens
given the prompt (which the tests check).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hnet_seq.errors import UserError

from .model import InferenceModel, load


@dataclass
class Generation:
    prompt_tokens: np.ndarray  # model tokens of the prompt (with BOS for bytes)
    tokens: np.ndarray  # generated tokens
    logprobs: np.ndarray  # model log p(token | everything before), nats, temperature 1
    text: str  # the generated continuation, decoded (bytes: UTF-8 with replacement)
    stop: str  # "eos" or "length"

    @property
    def log_likelihood(self) -> float:
        return float(self.logprobs.astype(np.float64).sum())

    @property
    def full_tokens(self) -> np.ndarray:
        return np.concatenate([self.prompt_tokens, self.tokens])


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Logits ``(b, V)`` with everything outside the top-k / nucleus (top-p) set to -inf."""
    if top_k and top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass of the tokens before it already reaches top_p (keeps >= 1)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                generator: torch.Generator) -> torch.Tensor:
    """Token ids ``(b,)`` drawn from ``logits (b, V)``; temperature 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


def encode_prompt(im: InferenceModel, prompt: str | bytes) -> np.ndarray:
    """Model tokens of a text prompt (:meth:`ModalityAdapter.prompt_tokens`); errors name ``prompt``."""
    try:
        return im.adapter.prompt_tokens(prompt).astype(np.int64)
    except UserError as e:
        raise UserError(str(e), params=("prompt",)) from None


def _check_sampling(max_new_tokens: int, top_k: int, top_p: float, num_samples: int) -> None:
    """Refuse sampling settings that cannot work (before the model is loaded)."""
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens={max_new_tokens}: must be at least 1", params=("max_new_tokens",))
    if not 0 < top_p <= 1:
        raise UserError(f"top_p={top_p}: must be in (0, 1]", params=("top_p",))
    if top_k < 0:
        raise UserError(f"top_k={top_k}: must be >= 0 (0 = off)", params=("top_k",))
    if num_samples < 1:
        raise UserError(f"num_samples={num_samples}: must be at least 1", params=("num_samples",))


@torch.no_grad()
def generate(checkpoint: str | Path | InferenceModel, prompt: str | bytes = "", *, max_new_tokens: int = 256,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0, num_samples: int = 1,
             config: str | Path | None = None, modality: str | None = None, device: str | None = None,
             stop_at_eos: bool = True, precision: str = "float32", progress: bool = False) -> list[Generation]:
    """Sample ``num_samples`` continuations of ``prompt`` (in parallel rows of one decoding state)."""
    _check_sampling(max_new_tokens, top_k, top_p, num_samples)
    im = load(checkpoint, config, device=device, modality=modality, precision=precision)
    model, dev = im.model, im.device
    vocab = getattr(im.adapter, "vocab_size", None)
    if vocab is None:
        raise UserError(f"generate: {im.adapter.name} has no token vocabulary; use continue_audio")
    prompt_tokens = encode_prompt(im, prompt)
    eos = im.adapter.eos_token if stop_at_eos else None
    b = num_samples
    generator = torch.Generator().manual_seed(seed)
    state = model.new_state(b, len(prompt_tokens) + max_new_tokens, device=dev)
    rows = torch.arange(b, device=dev)
    logits = None
    with im.autocast():
        for t in prompt_tokens:
            logits, _ = model.step(torch.full((b,), int(t), device=dev, dtype=torch.long), state, rows)
    out = torch.zeros(b, max_new_tokens, dtype=torch.long)
    lps = torch.zeros(b, max_new_tokens, dtype=torch.float64)
    length = torch.zeros(b, dtype=torch.long)
    active = torch.ones(b, dtype=torch.bool)
    stop = ["length"] * b
    from hnet_seq.progress import progress_bar

    with progress_bar(progress, "generate", total=max_new_tokens, unit="tokens") as bar:
        for step in range(max_new_tokens):
            act = active.nonzero().squeeze(-1)
            logp = logits[:, :vocab].float().log_softmax(-1)
            nxt = sample_next(logits[:, :vocab], temperature, top_k, top_p, generator)
            out[act, step] = nxt.cpu()
            lps[act, step] = logp.gather(-1, nxt[:, None]).squeeze(-1).double().cpu()
            length[act] += 1
            if eos is not None:
                hit = (nxt.cpu() == eos)
                for r in act[hit].tolist():
                    stop[r] = "eos"
                active[act[hit]] = False
                keep = ~hit
                nxt = nxt[keep.to(nxt.device)]
                act = act[keep]
            bar.advance(1)
            if step == max_new_tokens - 1 or not len(act):
                break
            with im.autocast():
                logits, _ = model.step(nxt, state, act.to(dev))
    results = []
    for r in range(b):
        toks = out[r, : length[r]].numpy()
        results.append(Generation(prompt_tokens, toks, lps[r, : length[r]].numpy(), im.adapter.text_of(toks), stop[r]))
    return results


@torch.no_grad()
def sequence_logprobs(checkpoint: str | Path | InferenceModel, tokens: np.ndarray, **load_args) -> np.ndarray:
    """Full-forward ``log p(x_t | x_<t)`` for ``t >= 1`` of one token sequence (nats)."""
    from hnet_seq.nn.packing import Packing

    im = load(checkpoint, **load_args)
    x = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=im.device)
    with im.autocast():
        logits = im.model(x, Packing.from_lengths([len(x)], device=im.device)).logits
    vocab = im.adapter.vocab_size
    logp = logits[:-1, :vocab].float().log_softmax(-1)
    return logp.gather(-1, x[1:, None]).squeeze(-1).double().cpu().numpy()


@dataclass
class AudioContinuation:
    """What :func:`continue_audio` wrote, and the model's log-likelihood of both parts (nats)."""

    path: Path
    prompt_seconds: float  # scored prompt audio (every frame after the first)
    prompt_log_likelihood: float
    new_seconds: float
    new_log_likelihood: float  # of the sampled continuation, under the model that sampled it

    @property
    def prompt_nats_per_second(self) -> float:
        return self.prompt_log_likelihood / max(self.prompt_seconds, 1e-12)

    @property
    def new_nats_per_second(self) -> float:
        return self.new_log_likelihood / max(self.new_seconds, 1e-12)


@torch.no_grad()
def continue_audio(checkpoint: str | Path | InferenceModel, prompt_wav: str | Path, out_wav: str | Path, *,
                   seconds: float = 1.0, seed: int = 0, config: str | Path | None = None,
                   device: str | None = None) -> AudioContinuation:
    """Continue a WAV file by ``seconds`` (raw-feature audio models); writes prompt + continuation."""
    from .outputs import AtomicFile

    im = load(checkpoint, config, device=device, precision="float32")
    adapter, model, dev = im.adapter, im.model, im.device
    if adapter.sample_rate is None:
        raise UserError(f"prompt_wav needs an audio model; this checkpoint reads {adapter.name}",
                        params=("prompt_wav",))
    if adapter.features != "raw":
        raise UserError("audio continuation needs an audio model with features=raw "
                        "(log-mel frames cannot be sampled back to a waveform exactly)")
    from hnet_seq.modalities.audio import write_wav
    from hnet_seq.modalities.mixtures import dmol_sample

    record = next(iter(adapter.read_records([prompt_wav])))
    F = adapter.frame_size
    n = len(record.data) // F
    if n < 1:
        raise UserError(f"{prompt_wav}: shorter than one frame ({F} samples)")
    frames = adapter.encode(record)[:n].to(dev)
    mean, std = (float(record.meta["norm"][k][0]) for k in ("mean", "std"))
    new_frames = max(1, int(round(seconds * adapter.sample_rate / F)))
    state = model.new_state(1, n + new_frames, device=dev)
    rows = torch.zeros(1, dtype=torch.long, device=dev)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(seed)  # the mixture component draw uses the global generator
    head = None
    targets = torch.from_numpy(adapter.example_arrays(record)["targets"]).long()  # (n, F) codes
    prompt_ll = new_ll = 0.0
    for t in range(n):
        if head is not None:  # the head of frame t-1 predicts frame t
            prompt_ll -= float(adapter.loss(head.float().cpu(), targets[t:t + 1]).sum())
        head, _ = model.step(frames[t:t + 1], state, rows)
    samples = [record.data[: n * F]]
    for i in range(new_frames):
        params = head.float().cpu().view(F, 3, adapter.mixtures)
        codes = dmol_sample(params, adapter.num_classes, adapter.step, generator=generator)
        new_ll -= float(adapter.loss(head.float().cpu(), codes.long()[None]).sum())
        wave = np.asarray(adapter.dequantize(codes), np.float32)
        samples.append(wave)
        if i < new_frames - 1:
            x = torch.from_numpy((wave - mean) / std).to(dev)[None]
            head, _ = model.step(x, state, rows)
    out = AtomicFile(out_wav, keep_suffix=True)
    try:
        write_wav(out.tmp, np.concatenate(samples), adapter.sample_rate)
        path = out.close()
    except BaseException:
        out.abort()
        raise
    rate = adapter.sample_rate
    return AudioContinuation(path, (n - 1) * F / rate, prompt_ll, new_frames * F / rate, new_ll)
