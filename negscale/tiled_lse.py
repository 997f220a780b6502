"""The shared-tile log-sum-exp: both directions of one score matrix from one pass of tiles.

For queries q (B, d) and keys k (M, d) (the scores S = q k^T already divided
by tau), :func:`shared_tile_lse` returns the row LSE (anchor i over keys j)
and optionally the column LSE (key j over anchors i) of the kept entries,
never holding more than a few ``rows x cols`` tiles. A custom autograd
function recomputes each tile in backward and forms the score gradient of
both directions at once, G = g_r[i] P_row + g_c[j] P_col, so one forward and
one backward cost four tile matmuls (S, S again, G k and G^T q): 8 B M d
FLOPs, against the 6 B M d of a dense loss that keeps its B x M matrices.

Two numerically equivalent tile recipes:

- **shifted** (the usual case): every score lies in [-beta, beta] with
  beta = max|q_i| max|k_j|. When 2 beta <= ``_SPAN`` (float32: 80, so
  exp(S - beta) >= e^-80 is a normal float), one exp per entry,
  E = exp(S - beta), serves both directions: row sums and column sums of E are
  the two partition functions, and in backward G = E * (g_r/rowsum + g_c/colsum).
  No running maxima, no fill values: dropped entries are zeroed after the exp.
- **online** (very low tau, wide score range): running max/sum per row and per
  column, dropped entries at -inf, two exps per entry. Slower, always safe.

Memory is O(rows * cols + (B + M) d): no (B, M) tensor is built or saved.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

ROWS = 256  # anchors per row block
COLS = 1024  # keys per tile: a 256 x 1024 float32 tile is 1 MiB, cache-resident
# on accelerators each tile is a handful of kernel launches: fewer, larger tiles
ACCEL_COLS, ACCEL_TILE = 8192, 2**25  # 128 MiB float32 tiles
_SPAN = {torch.float32: 80.0, torch.float64: 700.0}  # largest exp(-x) that stays normal


class _Tiles:
    """Tile geometry, the dropped entries, and reusable scratch buffers."""

    def __init__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        rows: int,
        cols: int,
        exclude: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> None:
        self.q, self.k, self.exclude, self.mask = q, k, exclude, mask
        self.b, self.m = q.shape[0], k.shape[0]
        if self.b * self.m <= rows * cols:  # small: one tile, fewest ops
            rows, cols = self.b, self.m
        self.rows, self.cols = max(1, min(rows, self.b)), max(1, min(cols, self.m))
        size = self.rows * self.cols
        self._bufs = [torch.empty(size, dtype=q.dtype, device=q.device) for _ in range(2)]

    def __iter__(self) -> Iterator[tuple[int, int, int, int]]:
        # (r0, r1, c0, c1), rows outer so a row block stays hot
        for r0 in range(0, self.b, self.rows):
            for c0 in range(0, self.m, self.cols):
                yield r0, min(r0 + self.rows, self.b), c0, min(c0 + self.cols, self.m)

    def buf(self, i: int, r: int, c: int) -> torch.Tensor:
        return self._bufs[i][: r * c].view(r, c)

    def scores(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """S of the tile, written into scratch buffer 0."""
        out = self.buf(0, r1 - r0, c1 - c0)
        return torch.mm(self.q[r0:r1], self.k[c0:c1].T, out=out)

    def drop(self, t: torch.Tensor, r0: int, r1: int, c0: int, c1: int, value: float) -> None:
        """Set the tile's dropped entries (excluded key, mask False) to ``value``, in place."""
        if self.mask is not None:
            keep = self.mask[r0:r1, c0:c1]
            if value == 0.0:
                t.mul_(keep)
            else:
                t.masked_fill_(~keep, value)
        if self.exclude is not None:
            ex = self.exclude[r0:r1]
            hit = ((ex >= c0) & (ex < c1)).nonzero()[:, 0]
            if len(hit):
                t[hit, ex[hit] - c0] = value


def _shifted_forward(t: _Tiles, beta: float, cols: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column sums of E = exp(S - beta) over kept entries."""
    rsum = torch.zeros(t.b, dtype=t.q.dtype, device=t.q.device)
    csum = torch.zeros(t.m if cols else 0, dtype=t.q.dtype, device=t.q.device)
    for r0, r1, c0, c1 in t:
        e = t.scores(r0, r1, c0, c1).sub_(beta).exp_()
        t.drop(e, r0, r1, c0, c1, 0.0)
        rsum[r0:r1] += e.sum(dim=1)
        if cols:
            csum[c0:c1] += e.sum(dim=0)
    return rsum, csum


def _online_forward(t: _Tiles, cols: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column LSE with running maxima (any score range)."""
    kw = {"dtype": t.q.dtype, "device": t.q.device}
    rmax, rsum = torch.full((t.b,), -math.inf, **kw), torch.zeros(t.b, **kw)
    n = t.m if cols else 0
    cmax, csum = torch.full((n,), -math.inf, **kw), torch.zeros(n, **kw)
    for r0, r1, c0, c1 in t:
        s = t.scores(r0, r1, c0, c1)
        t.drop(s, r0, r1, c0, c1, -math.inf)
        tmp = t.buf(1, r1 - r0, c1 - c0)
        for ax, (mx, sm, a, z) in enumerate(((rmax, rsum, r0, r1), (cmax, csum, c0, c1))):
            if ax == 1 and not cols:
                break
            old = mx[a:z]
            new = torch.maximum(old, s.amax(dim=1 - ax))
            safe = torch.where(torch.isfinite(new), new, torch.zeros_like(new))
            shift = safe[:, None] if ax == 0 else safe[None, :]
            part = torch.sub(s, shift, out=tmp).exp_().sum(dim=1 - ax)
            sm[a:z] = sm[a:z] * torch.exp(old - safe) + part
            mx[a:z] = new
    return rmax + torch.log(rsum), (cmax + torch.log(csum)) if cols else csum


def _score_grad_shifted(
    t: _Tiles, tile: tuple[int, int, int, int], beta: float, a: torch.Tensor, c: torch.Tensor
) -> torch.Tensor:
    """dLoss/dS of a tile: E * (a_i + c_j), a = g_r / rowsum, c = g_c / colsum."""
    r0, r1, c0, c1 = tile
    e = t.scores(r0, r1, c0, c1).sub_(beta).exp_()
    t.drop(e, r0, r1, c0, c1, 0.0)
    if len(c):
        both = torch.add(a[r0:r1, None], c[None, c0:c1], out=t.buf(1, r1 - r0, c1 - c0))
        return e.mul_(both)
    return e.mul_(a[r0:r1, None])


def _score_grad_online(
    t: _Tiles,
    tile: tuple[int, int, int, int],
    lse: tuple[torch.Tensor, torch.Tensor],
    g: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """dLoss/dS of a tile: g_r exp(S - lse_r) + g_c exp(S - lse_c)."""
    r0, r1, c0, c1 = tile
    s = t.scores(r0, r1, c0, c1)
    t.drop(s, r0, r1, c0, c1, -math.inf)
    out = torch.sub(s, lse[0][r0:r1, None], out=t.buf(1, r1 - r0, c1 - c0)).exp_()
    out.mul_(g[0][r0:r1, None])
    if len(lse[1]):
        out.add_(s.sub_(lse[1][None, c0:c1]).exp_().mul_(g[1][None, c0:c1]))
    return out


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


class _SharedTileLSE(torch.autograd.Function):
    """(row LSE, column LSE) of q k^T over kept entries; backward recomputes each tile."""

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        exclude: torch.Tensor | None,
        mask: torch.Tensor | None,
        cols: bool,
        rows: int,
        width: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k = k.to(q.dtype)
        t = _Tiles(q, k, rows, width, exclude, mask)
        beta = float(q.norm(dim=1).max() * k.norm(dim=1).max()) if t.b and t.m else 0.0
        shifted = 2.0 * beta <= _SPAN.get(q.dtype, 0.0)
        if shifted:
            rsum, csum = _shifted_forward(t, beta, cols)
            lse_r, lse_c = torch.log(rsum) + beta, torch.log(csum) + beta
            ctx.save_for_backward(q, k, exclude, mask, rsum, csum)
        else:
            lse_r, lse_c = _online_forward(t, cols)
            ctx.save_for_backward(q, k, exclude, mask, lse_r, lse_c)
        ctx.shifted, ctx.beta, ctx.cols, ctx.tile = shifted, beta, cols, (rows, width)
        return lse_r, lse_c

    @staticmethod
    def backward(ctx: Any, g_r: torch.Tensor | None, g_c: torch.Tensor | None):
        q, k, exclude, mask, stat_r, stat_c = ctx.saved_tensors
        t = _Tiles(q, k, *ctx.tile, exclude, mask)
        g_r = torch.zeros_like(stat_r) if g_r is None else g_r
        g_c = torch.zeros_like(stat_c) if g_c is None or not ctx.cols else g_c
        need_q, need_k = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gq = torch.zeros_like(q) if need_q else None
        gk = torch.zeros_like(k) if need_k else None
        if ctx.shifted:  # rows/columns with nothing kept have sum 0: weight 0, not inf
            a = torch.where(stat_r > 0, g_r / stat_r, torch.zeros_like(g_r))
            c = torch.where(stat_c > 0, g_c / stat_c, torch.zeros_like(g_c))
        lse = (_finite(stat_r), _finite(stat_c))
        for tile in t:
            if ctx.shifted:
                grad = _score_grad_shifted(t, tile, ctx.beta, a, c)
            else:
                grad = _score_grad_online(t, tile, lse, (g_r, g_c))
            r0, r1, c0, c1 = tile
            if gq is not None:
                gq[r0:r1].addmm_(grad, k[c0:c1])
            if gk is not None:
                gk[c0:c1].addmm_(grad.T, q[r0:r1])
        return gq, gk, None, None, None, None, None


def tile_shape(device: torch.device, rows: int | None, width: int | None) -> tuple[int, int]:
    """(rows, columns) of a tile: ``width`` caps the columns (memory), the device sets the rest.

    CPU tiles stay cache-sized (:data:`ROWS` x :data:`COLS`); on an
    accelerator a tile is a few launches, so tiles grow to ``ACCEL_TILE`` entries.
    """
    if device.type == "cpu":
        cols = COLS if width is None else max(1, min(width, COLS))
        return rows or ROWS, cols
    cols = ACCEL_COLS if width is None else max(1, min(width, ACCEL_COLS))
    return rows or max(ROWS, ACCEL_TILE // cols), cols


def shared_tile_lse(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    cols: bool = True,
    exclude: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    rows: int | None = None,
    width: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(LSE_j q_i.k_j per row (B,), LSE_i q_i.k_j per column (M,) or empty) over kept entries.

    ``exclude`` (B,) drops key ``exclude[i]`` from row i (and key i's column
    loses that anchor): e.g. ``arange(B)`` drops the diagonal. ``mask`` (B, M),
    True = keep, drops more. A row or column with nothing kept gives -inf and a
    zero gradient. ``cols=False`` skips the column direction. Tiles are
    ``rows x width`` at most (:func:`tile_shape`). Runs in the inputs' dtype
    with autocast off.
    """
    rows, width = tile_shape(q.device, rows, width)
    with torch.autocast(q.device.type, enabled=False):
        return _SharedTileLSE.apply(q, k, exclude, mask, cols, rows, width)
