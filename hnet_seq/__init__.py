"""hnet-seq: H-Nets (dynamic chunking) for DNA, UTF-8 bytes and audio."""
from .config import ConfigError, HNetConfig, load_config
from .errors import UserError
from .model import HNetLM, ModelOutput
from .nn.hnet import HNet
from .nn.packing import Packing, pack, unpack

__version__ = "0.1.0"
__all__ = ["ConfigError", "HNet", "HNetConfig", "HNetLM", "ModelOutput", "Packing", "UserError",
           "load_config", "pack", "unpack"]
