"""Shared bits of the tests (no tests here): a micro run config, a small real FASTA, a tiny checkpoint,
the CLI in-process, a free port for torchrun and the train steps a run has logged."""
from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GENOME = ROOT / "hnet_seq" / "resources" / "shigella_sonnei_53G_plasmids.fa.gz"

MICRO_MODEL = {
    "arch_layout": ["m1", ["T1"], "m1"],
    "d_model": [32, 48],
    "d_intermediate": [0, 96],
    "vocab_size": 8,
    "ssm_cfg": {"chunk_size": 32, "d_conv": 4, "d_state": 8, "expand": 2, "headdim": 16},
    "attn_cfg": {"num_heads": [2, 2], "rotary_emb_dim": [8, 8], "window_size": [-1, -1]},
}


def small_fasta(path: Path, bases: int = 12000) -> Path:
    """The first ``bases`` of the shipped plasmid genome's first record, as a plain FASTA."""
    seq, name = [], None
    with gzip.open(GENOME, "rt") as f:
        for line in f:
            if line.startswith(">"):
                if name is not None:
                    break
                name = line[1:].split()[0]
                continue
            seq.append(line.strip())
            if sum(map(len, seq)) >= bases:
                break
    s = "".join(seq)[:bases]
    path.write_text(f">{name}\n" + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n")
    return path


def micro_config(tmp: Path, steps: int = 8, **sections) -> Path:
    """A run config for a ~30k-parameter model on ``small_fasta``; ``sections`` patch it."""
    fasta = small_fasta(tmp / "small.fa")
    cfg = {
        "model": MICRO_MODEL,
        "modality": {"name": "dna"},
        "data": {"paths": [str(fasta)], "seq_len": 128, "tokens_per_batch": 512, "eval_tokens": 512,
                 "heldout_fraction": 0.1},
        "optim": {"lr": 3e-3},
        "schedule": {"warmup_steps": 2},
        "train": {"steps": steps, "seed": 0, "threads": 1},
        "logging": {"eval_every": 4, "progress": "off"},
        "checkpoint": {"every": 3, "keep": 2},
    }
    for name, patch in sections.items():
        cfg.setdefault(name, {}).update(patch)
    path = tmp / "micro.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "hnet_seq.cli", *args], capture_output=True, text=True, env=env,
                          **kw)


def cli_popen(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "hnet_seq.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def tiny_dna_checkpoint(directory: Path) -> Path:
    """An untrained ``tiny_1stage.json`` DNA model saved as a checkpoint directory (seed 0)."""
    import torch

    from hnet_seq.checkpoint import build_model, save_checkpoint
    from hnet_seq.config import load_config

    torch.manual_seed(0)
    model, _ = build_model(load_config(ROOT / "configs" / "tiny_1stage.json"), "dna")
    model.init_weights()
    save_checkpoint(directory, model, "dna", {})
    return directory


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    """Poll ``predicate()`` until true; fail if ``proc`` exits first or ``timeout`` s pass."""
    t0 = time.time()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"exited before it got there ({proc.returncode}): {proc.stderr.read()}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.02)


def invoke(*args):
    """``hnet-seq ARGS`` in this process (typer's CliRunner); arguments may be paths."""
    from typer.testing import CliRunner

    from hnet_seq.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def free_port() -> int:
    """A TCP port nobody listens on (for ``torchrun --master_port``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_steps(run: Path) -> list[int]:
    """The steps of the train records in ``run``'s metrics.jsonl (none before it exists)."""
    from hnet_seq.train.metrics import read_metrics

    return [r["step"] for r in read_metrics(run) if r.get("kind") == "train"] if (run / "metrics.jsonl").exists() else []
