"""Keeping Triton kernels inside 32-bit pointer offsets.

mamba-ssm's Triton kernels (the SSD scan, the gated RMSNorm) compute a row's offset as
``row × row_stride`` in 32-bit arithmetic (state-spaces/mamba#1015).  Past ``2**31`` they read
or write out of bounds: an illegal memory access, or wrong values with no error.  A 1 Mbp
window of the 100 M DNA H-Net gets there: its Mamba-2 gate ``z`` is a view into an
in-projection ~4,400 elements wide, so the RMSNorm's rows reach 4.4 × 10⁹ elements.

Row-wise ops are cut into calls of :func:`rows_per_call` rows (exact: rows are independent);
the SSD, which carries state along a sequence, is cut by :mod:`.ssd_pieces`.
"""
from __future__ import annotations

import torch

SAFE_OFFSET = 2**30  # half of 2**31: kernel offsets add a few in-row terms to the row offset


def rows_per_call(*rows: torch.Tensor) -> int | None:
    """Rows per call that keep every offset of the 2-D ``rows`` tensors ``(M, N)`` (and of a
    contiguous ``(M, N)`` output) under :data:`SAFE_OFFSET`; None when one call of all ``M``
    rows stays under it."""
    m, n = rows[0].shape
    reach = max([n] + [t.stride(0) for t in rows])
    limit = max(1, SAFE_OFFSET // reach)
    return limit if m > limit else None
