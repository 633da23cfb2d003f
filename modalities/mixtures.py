"""Mixture likelihoods for continuous-valued outputs (audio).

* :func:`dmol_nll` -- discretized mixture of logistics (PixelCNN++ / WaveNet-style) over the
  ``C`` levels of a quantised sample (16-bit PCM: C = 65536; mu-law: C = 256).  It is a proper
  probability mass over the levels (the edge levels take the tails), so its NLL in nats per
  sample converts to bits per sample, comparable in kind to bits per base or per byte.
* :func:`gmm_nll` -- diagonal Gaussian mixture density over real feature vectors (log-mel).
  This is a *density*: its "bits" depend on the feature scale and are not comparable to the
  discrete bits of the other modalities.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def dmol_nll(params: torch.Tensor, codes: torch.Tensor, num_classes: int, step: float,
             low: float = -1.0) -> torch.Tensor:
    """Nats of integer ``codes`` (...,) under mixtures ``params`` (..., 3, K).

    ``params[..., 0, :]`` are mixture logits, ``[..., 1, :]`` locations and ``[..., 2, :]`` log
    scales of K logistics on the real line; level ``c`` covers ``low + c * step +/- step / 2``,
    except level 0 (down to -inf) and level C-1 (up to +inf), so the masses sum to one.
    """
    logit_pi, mu, log_s = params.float().unbind(-2)
    log_s = log_s.clamp(min=math.log(step) - 2.0)  # sharper than a level is meaningless
    x = (low + codes.float() * step).unsqueeze(-1)
    inv_s = torch.exp(-log_s)
    plus, minus = inv_s * (x - mu + step / 2), inv_s * (x - mu - step / 2)
    # log(sigmoid(plus) - sigmoid(minus)), written so that it neither cancels nor overflows.
    log_mass = minus + torch.log(torch.expm1(plus - minus)) - F.softplus(plus) - F.softplus(minus)
    log_cdf_plus = plus - F.softplus(plus)  # level 0: P(X < its upper edge)
    log_sf_minus = -F.softplus(minus)  # level C-1: P(X > its lower edge)
    c = codes.unsqueeze(-1)
    log_p = torch.where(c == 0, log_cdf_plus, torch.where(c == num_classes - 1, log_sf_minus, log_mass))
    return -torch.logsumexp(log_p + F.log_softmax(logit_pi, -1), -1)


def dmol_sample(params: torch.Tensor, num_classes: int, step: float, low: float = -1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw integer codes (...,) from mixtures ``params`` (..., 3, K)."""
    logit_pi, mu, log_s = params.float().unbind(-2)
    k = torch.distributions.Categorical(logits=logit_pi).sample()
    pick = lambda t: t.gather(-1, k.unsqueeze(-1)).squeeze(-1)  # noqa: E731
    u = torch.rand(k.shape, generator=generator, device=params.device).clamp(1e-5, 1 - 1e-5)
    x = pick(mu) + torch.exp(pick(log_s)) * (torch.log(u) - torch.log1p(-u))
    return torch.round((x - low) / step).clamp(0, num_classes - 1).long()


def gmm_nll(params: torch.Tensor, x: torch.Tensor, num_mixtures: int) -> torch.Tensor:
    """Nats (density) of feature vectors ``x`` (T, M) under ``params`` (T, K * (1 + 2M))."""
    T, M = x.shape
    params = params.float()
    logit_pi = params[:, :num_mixtures]
    mu, log_sigma = params[:, num_mixtures:].view(T, 2, num_mixtures, M).unbind(1)
    log_sigma = log_sigma.clamp(min=-7.0)
    z = (x.float().unsqueeze(1) - mu) * torch.exp(-log_sigma)
    log_n = (-0.5 * z * z - log_sigma).sum(-1) - 0.5 * M * math.log(2 * math.pi)
    return -torch.logsumexp(F.log_softmax(logit_pi, -1) + log_n, -1)
