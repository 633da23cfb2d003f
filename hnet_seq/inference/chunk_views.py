"""Chunk tracks (:mod:`.chunks`) drawn for a reader: an HTML page, a PNG, or terminal colours.

* :func:`render_html`: a self-contained page (no scripts, no external files): the sequence as
  characters (DNA bases, or UTF-8 text decoded from its bytes), under each character one colour
  band per stage, alternating shades per chunk with a dark edge where a chunk starts; hovering a
  character shows its coordinate and every stage's boundary probability.
* :func:`plot_tracks`: a PNG of boundary density (chunk starts per kb, in bins) and mean
  boundary probability per stage along a region, with an optional annotation track (BED, any alias of the contig).
* :func:`render_terminal`: the same colour bands in a terminal (rich) for short inputs.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from hnet_seq.data.regions import bed_features
from hnet_seq.errors import UserError

from .chunks import ChunkTracks, StageTrack
from .outputs import AtomicFile

STAGE_COLOURS = [("#fdd49e", "#fc8d59", "#b30000"), ("#c6dbef", "#6baed6", "#08519c"),
                 ("#c7e9c0", "#74c476", "#006d2c"), ("#dadaeb", "#9e9ac8", "#54278f")]


# ---- HTML -----------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 4px} .meta{color:#555;font-size:13px;margin-bottom:10px}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:28px;height:10px;margin-right:4px;vertical-align:middle}
.seq{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:14px;line-height:1;margin-top:8px}
.c{display:inline-flex;flex-direction:column;width:1.2ch;margin-bottom:6px;vertical-align:top}
.c>b{font-weight:normal;text-align:center;height:17px}
.c>i{display:block;height:6px;margin-top:1px}
.c:hover{outline:1px solid #000}
.nl{color:#999}
"""


def render_html(tracks: ChunkTracks | list[ChunkTracks], path: str | Path, *, title: str | None = None,
                max_units: int = 200_000, sample_rate: int | None = None) -> Path:
    """Write the self-contained HTML page for one or more sequences (atomically).

    With ``sample_rate`` (audio) each sequence is a waveform view (an inline SVG) with every
    stage's chunk starts, not characters; its length limit is then 10 minutes of audio.
    """
    tracks = [tracks] if isinstance(tracks, ChunkTracks) else list(tracks)
    total = sum(t.length for t in tracks)
    if sample_rate:
        max_units = 600 * sample_rate
    if total > max_units:
        raise UserError(f"HTML page: {total} units is too long for a page (limit {max_units}); "
                        "pick a shorter region, or plot long regions as PNG tracks")
    parts = _html_head(max(len(t.stages) for t in tracks), title)
    for t in tracks:
        parts += _html_sequence(t, sample_rate)
    parts.append("</body></html>\n")
    out = AtomicFile(path)
    try:
        out.tmp.write_text("".join(parts), encoding="utf-8")
        return out.close()
    except BaseException:
        out.abort()
        raise


def _html_head(S: int, title: str | None) -> list[str]:
    """The page up to its first sequence: styles for ``S`` stages, the title and the legend."""
    css = _CSS
    for s in range(S):
        light, mid, dark = STAGE_COLOURS[s % len(STAGE_COLOURS)]
        css += f".s{s}a{{background:{light}}}.s{s}b{{background:{mid}}}.s{s}k{{box-shadow:inset 2px 0 0 {dark}}}\n"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title or 'H-Net chunks')}</title>",
             f"<style>{css}</style></head><body><h1>{html.escape(title or 'H-Net chunk boundaries')}</h1>"]
    parts.append("<div class='legend'>" + "".join(
        f"<span><i class='s{s}a'></i><i class='s{s}b'></i>stage {s + 1}</span>" for s in range(S))
        + "<span>dark edge: a chunk starts here &middot; hover a character for boundary probabilities</span></div>")
    return parts


def _html_sequence(t: ChunkTracks, sample_rate: int | None) -> list[str]:
    """One sequence's heading and its view: the waveform (audio) or the character cells."""
    ratios = ", ".join(f"stage {s + 1}: {len(st.starts)} chunks ({t.length / max(len(st.starts), 1):.2f} "
                       f"units/chunk)" for s, st in enumerate(t.stages))
    genomic = t.offset or t.chrom != t.seq_id
    where = f"{t.chrom}:{t.offset}-{t.offset + t.length}" if genomic else f"{t.length} units"
    if sample_rate:
        where = f"{t.length / sample_rate:.2f} s at {sample_rate} Hz"
    head = (f"<h1>{html.escape(t.seq_id)}</h1><div class='meta'>{html.escape(where)} &middot; "
            f"{html.escape(ratios)}</div>")
    if sample_rate:
        return [head, _waveform_svg(t, sample_rate)]
    return [head, "<div class='seq'>" + _html_cells(t) + "</div>"]


def _html_cells(t: ChunkTracks) -> str:
    """Every character with one colour band per stage and a tooltip of its boundary probabilities."""
    cells = t.symbols()
    # chunk index of each unit per stage, and whether a chunk starts inside each cell
    chunk_of = [np.searchsorted(st.starts, np.arange(t.length), side="right") - 1 for st in t.stages]
    is_start = [np.zeros(t.length + 1, bool) for _ in t.stages]
    for s, st in enumerate(t.stages):
        is_start[s][st.starts] = True
    csum = [np.concatenate([[0], np.cumsum(a[:-1])]) for a in is_start]
    buf = []
    for ch, a, b in cells:
        tip = [f"{t.chrom}:{t.offset + a}" + (f"-{t.offset + b}" if b - a > 1 else "")]
        bands = []
        for s, st in enumerate(t.stages):
            p = float(st.prob[a:b].max())
            starts_here = csum[s][b] - csum[s][a] > 0
            tip.append(f"stage {s + 1}: p={p:.3f}" + (" (chunk start)" if starts_here else ""))
            cls = f"s{s}{'a' if chunk_of[s][a] % 2 == 0 else 'b'}" + (f" s{s}k" if starts_here else "")
            bands.append(f"<i class='{cls}'></i>")
        shown = {"\n": "<span class='nl'>&#8629;</span>", "\t": "&rarr;", " ": "&nbsp;", "\r": ""}.get(
            ch, html.escape(ch))
        buf.append(f"<span class='c' title='{html.escape(chr(10).join(tip), quote=True)}'><b>{shown}</b>"
                   + "".join(bands) + "</span>")
        if ch == "\n":
            buf.append("<br>")
    return "".join(buf)


def _waveform_svg(t: ChunkTracks, sample_rate: int, width: int = 1200, lane: int = 14) -> str:
    """An SVG of the waveform (min/max per pixel column), one lane of chunk-start ticks per stage
    under it, and a time axis; hovering a tick shows its time and boundary probability."""
    x = np.asarray(t.data, np.float32)
    cols = np.array_split(x, min(width, max(len(x), 1)))
    peak = max(float(np.abs(x).max()) if len(x) else 0.0, 1e-6)
    h = 120
    env = " ".join(f"M{i},{h / 2 * (1 - c.max() / peak):.1f}V{h / 2 * (1 - c.min() / peak):.1f}"
                   for i, c in enumerate(cols) if len(c))
    scale = len(cols) / max(t.length, 1)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{len(cols)}' height='{h + lane * len(t.stages) + 18}' "
           f"style='display:block;margin:8px 0'><path d='{env}' stroke='#333' stroke-width='1' fill='none'/>"]
    for s, st in enumerate(t.stages):
        dark = STAGE_COLOURS[s % len(STAGE_COLOURS)][2]
        y = h + lane * s
        out.append(f"<text x='2' y='{y + lane - 3}' font-size='9' fill='{dark}'>stage {s + 1}</text>")
        out += [f"<line x1='{a * scale:.1f}' x2='{a * scale:.1f}' y1='{y + 1}' y2='{y + lane - 1}' stroke='{dark}'>"
                f"<title>{a / sample_rate:.4f} s (sample {a}), p={float(st.prob[a]):.3f}</title></line>"
                for a in st.starts]
    step = next(v for v in (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60) if t.length / sample_rate / v <= 12)
    y = h + lane * len(t.stages) + 14
    out += [f"<text x='{sec * sample_rate * scale:.1f}' y='{y}' font-size='10'>{sec:g} s</text>"
            for sec in np.arange(0, t.length / sample_rate, step)]
    return "".join(out) + "</svg>"


# ---- PNG ------------------------------------------------------------------------------------
def plot_tracks(tracks: ChunkTracks, path: str | Path, *, bin_size: int | None = None,
                annotations: str | Path | None = None, title: str | None = None,
                sample_rate: int | None = None) -> Path:
    """PNG: per stage, chunk starts per kb and mean boundary probability in bins along the sequence.

    With ``sample_rate`` (audio: ``tracks.data`` are samples) the waveform and a log-mel
    spectrogram are drawn under the boundary tracks, with the chunk starts of the last stage
    over both, and the axis is in seconds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    L, x0 = tracks.length, tracks.offset
    bin_size = bin_size or max(10, int(round(L / 200, -1)) or 10)
    edges = np.arange(0, L + bin_size, bin_size)
    edges[-1] = min(edges[-1], L) if edges[-1] > L else edges[-1]
    edges = np.unique(np.clip(edges, 0, L))
    feats = bed_features(annotations, tracks.chrom, x0, x0 + L) if annotations else []
    n_tracks = len(tracks.stages) + (1 if annotations else 0) + (2 if sample_rate else 0)
    fig, axes = plt.subplots(n_tracks, 1, figsize=(12, 1.9 * n_tracks + 0.6), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for s, st in enumerate(tracks.stages):
        _plot_stage(axes[s], s, st, edges, x0, L, bin_size)
    if annotations:
        _plot_annotations(axes[-1], annotations, feats, x0, L)
    if sample_rate:
        _plot_audio(axes[-2], axes[-1], np.asarray(tracks.data, np.float32), sample_rate, x0,
                    tracks.stages[-1].starts if tracks.stages else np.zeros(0, np.int64))
    axes[-1].set_xlim(x0, x0 + L)
    axes[-1].set_xlabel(f"{tracks.chrom} position" if tracks.modality == "dna" else "position", fontsize=9)
    if sample_rate:
        _time_axis(axes[-1], L, x0, sample_rate)
    fig.suptitle(title or f"{tracks.seq_id}: chunk boundaries per stage", fontsize=11)
    fig.tight_layout()
    out = AtomicFile(path)
    try:
        fig.savefig(out.tmp, format="png", dpi=110)
        plt.close(fig)
        return out.close()
    except BaseException:
        plt.close(fig)
        out.abort()
        raise


def _plot_stage(ax, s: int, st: StageTrack, edges: np.ndarray, x0: int, L: int, bin_size: int) -> None:
    """Stage ``s``'s chunk starts per kb in the bins between ``edges``, and its mean boundary probability."""
    centres = x0 + (edges[:-1] + edges[1:]) / 2
    widths = np.diff(edges)
    counts = np.histogram(st.starts, bins=edges)[0]
    density = counts / widths * 1000
    sums = np.add.reduceat(st.prob.astype(np.float64), edges[:-1]) if L else np.zeros(0)
    mean_p = sums / widths
    colour = STAGE_COLOURS[s % len(STAGE_COLOURS)][2]
    ax.fill_between(centres, density, step="mid", color=colour, alpha=0.35, linewidth=0)
    ax.plot(centres, density, drawstyle="steps-mid", color=colour, linewidth=1)
    ax.set_ylabel(f"stage {s + 1}\nstarts / kb", fontsize=9)
    ax.set_ylim(0, max(density.max() * 1.15, 1) if len(density) else 1)
    ax2 = ax.twinx()
    ax2.plot(centres, mean_p, color="#444", linewidth=0.7, alpha=0.8)
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("mean p", fontsize=8, color="#444")
    ax2.tick_params(labelsize=7)
    ax.tick_params(labelsize=8)
    ax.set_title(f"stage {s + 1}: {len(st.starts):,} chunks, {L / max(len(st.starts), 1):.2f} units/chunk "
                 f"(bins of {bin_size})", fontsize=9, loc="left")


def _plot_annotations(ax, annotations: str | Path, feats: list, x0: int, L: int) -> None:
    """The BED features of the region as boxes on three staggered lanes (names when few)."""
    import matplotlib

    for i, (a, b, name, strand) in enumerate((f.start, f.end, f.name, f.strand) for f in feats):
        y = i % 3
        ax.add_patch(matplotlib.patches.Rectangle((max(a, x0), y + 0.1), min(b, x0 + L) - max(a, x0), 0.8,
                                                  color="#555" if strand != "-" else "#999"))
        if name and len(feats) <= 60:
            ax.text(max(a, x0), y + 0.5, name, fontsize=6, va="center", ha="left", color="white", clip_on=True)
    ax.set_ylim(0, 3)
    ax.set_yticks([])
    ax.set_ylabel(f"{Path(annotations).name}\n({len(feats)})", fontsize=8)


def _time_axis(ax, L: int, x0: int, sample_rate: int) -> None:
    """Ticks in seconds (at most about 12) on the sample axis of audio."""
    import matplotlib

    step = next(s for s in (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 1e9) if L / sample_rate / s <= 12)
    ax.xaxis.set_major_locator(matplotlib.ticker.MultipleLocator(step * sample_rate, offset=x0))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / sample_rate:g}"))
    ax.set_xlabel(f"time (s); {sample_rate} Hz samples", fontsize=9)


def _plot_audio(wave_ax, mel_ax, samples: np.ndarray, sample_rate: int, x0: int, starts: np.ndarray) -> None:
    """Waveform and log-mel spectrogram (torchaudio; 25 ms windows, 10 ms hop, 64 bands) on a
    sample axis, the chunk ``starts`` (samples) drawn over both."""
    import torch
    import torchaudio.transforms as T

    n = len(samples)
    wave_ax.plot(x0 + np.arange(n), samples, color="#333", linewidth=0.4)
    wave_ax.set_ylabel("waveform", fontsize=9)
    wave_ax.set_ylim(-1.05 * (np.abs(samples).max() or 1), 1.05 * (np.abs(samples).max() or 1))
    hop = max(1, round(0.010 * sample_rate))
    mel = T.MelSpectrogram(sample_rate, n_fft=round(0.025 * sample_rate), hop_length=hop, n_mels=64)
    with torch.no_grad():
        logmel = torch.log(mel(torch.from_numpy(np.ascontiguousarray(samples))).clamp(min=1e-10)).numpy()
    mel_ax.imshow(logmel, origin="lower", aspect="auto", cmap="magma", extent=(x0, x0 + n, 0, logmel.shape[0]),
                  vmin=np.percentile(logmel, 5), vmax=logmel.max())
    mel_ax.set_ylabel("log-mel band", fontsize=9)
    for ax in (wave_ax, mel_ax):
        ax.vlines(x0 + starts, *ax.get_ylim(), color="#6baed6", linewidth=0.5, alpha=0.7)
        ax.tick_params(labelsize=8)


# ---- terminal -------------------------------------------------------------------------------
def render_terminal(tracks: ChunkTracks, console=None, width: int | None = None, max_units: int = 4000) -> None:
    """Print each line of the sequence once per stage, chunks in alternating colours (rich)."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    if tracks.length > max_units:
        raise UserError(f"{tracks.length} units is too long for the terminal (limit {max_units}); "
                        "write an HTML page or PNG tracks, or pick a shorter region")
    styles = [("black on #fdd49e", "black on #fc8d59"), ("black on #c6dbef", "black on #6baed6"),
              ("black on #c7e9c0", "black on #74c476"), ("black on #dadaeb", "black on #9e9ac8")]
    cells = tracks.symbols()
    width = width or max(10, min(100, console.width - 12))
    console.print(f"[bold]{tracks.seq_id}[/]  " + "  ".join(
        f"stage {s + 1}: {len(st.starts)} chunks ({tracks.length / max(len(st.starts), 1):.2f} units/chunk)"
        for s, st in enumerate(tracks.stages)))
    chunk_of = [np.searchsorted(st.starts, [a for _, a, _ in cells], side="right") - 1 for st in tracks.stages]
    for line in range(0, len(cells), width):
        part = cells[line:line + width]
        console.print(Text(f"{tracks.offset + part[0][1]:>10} ", style="dim"), end="")
        console.print(Text("".join(c if c.isprintable() else "·" for c, _, _ in part)))
        for s in range(len(tracks.stages)):
            t = Text(f"{'stage ' + str(s + 1):>10} ", style="dim")
            for j, (c, a, _) in enumerate(part):
                k = chunk_of[s][line + j]
                t.append(c if c.isprintable() else "·", style=styles[s % len(styles)][k % 2])
            console.print(t)
        console.print()
