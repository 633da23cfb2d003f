"""Training: ``hnet-seq train`` as a library.

* :mod:`.schema` — the run config's sections (model, modality, data, objective, optim,
  schedule, train, logging, checkpoint); :mod:`.config` — loading it, validated, with
  ``key=value`` overrides;
* :mod:`.objective` — modality NLL + the ratio (load-balancing) loss per stage;
* :mod:`.optim` — AdamW groups (no decay on norms/biases/1-D), per-stage lr, schedules;
* :mod:`.checkpointing` — step checkpoints with exact resume; :mod:`.parallel` — DDP/FSDP2;
* :mod:`.data` — batches from :mod:`hnet_seq.data`; :mod:`.metrics` — metrics.jsonl and console;
* :mod:`.build` — the model, data and optimizer of a run; :mod:`.evaluation` — held-out bits;
* :mod:`.run_dir` — the run directory; :mod:`.outcome` — the result and the early stops;
* :mod:`.loop` — :func:`train`.
"""
from .config import RunConfig, list_presets, load_run_config, run_config_from_dict

__all__ = ["NonFiniteLoss", "Objective", "RunConfig", "TrainResult", "TrainingInterrupted", "list_presets",
           "load_run_config", "ratio_loss", "ratio_loss_value", "run_config_from_dict", "train"]

# The loop and objective need torch; they load on first access so that reading a config (the
# CLI's help lists the presets) stays light.
_LAZY = {"NonFiniteLoss": ".outcome", "TrainingInterrupted": ".outcome", "TrainResult": ".outcome", "train": ".loop",
         "Objective": ".objective", "ratio_loss": ".objective", "ratio_loss_value": ".objective"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
