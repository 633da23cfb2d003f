"""One small interface for every kernel: a reference implementation and a fast one per op.

Each op is a :class:`KernelOp`.  Calling it dispatches on the tensors' device and on what is
installed: the fast path runs on CUDA when its dependencies import, the pure-PyTorch
reference everywhere else.  A choice can be forced for all ops or per op with the
environment variable ``HNET_SEQ_KERNELS`` (``reference``, ``fast`` or ``auto``; or
``ssd=reference,attention=fast``) or with :func:`force_backend` (the CLI's ``--kernels``).
"""
from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

BACKENDS = ("auto", "reference", "fast")
_forced: dict[str, str] = {}


def _env_choice(op: str) -> str:
    spec = os.environ.get("HNET_SEQ_KERNELS", "auto").strip()
    choice = "auto"
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.rpartition("=")
        if not name or name == op:
            choice = value
    if choice not in BACKENDS:
        raise ValueError(f"HNET_SEQ_KERNELS: unknown backend {choice!r} (use {', '.join(BACKENDS)})")
    return choice


def check_spec(spec: str, ops: tuple[str, ...]) -> None:
    """Raise ValueError unless ``spec`` (``fast`` or ``ssd=reference,attention=fast``) names
    known backends for ``ops``."""
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.rpartition("=")
        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r} (use {', '.join(BACKENDS)})")
        if name and name not in ops:
            raise ValueError(f"unknown op {name!r} (ops: {', '.join(ops)})")


def requested_backend(op: str) -> str:
    """The backend asked for ``op``: forced in code first, then the environment, else auto."""
    return _forced.get(op) or _forced.get("*") or _env_choice(op)


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
