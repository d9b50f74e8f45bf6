"""Ridge R2 grids under permuted targets: the real grid and R null grids of one split, on one factorisation.

The surrogate null (docs/analyses.md, "Surrogate null") moves only TARGET
rows, inside the train part and inside the test part. If train row i takes
the target of train row ``p_tr[i]`` and test row k that of test row
``p_te[k]``, the residual equals that of the hat matrix
``H[inv(p_te)][:, inv(p_tr)]`` on the unpermuted targets, and its ``H^T H``
term is ``(H^T H)[inv(p_tr)][:, inv(p_tr)]``. The train mean and the test sums
of squares do not change, so each source layer's :func:`~.ridge.hat_matrix`
and every target layer's Gram terms (:func:`~.ridge.stacked_target_terms`)
are computed once; a draw costs two gathers per source layer and one matrix
product over the target layers. ``H^T H`` and ``Z Z^T`` are symmetric: only
their upper triangles are gathered and multiplied, off-diagonal terms
weighted 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .ridge import LayerStreams, hat_matrix, layer_tensor, split_tensors, stacked_target_terms

#: Gathered hat matrices of one chunk of permutations stay below this many bytes.
DEFAULT_CHUNK_BYTES = 256 * 2**20
#: The flat gather indices of all draws are kept across source layers below this many bytes.
DEFAULT_INDEX_BYTES = 1024 * 2**20


def check_permutations(train_perms: np.ndarray, test_perms: np.ndarray, n_tr: int, n_te: int) -> None:
    """Raise ValueError unless the rows are permutations of the train and test positions, R of each."""
    if train_perms.ndim != 2 or train_perms.shape[1] != n_tr:
        raise ValueError(f"train_perms must have shape (R, {n_tr}), got {train_perms.shape}")
    if test_perms.ndim != 2 or test_perms.shape != (train_perms.shape[0], n_te):
        raise ValueError(f"test_perms must have shape ({train_perms.shape[0]}, {n_te}), got {test_perms.shape}")
    for what, p, m in (("train_perms", train_perms, n_tr), ("test_perms", test_perms, n_te)):
        if not (np.sort(p, axis=1) == np.arange(m)).all():
            raise ValueError(f"every row of {what} must be a permutation of 0..{m - 1}")


class PermutedGathers:
    """Flat gather indices of the permuted hat matrices, a chunk of draws at a time.

    Indexing the flattened H and H^T H with flat indices built once per draw is
    far faster on CPU than torch's two-axis fancy indexing (and numpy's take
    beats torch's there). The indices of all draws are kept across source
    layers when they fit in ``index_bytes``.
    """

    def __init__(self, train_perms: np.ndarray, test_perms: np.ndarray, dev: torch.device,
                 chunk_bytes: int, index_bytes: int) -> None:
        n_perm, self.n_tr = train_perms.shape
        n_te = test_perms.shape[1]
        # H' = H[inv(p_te)][:, inv(p_tr)]: inverse permutations index the hat matrix
        self.inv_tr = torch.as_tensor(np.argsort(train_perms, axis=1), device=dev)
        self.inv_te = torch.as_tensor(np.argsort(test_perms, axis=1), device=dev)
        self.tri_i, self.tri_j = torch.triu_indices(self.n_tr, self.n_tr, device=dev)
        self.tri_flat = self.tri_i * self.n_tr + self.tri_j
        self.tri_weight = torch.where(self.tri_i == self.tri_j, 1.0, 2.0).to(torch.float64)
        per_draw = 8 * (n_te * self.n_tr + self.tri_flat.numel())  # gathered values, and alike their int64 indices
        self.chunk = max(1, min(n_perm, int(chunk_bytes // per_draw)))
        self.starts = range(0, n_perm, self.chunk)
        self.keep = n_perm * per_draw <= index_bytes
        self.cached: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def indices(self, lo: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices into H and into H^T H of the draws ``lo .. lo + chunk``."""
        if lo in self.cached:
            return self.cached[lo]
        it, ie, n_tr = self.inv_tr[lo:lo + self.chunk], self.inv_te[lo:lo + self.chunk], self.n_tr
        if it.device.type == "cpu":
            it_np, ie_np = it.numpy(), ie.numpy()
            flat_hat = torch.from_numpy((ie_np[:, :, None] * n_tr + it_np[:, None, :]).reshape(len(it_np), -1))
            sq_np = np.take(it_np, self.tri_i.numpy(), axis=1)
            sq_np *= n_tr
            sq_np += np.take(it_np, self.tri_j.numpy(), axis=1)
            flat_sq = torch.from_numpy(sq_np)
        else:
            flat_hat = (ie[:, :, None] * n_tr + it[:, None, :]).reshape(it.shape[0], -1)  # H[inv_te][:, inv_tr]
            flat_sq = it[:, self.tri_i] * n_tr + it[:, self.tri_j]  # upper triangle of S[inv_tr][:, inv_tr]
        if self.keep:
            self.cached[lo] = (flat_hat, flat_sq)
        return flat_hat, flat_sq


def take_flat(m: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """``m.reshape(-1)[flat]``; on CPU through numpy's take (zero-copy views), several times faster."""
    if m.device.type != "cpu":
        return torch.take(m, flat)
    return torch.from_numpy(np.take(m.contiguous().numpy().reshape(-1), flat.numpy()))


def permuted_r2_grids(
    streams: LayerStreams,
    train_idx: Sequence[int] | np.ndarray,
    test_idx: Sequence[int] | np.ndarray,
    train_perms: np.ndarray,
    test_perms: np.ndarray,
    alpha: float = 0.1,
    device: str | torch.device | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    index_bytes: int = DEFAULT_INDEX_BYTES,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The real R2 grid (L_A, L_B) and the R null grids (R, L_A, L_B) of one split.

    Draw r gives train row ``train_idx[i]`` the target of row
    ``train_idx[train_perms[r, i]]`` and test row ``test_idx[k]`` that of
    ``test_idx[test_perms[r, k]]``; sources stay put. Each null grid equals
    :func:`~.ridge.layer_pair_r2_streamed` on the physically permuted targets.
    Draws are processed in chunks whose gathered matrices stay below
    ``chunk_bytes``; see :class:`PermutedGathers` for ``index_bytes``.
    """
    first, train, test = split_tensors(streams.target, train_idx, test_idx, alpha, device)
    n, dev = first.shape[0], train.device
    train_perms = np.asarray(train_perms, dtype=np.int64)
    test_perms = np.asarray(test_perms, dtype=np.int64)
    check_permutations(train_perms, test_perms, train.numel(), test.numel())
    n_perm = train_perms.shape[0]
    gathers = PermutedGathers(train_perms, test_perms, dev, chunk_bytes, index_bytes)
    terms = stacked_target_terms(streams.target, streams.n_target, train, test, first=first,
                                 gram_positions=gathers.tri_flat, gram_weight=gathers.tri_weight)
    del first
    real = torch.empty((streams.n_source, streams.n_target), dtype=torch.float64, device=dev)
    null = torch.empty((n_perm, streams.n_source, streams.n_target), dtype=torch.float64, device=dev)
    chunk = gathers.chunk
    for a in tqdm(range(streams.n_source), desc="source layers", disable=not progress, leave=False):
        hat = hat_matrix(layer_tensor(streams.source(a), n, f"source layer {a}", dev), train, test, alpha).contiguous()
        sq = hat.T @ hat
        real[a] = terms.r2(hat.reshape(-1), sq.reshape(-1)[gathers.tri_flat])
        for lo in gathers.starts:
            flat_hat, flat_sq = gathers.indices(lo)
            hats, sqs = take_flat(hat, flat_hat), take_flat(sq, flat_sq)
            null[lo:lo + chunk, a] = terms.r2(hats.T, sqs.T).T
            del hats, sqs
    return real.cpu().numpy(), null.cpu().numpy()
