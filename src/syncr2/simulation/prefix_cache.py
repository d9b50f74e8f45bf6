"""Key/value caches kept between turns, so a prompt's shared prefix is computed once.

Why: an agent's prompt at turn t+2 starts with its whole prompt at turn t up
to the end of the dialogue (only the closing instructions differ), so
re-reading every prompt from its first token makes the prefill the main cost
of a simulation. :class:`PrefixStore` keeps, per key (an episode's agent), the
prompt's token ids and the key/value tensors every attention layer computed
for them; the next prompt of that key reuses the longest common token prefix
and only the rest is computed (docs/protocol.md, "Prefix reuse").

Exactness: a causal model's keys and values at position p depend on tokens
0..p only, and the reused positions keep their position ids, so the reused
tensors are the ones a full prefill would compute (up to float rounding of a
differently shaped batch). Rows of one batch stay contiguous and left-padded:
a batch computes the same number ``S`` of trailing tokens in every row (the
most any row needs), so a row reuses ``len(prompt) - S`` of its cached tokens
at most; attention masks, position ids and sliding windows are then exactly
those of a plain left-padded batch.

The tensors stay on the model's device; :attr:`PrefixStore.nbytes` is what
the token-budget planner subtracts from the memory a batch may use, and
:meth:`PrefixStore.evict_to` drops the largest entries when it must.

:func:`growing_cache` is the cache a batch decodes into: transformers'
dynamic layers copy the whole cache at every decode step (``torch.cat``),
which on a long prompt moves more bytes than the weights; a
:class:`GrowingLayer` writes each step into a buffer that doubles when full.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicLayer

log = logging.getLogger(__name__)


@dataclass
class KeptPrefix:
    """One key's prompt tokens and per-layer key/value tensors, each (kv_heads, n_tokens, head_dim)."""

    ids: list[int]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values are views of a buffer that doubles when full.

    Attention sees exactly the tensors a ``DynamicLayer`` would return (in a
    larger allocation). A layer whose ``keys`` were replaced from outside
    (``crop``, batch selection) is re-buffered from them at its next update.
    """

    def __init__(self) -> None:
        super().__init__()
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = self.get_seq_length()
        if self._k is None or self.keys.data_ptr() != self._k.data_ptr() or self.keys.shape[-2] != n:
            self._k = self._v = None  # keys replaced from outside: re-buffer them
        need = n + key_states.shape[-2]
        if self._k is None or need > self._k.shape[-2]:
            cap = max(need, 2 * n, 64)
            k = key_states.new_empty((*key_states.shape[:-2], cap, key_states.shape[-1]))
            v = value_states.new_empty((*value_states.shape[:-2], cap, value_states.shape[-1]))
            if n:
                k[..., :n, :] = self.keys
                v[..., :n, :] = self.values
            self._k, self._v = k, v
        assert self._v is not None
        self._k[..., n:need, :] = key_states
        self._v[..., n:need, :] = value_states
        self.keys, self.values = self._k[..., :need, :], self._v[..., :need, :]
        return self.keys, self.values


def growing_cache(data: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()) -> object:
    """A transformers ``DynamicCache`` of :class:`GrowingLayer` layers, filled with ``data`` (per layer (K, V))."""
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layer_class_to_replicate = GrowingLayer
    for layer, (k, v) in enumerate(data):
        cache.update(k, v, layer)
    return cache


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token-id sequences."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass(frozen=True)
class BatchLayout:
    """How one left-padded batch splits into reused columns and computed columns.

    ``width`` W is the longest prompt; ``computed`` S is the number of trailing
    columns the forward pass computes (the same for every row); the first
    ``W - S`` columns come from kept caches (``reused[r]`` of them real tokens
    of row r, the rest padding). ``lengths`` are the rows' prompt lengths.
    """

    width: int
    computed: int
    reused: tuple[int, ...]
    lengths: tuple[int, ...]

    @property
    def cached_width(self) -> int:
        """Columns supplied by the cache (``W - S``)."""
        return self.width - self.computed


class PrefixStore:
    """Kept key/value caches by key; see the module docstring."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, KeptPrefix] = {}
        self.reused_tokens = 0
        self.computed_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes of all kept tensors."""
        return sum(e.nbytes for e in self._entries.values())

    def reusable(self, key: Hashable | None, ids: Sequence[int]) -> int:
        """Tokens of ``ids`` that ``key``'s kept prefix covers (at most ``len(ids) - 1``: one token must run)."""
        entry = self._entries.get(key) if key is not None else None
        if entry is None:
            return 0
        return min(common_prefix_length(entry.ids, ids), len(ids) - 1)

    def layout(self, keys: Sequence[Hashable | None], ids: Sequence[Sequence[int]]) -> BatchLayout:
        """The batch layout of these rows (:class:`BatchLayout`)."""
        lengths = [len(r) for r in ids]
        width = max(lengths)
        common = [self.reusable(k, r) for k, r in zip(keys, ids)]
        computed = max(n - c for n, c in zip(lengths, common))
        return BatchLayout(width, computed, tuple(max(0, n - computed) for n in lengths), tuple(lengths))

    def past(self, keys: Sequence[Hashable | None], layout: BatchLayout, n_layers: int) -> object:
        """A transformers ``DynamicCache`` holding the reused columns of the batch (left-padded with zeros).

        Every layer is a full (non-sliding) :class:`GrowingLayer`, so what the batch
        computes can be kept for the next turn whole; sliding-window models
        still attend within their window, through their masks.
        """
        width = layout.cached_width
        if width == 0:
            return growing_cache()
        data = []
        for layer in range(n_layers):
            ref = self._reference(layer)
            shape = (len(keys), ref.shape[0], width, ref.shape[2])
            k, v = ref.new_zeros(shape), ref.new_zeros(shape)  # padding columns stay zero (masked)
            for r, (key, n) in enumerate(zip(keys, layout.reused)):
                if n > 0:
                    entry = self._entries[key]
                    k[r, :, width - n:] = entry.keys[layer][:, :n]
                    v[r, :, width - n:] = entry.values[layer][:, :n]
            data.append((k, v))
        return growing_cache(data)

    def _reference(self, layer: int) -> torch.Tensor:
        """Any kept key tensor of ``layer`` (for the shape, dtype and device of padding)."""
        return next(iter(self._entries.values())).keys[layer]

    def keep(self, keys: Sequence[Hashable | None], ids: Sequence[Sequence[int]], cache: object, width: int) -> None:
        """Keep each keyed row's prompt columns (the last ``len(ids[r])`` of the first ``width``) of ``cache``."""
        layers = cache.layers  # type: ignore[attr-defined]
        for r, (key, row) in enumerate(zip(keys, ids)):
            if key is None:
                continue
            start = width - len(row)
            self._entries[key] = KeptPrefix(
                ids=list(row),
                keys=[layer.keys[r, :, start:width].clone() for layer in layers],
                values=[layer.values[r, :, start:width].clone() for layer in layers],
            )

    def count(self, layout: BatchLayout) -> None:
        """Add one batch's reused and computed token counts to the running totals."""
        self.reused_tokens += sum(layout.reused)
        self.computed_tokens += sum(n - c for n, c in zip(layout.lengths, layout.reused))

    def forget(self, keys: Sequence[Hashable]) -> None:
        """Drop these keys' entries (an episode that ended)."""
        for key in keys:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()

    def evict_to(self, max_bytes: int) -> int:
        """Drop the largest entries until at most ``max_bytes`` are kept; returns how many were dropped."""
        kept = self.nbytes
        if kept <= max_bytes:
            return 0
        dropped = 0
        for key, entry in sorted(self._entries.items(), key=lambda kv: -kv[1].nbytes):
            if kept <= max_bytes:
                break
            kept -= entry.nbytes
            del self._entries[key]
            dropped += 1
        log.info("prefix caches: dropped %d entries to keep %.2f GB", dropped, max_bytes / 1e9)
        return dropped
