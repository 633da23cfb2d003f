"""hnet-seq: H-Nets (dynamic chunking) for DNA, UTF-8 bytes and audio."""
from .config import ConfigError, HNetConfig, load_config
from .errors import UserError

__version__ = "0.1.0"
__all__ = ["ConfigError", "HNet", "HNetConfig", "HNetLM", "ModelOutput", "Packing", "UserError",
           "embed", "layer_names", "load_config", "pack", "score", "unpack"]

# The torch-backed names load on first access, so that `hnet-seq --help` and other light
# imports of the package do not pay for importing torch (about 2 s).
_LAZY = {"HNetLM": ".model", "ModelOutput": ".model", "HNet": ".nn.hnet", "Packing": ".nn.packing",
         "pack": ".nn.packing", "unpack": ".nn.packing",
         # the in-memory notebook API: hnet_seq.embed(model, ["ACGT..."]) and friends
         "embed": ".inference.api", "score": ".inference.api", "layer_names": ".inference.api"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
