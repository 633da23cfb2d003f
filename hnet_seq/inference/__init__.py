"""Inference on trained models: embeddings, scores, variant effects, generation, chunk views.

One module per job, each a Python API under a thin ``hnet-seq`` command:

=================  ==============================================  =====================
module             API                                             command
=================  ==============================================  =====================
:mod:`.embed`      :func:`embed` (pooled rows, per-chunk rows)     ``hnet-seq embed``
:mod:`.score`      :func:`score` (log-likelihood, bits per unit)   ``hnet-seq score``
:mod:`.variants`   :func:`score_variants` (VCF/BCF + reference)    ``hnet-seq score-variants``
:mod:`.saturation` :func:`saturation_mutagenesis` (every SNV)      ``score-variants --saturate``
:mod:`.generate`   :func:`generate`, :func:`continue_audio`        ``hnet-seq generate``
:mod:`.chunks`     :func:`boundary_tracks` (+ :mod:`.chunk_views`) ``hnet-seq chunks``
=================  ==============================================  =====================

Every API takes a checkpoint path (our directory, or an official ``.pt`` with ``config=``)
or an :class:`InferenceModel` from :func:`load` (to load once and call many times).
Shared pieces: :mod:`.model` (load), :mod:`.tiling` (tiles, batches), :mod:`.runner` (packed runs,
capture), :mod:`.inputs` (record → model inputs + coordinates), :mod:`.records` (reading inputs),
:mod:`.tables` (streamed parquet/TSV) and :mod:`.outputs` (atomic files).
"""
from __future__ import annotations

from .chunk_views import plot_tracks, render_html, render_terminal
from .chunks import boundary_tracks
from .embed import embed, read_chunks
from .generate import continue_audio, generate, sequence_logprobs
from .model import InferenceModel, load
from .saturation import saturation_mutagenesis
from .score import score
from .tiling import plan_tiles
from .variants import score_variants

__all__ = ["InferenceModel", "boundary_tracks", "continue_audio", "embed", "generate", "load", "plan_tiles",
           "plot_tracks", "read_chunks", "render_html", "render_terminal", "saturation_mutagenesis", "score",
           "score_variants", "sequence_logprobs"]
