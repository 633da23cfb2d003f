"""The kernel registry (CPU): the backend spec from HNET_SEQ_KERNELS and ``set_spec``, forced
backends, and fast ops that are unavailable saying why."""
from __future__ import annotations

import pytest

from hnet_seq import kernels
from hnet_seq.kernels import fast


def test_backend_spec_is_read_once_and_set_spec_replaces_it(monkeypatch):
    from hnet_seq.kernels import registry

    monkeypatch.setattr(registry, "_spec", None)
    monkeypatch.setenv(registry.SPEC_ENV, "reference,attention=auto")
    assert [kernels.requested_backend(op) for op in ("ssd", "attention")] == ["reference", "auto"]
    monkeypatch.setenv(registry.SPEC_ENV, "fast")  # read at the first call only
    assert kernels.requested_backend("ssd") == "reference"
    assert kernels.ssd.backend_for("cpu") == "reference"
    kernels.set_spec("attention=reference,ssd=auto,fast")  # a bare backend overrides what came before
    assert kernels.requested_backend("conv1d") == kernels.requested_backend("attention") == "fast"
    with pytest.raises(RuntimeError, match="fast backend forced but unavailable"):
        kernels.ssd.backend_for("cpu")
    with kernels.force_backend("reference", "ssd"):
        assert kernels.ssd.backend_for("cpu") == "reference"
    for bad, what in (("warp", "unknown backend 'warp'"), ("ssdd=fast", "unknown op 'ssdd'")):
        with pytest.raises(ValueError, match=what):
            kernels.set_spec(bad)
    kernels.set_spec(None)  # back to the variable, read again
    monkeypatch.setenv(registry.SPEC_ENV, "ssd=nope")
    with pytest.raises(ValueError, match="HNET_SEQ_KERNELS: unknown backend 'nope'"):
        kernels.requested_backend("ssd")
    monkeypatch.setattr(registry, "_spec", None)


def test_unavailable_fast_ops_say_why():
    for name in ("ssd_fast", "rmsnorm_fast", "attention_fast"):
        status = fast.availability()[name]
        if status.startswith("unavailable"):
            with pytest.raises(AttributeError, match="unavailable"):
                getattr(fast, name)
            fn, reason = getattr(kernels, name.removesuffix("_fast")).fast_impl()
            assert fn is None and reason
        else:
            assert callable(getattr(fast, name))
