"""``hnet-seq generate``: sample continuations with the incremental decoding cache."""
from __future__ import annotations

from pathlib import Path

import typer

from hnet_seq.cli.main import check_positive, command
from hnet_seq.cli.options import Checkpoint, Config, Device, Modality
from hnet_seq.errors import UserError


@command("generate")
def generate(
    checkpoint: Checkpoint = ...,
    config: Config = None,
    prompt: str = typer.Option(None, "--prompt", "-p", help="DNA bases, or text for a byte model "
                               "(BOS=254 is prepended)."),
    prompt_file: Path = typer.Option(None, "--prompt-file", help="Read the prompt from a file (a FASTA's "
                                     "first record for DNA)."),
    audio_prompt: Path = typer.Option(None, "--audio-prompt", help="Audio models: a WAV file to continue."),
    out_wav: Path = typer.Option(None, "--out-wav", help="Audio models: where to write prompt + continuation."),
    seconds: float = typer.Option(1.0, "--seconds", help="Audio models: length of the continuation."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", "-n", help="Tokens (bases/bytes) to generate."),
    temperature: float = typer.Option(1.0, "--temperature", "-t", help="Softmax temperature; 0 = greedy."),
    top_k: int = typer.Option(0, "--top-k", help="Sample among the k most likely tokens (0 = off)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass (1 = off)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same samples)."),
    num_samples: int = typer.Option(1, "--num-samples", help="Independent samples, decoded in parallel."),
    modality: Modality = None,
    out: Path = typer.Option(None, "--out", "-o", help="Write samples to a file (FASTA for DNA, text otherwise)."),
    device: Device = None,
) -> None:
    """Sample from the model: DNA or text from a prompt, or audio continued as WAV.

    Each sample is printed with its log-likelihood under the model (nats, temperature 1).

    Examples:

      hnet-seq generate --checkpoint runs/dna/checkpoints/latest --prompt ACGTTGCA -n 500 --top-k 4

      hnet-seq generate --checkpoint hnet_2stage_L.pt --config configs/hnet_2stage_L.json \\
          --prompt "The H-Net architecture" -n 200 --temperature 0.8 --top-p 0.9

      hnet-seq generate --checkpoint runs/audio/checkpoints/latest --audio-prompt speech.wav --out-wav more.wav
    """
    _check_sampling(temperature, max_new_tokens, top_k, num_samples, seconds, top_p)
    if audio_prompt is not None:
        return _continue_audio(checkpoint, config, audio_prompt, out_wav, seconds, seed, device)
    from hnet_seq.inference.generate import generate as run
    from hnet_seq.inference.model import load

    if (prompt is None) == (prompt_file is None):
        raise UserError("give exactly one of --prompt or --prompt-file")
    if out is not None:
        from hnet_seq.inference.outputs import check_output_path

        check_output_path(out)  # before any work
    im = load(checkpoint, config, device=device, modality=modality, precision="float32")
    if prompt_file is not None:
        prompt = _read_prompt(im, prompt_file)
    gens = run(im, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
               seed=seed, num_samples=num_samples)
    text = _samples_text(gens, prompt, dna=im.adapter.genomic)
    if out is None:
        typer.echo(text, nl=False)
        return
    _write_text(out, text)
    typer.echo(f"wrote {len(gens)} samples to {out}", err=True)


def _check_sampling(temperature, max_new_tokens, top_k, num_samples, seconds, top_p) -> None:
    check_positive(temperature, "--temperature", allow_zero=True)
    check_positive(max_new_tokens, "--max-new-tokens")
    check_positive(top_k, "--top-k", allow_zero=True)
    check_positive(num_samples, "--num-samples")
    check_positive(seconds, "--seconds")
    if not 0 < top_p <= 1:
        raise UserError(f"--top-p {top_p}: must be in (0, 1]")


def _continue_audio(checkpoint, config, audio_prompt: Path, out_wav: Path | None, seconds: float, seed: int,
                    device) -> None:
    """An audio model continues ``audio_prompt`` by ``seconds`` into ``out_wav``."""
    from hnet_seq.inference.generate import continue_audio

    if out_wav is None:
        raise UserError("--audio-prompt needs --out-wav")
    c = continue_audio(checkpoint, audio_prompt, out_wav, seconds=seconds, seed=seed, config=config, device=device)
    typer.echo(f"wrote {c.path}; log-likelihood per second of audio: prompt {c.prompt_nats_per_second:,.1f} "
               f"nats/s ({c.prompt_seconds:.2f} s scored), continuation {c.new_nats_per_second:,.1f} nats/s "
               f"({c.new_seconds:.2f} s)", err=True)


def _read_prompt(im, prompt_file: Path) -> str | bytes:
    """The first FASTA record's bases for a DNA model, else the file's bytes."""
    if not prompt_file.exists():
        raise UserError(f"--prompt-file {prompt_file}: no such file")
    if not im.adapter.genomic:
        return prompt_file.read_bytes()
    rec = next(iter(im.adapter.read_records([prompt_file])))
    return im.adapter.text_of(rec.data)


def _samples_text(gens, prompt: str | bytes, dna: bool) -> str:
    """FASTA records (DNA, 80 bases a line) or ``# header`` + prompt + continuation (text)."""
    lines = []
    for i, g in enumerate(gens, 1):
        head = f"sample{i} new_tokens={len(g.tokens)} log_likelihood={g.log_likelihood:.4f} stop={g.stop}"
        if dna:
            lines.append(f">{head}")
            lines += [g.text[j:j + 80] for j in range(0, len(g.text), 80)] or [""]
        else:
            prompt_text = prompt.decode("utf-8", "replace") if isinstance(prompt, bytes) else prompt
            lines += [f"# {head}", prompt_text + g.text, ""]
    return "\n".join(lines) + "\n"


def _write_text(out: Path, text: str) -> None:
    """``text`` to ``out`` atomically (a temporary file renamed; none left on failure)."""
    from hnet_seq.inference.outputs import AtomicFile

    f = AtomicFile(out)
    try:
        f.tmp.write_text(text, encoding="utf-8")
        f.close()
    except BaseException:
        f.abort()
        raise
