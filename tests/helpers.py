"""Shared bits of the tests (no tests here): a micro run config, a small real FASTA, tiny random
checkpoints, the CLI in-process, a free port for torchrun, the train steps a run has logged, and the
variant tests' reference, VCF and model (``ck``, ``genome``: fixtures, imported where used), the
kernel tests' error measures, sequence layouts and SSD inputs, and the one-line-error check."""
from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pysam
import pytest
import torch
import yaml

from hnet_seq.checkpoint import build_model, save_checkpoint
from hnet_seq.config import load_config

ROOT = Path(__file__).resolve().parents[1]
GENOME = ROOT / "hnet_seq" / "resources" / "shigella_sonnei_53G_plasmids.fa.gz"
CONFIGS = ROOT / "configs"
WINDOW = 400  # the variant tests' window

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


# ---- tiny checkpoints and the CLI's tables -------------------------------------------------

def randomise_routing(model) -> None:
    # Random routing projections so that boundaries are neither all nor none (as tests/unit/test_core.py).
    for module in model.modules():
        if hasattr(module, "q_proj_layer"):
            torch.nn.init.normal_(module.q_proj_layer.weight, std=0.3)
            torch.nn.init.normal_(module.k_proj_layer.weight, std=0.3)


def make_checkpoint(directory: Path, config: str, modality: str = "dna", options: dict | None = None,
                    seed: int = 0, random_routing: bool = True) -> Path:
    """A tiny randomly initialised model of ``configs/CONFIG`` saved as a checkpoint directory;
    ``random_routing`` (default) also randomises the routers (see :func:`randomise_routing`)."""
    torch.manual_seed(seed)
    model, _ = build_model(load_config(CONFIGS / config), modality, options)
    model.init_weights()
    if random_routing:
        randomise_routing(model)
    save_checkpoint(directory, model, modality, options or {})
    return directory


def chunk_rows(path: Path) -> dict:
    t = pq.read_table(str(path))
    return {k: (t.column(k).to_pylist() if k in ("seq_id", "chrom", "vector") else t.column(k).to_numpy())
            for k in t.column_names}


# ---- the variant tests' reference and VCF --------------------------------------------------

@pytest.fixture(scope="module")
def ck(tmp_path_factory) -> Path:
    """The variant tests' model: tiny 2-stage DNA H-Net, random weights and routing."""
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "dna", "tiny_2stage.json")


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A two-contig reference (chr1, chr2) cut from the real plasmids, soft-masked in places."""
    with pysam.FastxFile(str(GENOME)) as f:
        seqs = [r.sequence for r in f]
    chroms = {"chr1": seqs[0][60000:62500], "chr2": seqs[2][1000:2200]}
    chroms["chr1"] = chroms["chr1"][:1500] + chroms["chr1"][1500:1600].lower() + chroms["chr1"][1600:]
    path = tmp_path_factory.mktemp("ref") / "ref.fa"
    path.write_text("".join(f">{n}\n{s}\n" for n, s in chroms.items()))
    return path, {n: s.upper() for n, s in chroms.items()}


def other(base: str, k: int = 1) -> str:
    return "ACGT"[("ACGT".index(base.upper()) + k) % 4]


def write_vcf(path: Path, genome: dict[str, str]) -> list[tuple]:
    c1, c2 = genome["chr1"], genome["chr2"]
    at = lambda s, pos, n=1: s[pos - 1:pos - 1 + n]  # noqa: E731  (VCF POS is 1-based)
    records = [
        ("chr1", 900, "snv", at(c1, 900), other(at(c1, 900))),
        ("chr1", 1000, "mnv", at(c1, 1000, 3), "".join(other(b, 2) for b in at(c1, 1000, 3))),
        ("chr1", 1100, "ins", at(c1, 1100), at(c1, 1100) + "GATTACA"),
        ("chr1", 1200, "del", at(c1, 1200, 9), at(c1, 1200)),
        ("chr1", 1300, "multi", at(c1, 1300), f"{other(at(c1, 1300))},{other(at(c1, 1300), 2)},{at(c1, 1300)}AC"),
        ("chr1", 1400, "mismatch", other(at(c1, 1400)), "A"),
        ("chrUn", 50, "nocontig", "A", "G"),
        ("chr2", 30, "edge", at(c2, 30), other(at(c2, 30))),
        ("chr1", 1550, "softmask", at(c1, 1550).lower(), other(at(c1, 1550)).lower()),
        ("chr1", 1600, "symbolic", at(c1, 1600), "<DEL>"),
        ("chr1", 1700, "breakend", at(c1, 1700), at(c1, 1700) + "[chr2:100["),
        ("1", 1800, "alias", at(c1, 1800), other(at(c1, 1800))),
        ("chr1", 1900, "star", at(c1, 1900), f"{other(at(c1, 1900))},*"),
    ]
    header = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=2500>", "##contig=<ID=chr2,length=1200>",
              "##contig=<ID=chrUn>", "##contig=<ID=1>", "##INFO=<ID=DP,Number=1,Type=Integer,Description=\"depth\">",
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines = [f"{c}\t{p}\t{i}\t{r}\t{a}\t50\tPASS\tDP={k + 10}" for k, (c, p, i, r, a) in enumerate(records)]
    path.write_text("\n".join(header + lines) + "\n")
    return records


def read_table(path: Path) -> list[dict]:
    lines = [l for l in path.read_text().splitlines() if not l.startswith("#")]
    header = lines[0].split("\t")
    return [dict(zip(header, l.split("\t"))) for l in lines[1:]]


# ---- the kernel tests: relative errors, sequence layouts, gradients, SSD inputs ------------

def rel_err(a: torch.Tensor, b: torch.Tensor, scale: float | None = None) -> float:
    """``max|a - b| / scale``, the scale being ``max|b|`` unless given."""
    a, b = a.detach().float(), b.detach().float()
    scale = b.abs().max().item() if scale is None else scale
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else diff


def assert_close_all(got: dict, want: dict, tol: float, scales: dict | None = None) -> None:
    """Every tensor of ``got`` within ``tol`` relative error of ``want``; reports all of them.
    ``scales`` replaces ``max|want|`` as the denominator for the names it lists."""
    scales = scales or {}
    errs = {name: rel_err(got[name], want[name], scales.get(name)) for name in want}
    bad = {name: f"{e:.2e}" for name, e in errs.items() if not e <= tol}
    assert not bad, f"relative error over {tol:g}: {bad} (all: { {n: f'{e:.1e}' for n, e in errs.items()} })"


def seq_idx_from_lengths(rows: list[list[int]]) -> torch.Tensor:
    """``(b, l)`` int32 sequence ids, one list of sequence lengths per row (each row sums to l)."""
    out = []
    for lengths in rows:
        out.append(torch.repeat_interleave(torch.arange(len(lengths), dtype=torch.int32),
                                           torch.tensor(lengths)))
    return torch.stack(out)


def cu_from_lengths(lengths: list[int]) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


def grads(out, inputs: dict, cotangent) -> dict:
    """``{"out": out, "d<name>": grad}`` for the inputs that require grad."""
    outs = out if isinstance(out, tuple) else (out,)
    cots = cotangent if isinstance(cotangent, tuple) else (cotangent,)
    names = [n for n, t in inputs.items() if t is not None and t.requires_grad]
    gs = torch.autograd.grad(outs, [inputs[n] for n in names], cots)
    result = {f"out{i}": o for i, o in enumerate(outs)}
    result.update({f"d{n}": g for n, g in zip(names, gs)})
    return result


def ssd_inputs(b, l, h, p, g, n, *, dtype=torch.float32, seed=0):
    """Random SSD inputs ``x (b, l, h, p), dt (b, l, h), A (h), B, C (b, l, g, n), D, dt_bias (h)``,
    all in ``dtype`` but A (fp32); A < 0, dt centred on -1 (before any softplus)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, h, p, generator=gen)
    dt = torch.randn(b, l, h, generator=gen) - 1.0
    A = -torch.exp(torch.rand(h, generator=gen) * 1.5)
    B = torch.randn(b, l, g, n, generator=gen)
    C = torch.randn(b, l, g, n, generator=gen)
    D = torch.randn(h, generator=gen)
    dt_bias = 0.5 * torch.randn(h, generator=gen)
    return [t.to(dtype) if t is not A else t for t in (x, dt, A, B, C, D, dt_bias)]


# ---- the adapters' errors ------------------------------------------------------------------

def one_line_naming(err: pytest.ExceptionInfo, name: str) -> None:
    """The raised error's message is one line and names ``name`` (a file, record or flag)."""
    msg = str(err.value)
    assert "\n" not in msg and name in msg, msg
