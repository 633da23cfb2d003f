"""hnet-seq: H-Nets (dynamic chunking) for DNA, UTF-8 bytes and audio."""
from .config import ConfigError, HNetConfig, load_config
from .errors import UserError
from .model import HNetLM, ModelOutput
from .nn.hnet import HNet
from .nn.packing import Packing, pack, unpack

__version__ = "0.1.0"
__all__ = ["ConfigError", "HNet", "HNetConfig", "HNetLM", "ModelOutput", "Packing", "UserError",
           "embed", "layer_names", "load_config", "pack", "score", "unpack"]
_NOTEBOOK_API = ("embed", "score", "layer_names")


def __getattr__(name: str):
    # The in-memory API (hnet_seq.inference.api) is imported on first use: `import hnet_seq`
    # stays light, while `hnet_seq.embed(model, ["ACGT..."])` works in a notebook.
    if name in _NOTEBOOK_API:
        from .inference import api

        return getattr(api, name)
    raise AttributeError(f"module 'hnet_seq' has no attribute {name!r}")
