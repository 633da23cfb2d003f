"""One small interface for every kernel: a reference implementation and a fast one per op.

Each op is a :class:`KernelOp`; :meth:`KernelOp.backend_for` is the one place that decides
which implementation a call runs, in this order:

1. the requested backend (``auto``, ``reference`` or ``fast``): an enclosing
   :func:`force_backend` block, else the spec -- ``fast`` or ``ssd=reference,attention=fast``,
   parsed once, from :func:`set_spec` (the CLI's ``--kernels``) or, at the first call, from
   ``$HNET_SEQ_KERNELS`` (a later change of the variable is not seen);
2. whether the fast implementation imports (tried once, lazily: a missing mamba-ssm or
   flash-attn never breaks ``import hnet_seq``; which library the fast attention wraps,
   flash-attn or PyTorch's ``varlen_attn``, is settled by that import);
3. the device: the fast path runs on CUDA only; ``auto`` also requires ``auto_fast``.

Inside a fast implementation, inputs it has no kernel for (fp32 attention) take the reference
(see :mod:`hnet_seq.kernels.fast`); that is a property of the input, not a backend choice.
"""
from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

BACKENDS = ("auto", "reference", "fast")
SPEC_ENV = "HNET_SEQ_KERNELS"
_ops: set[str] = set()  # names of every KernelOp made (a spec may name only these)
_spec: dict[str, str] | None = None  # the parsed spec ({op or "*": backend}); None until first use
_forced: dict[str, str] = {}  # force_backend blocks, innermost last written


def parse_spec(spec: str) -> dict[str, str]:
    """``{op or "*": backend}`` of ``fast`` or ``ssd=reference,attention=fast`` (later parts win);
    ``ValueError`` on an unknown backend or op."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.rpartition("=")
        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r} (use {', '.join(BACKENDS)})")
        if name and name not in _ops:
            raise ValueError(f"unknown op {name!r} (ops: {', '.join(sorted(_ops))})")
        if not name:  # a bare backend applies to every op named before it too
            out.clear()
        out[name or "*"] = value
    return out


def set_spec(spec: str | None) -> None:
    """Use ``spec`` (see :func:`parse_spec`) from now on, instead of ``$HNET_SEQ_KERNELS``
    (``None``: read the variable again at the next call)."""
    global _spec
    _spec = None if spec is None else parse_spec(spec)


def requested_backend(op: str) -> str:
    """The backend asked for ``op``: a :func:`force_backend` block, else the spec, else auto."""
    global _spec
    if _spec is None:
        try:
            _spec = parse_spec(os.environ.get(SPEC_ENV, "auto"))
        except ValueError as e:
            raise ValueError(f"{SPEC_ENV}: {e}") from None
    return _forced.get(op) or _forced.get("*") or _spec.get(op) or _spec.get("*", "auto")


@contextmanager
def force_backend(choice: str, op: str = "*") -> Iterator[None]:
    """Force ``choice`` for ``op`` (``*``: every op) inside the ``with`` block."""
    if choice not in BACKENDS:
        raise ValueError(f"unknown kernel backend {choice!r} (use {', '.join(BACKENDS)})")
    previous = _forced.get(op)
    _forced[op] = choice
    try:
        yield
    finally:
        if previous is None:
            _forced.pop(op, None)
        else:
            _forced[op] = previous


@dataclass
class KernelOp:
    """An op with a reference and an optional fast implementation.

    ``fast`` is ``"module:function"`` and is imported lazily, so a missing optional
    dependency (mamba-ssm, flash-attn, triton) never breaks ``import hnet_seq``.
    """

    name: str
    reference: Callable
    fast: str | None = None
    description: str = ""
    traceable: bool = False  # the fast version is PyTorch that torch.compile can trace into
    # Whether "auto" picks the fast version on CUDA; False keeps an op opt-in
    # (HNET_SEQ_KERNELS=name=fast) until it has been measured to pay.
    auto_fast: bool = True
    _fast_fn: Callable | None = field(default=None, repr=False)
    _fast_error: str | None = field(default=None, repr=False)

    def __post_init__(self):
        _ops.add(self.name)

    def fast_impl(self) -> tuple[Callable | None, str]:
        """The fast callable (or None) and a short reason when it is unavailable."""
        if self._fast_fn is None and self._fast_error is None:
            if self.fast is None:
                self._fast_error = "no fast implementation"
            else:
                module, _, attr = self.fast.partition(":")
                try:
                    self._fast_fn = getattr(importlib.import_module(module), attr)
                except Exception as e:  # ImportError, or a broken CUDA extension underneath
                    self._fast_error = f"{type(e).__name__}: {e}".splitlines()[0]
        return self._fast_fn, self._fast_error or ""

    def backend_for(self, device: torch.device | str) -> str:
        """``"fast"`` or ``"reference"``: what a call on ``device`` would run."""
        choice = requested_backend(self.name)
        if choice == "reference":
            return "reference"
        fn, reason = self.fast_impl()
        on_cuda = torch.device(device).type == "cuda"
        if choice == "fast":
            if fn is None or not on_cuda:
                raise RuntimeError(f"kernel '{self.name}': fast backend forced but unavailable "
                                   f"({reason or 'needs a CUDA device'})")
            return "fast"
        return "fast" if (fn is not None and on_cuda and self.auto_fast) else "reference"

    def __call__(self, x: torch.Tensor, *args, **kwargs):
        if self.backend_for(x.device) == "fast":
            if torch.compiler.is_compiling() and not self.traceable:
                return _opaque_to_compile(self._fast_fn, x, *args, **kwargs)
            return self._fast_fn(x, *args, **kwargs)
        return self.reference(x, *args, **kwargs)


@torch.compiler.disable
def _opaque_to_compile(fn: Callable, *args, **kwargs):
    """Call ``fn`` outside ``torch.compile``'s graph.

    Dynamo cannot trace the fast kernels' launchers (mamba-ssm's Triton autotuners fail inside
    it), so a compiled model breaks its graph around each fast kernel and compiles what lies
    between them: the routing, chunking and elementwise work.
    """
    return fn(*args, **kwargs)


def describe(op: KernelOp, device: str) -> str:
    """One line for ``hnet-seq info``: which backend ``op`` would use on ``device`` and why."""
    try:
        chosen = op.backend_for(device)
    except RuntimeError as e:
        return f"error: {e}"
    if chosen == "fast":
        return f"fast ({op.fast})"
    if requested_backend(op.name) == "reference":
        return "reference (forced)"
    if torch.device(device).type != "cuda":
        return "reference (no CUDA device)"
    return f"reference ({op.fast_impl()[1]})"
