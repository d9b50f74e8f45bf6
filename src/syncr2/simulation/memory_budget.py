"""Token budgets for batched generation: batches sized so that memory cannot blow up.

Why: a fixed ``batch_size`` that is fine at turn 1 runs out of GPU memory at
turn 15, when every prompt carries the whole conversation. Llama-2-7B has no
grouped-query attention (32 KV heads), so its KV cache costs 0.5 MiB per token
per sequence in float16/bfloat16 and 1 MiB in float32: 25 prompts of 1,800
tokens plus 300 new tokens need ~55 GB of cache on top of ~27 GB of float32
weights, more than an 80 GB GPU has. Here the batch size follows from the
model's ``config.json`` (layers, KV heads, head dim, sizes), the dtype, the
prompt lengths, ``max_new_tokens`` and the memory available, and a long turn is
split into more batches instead of running out of memory.

Everything is plain integer arithmetic on the config (no weights are read);
``torch`` is imported only by :func:`available_memory` on CUDA.

Memory model of one batch (B prompts, left-padded to the longest, P tokens,
plus N = ``max_new_tokens``), an upper bound summed over the whole call:

* KV cache: ``B * (P + N) * kv_bytes_per_token`` (every row is padded to P,
  and the cache grows to P + N), plus one layer's worth of it again for the
  transient copy ``torch.cat`` makes when the cache grows by one token.
* Prefill activations: the prompt is processed in one forward pass (no
  chunking), and activations are freed between decoder blocks under
  ``inference_mode``, so the peak is one block's live tensors for all B * P
  tokens: the residual stream and its normed copy (2 * hidden) plus the larger
  of the attention phase (q, k, v projections, k and v repeated to all query
  heads for grouped-query attention, the attention output and the o-projection
  output) and the MLP phase (gate, up, act(gate) * up: 3 * intermediate, plus
  the down-projection output), all in the model dtype. This assumes SDPA
  (memory-efficient/flash kernels, the transformers default), which never
  materialises the P x P score matrix. With ``attention="eager"`` the scores
  ``n_heads * P * P`` are added per sequence, once in the dtype, once for the
  mask-added copy and once as the float32 softmax.
* Logits: generation keeps only the last position's logits (transformers
  passes ``logits_to_keep=1``) and samples from a float32 copy; temperature,
  top-k and top-p make further copies (the sort adds int64 indices), so
  :data:`LOGITS_FLOAT32_COPIES` float32 vocab-sized vectors per sequence are
  counted.
* Captured representations: the block-output hooks keep one float32 position
  per block per sequence (``n_layers * hidden * 4`` bytes).

The sum is compared with ``available_bytes * safety``; the safety fraction
absorbs what is not modelled (allocator fragmentation, cuBLAS workspaces,
small temporaries).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BYTES_PER_ELEMENT",
    "LOGITS_FLOAT32_COPIES",
    "ModelShape",
    "TokenBudget",
    "available_memory",
    "bytes_per_element",
    "kv_bytes_per_token",
    "plan_batches",
    "prefill_activation_bytes_per_token",
    "weight_bytes",
]

#: Bytes per element of the dtypes the models are run in.
BYTES_PER_ELEMENT: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}

#: Vocab-sized float32 vectors counted per sequence for sampling (the float32
#: logits and the copies made by temperature, top-k, top-p, softmax).
LOGITS_FLOAT32_COPIES = 8

_ATTENTION = ("sdpa", "eager")


def bytes_per_element(dtype: str) -> int:
    """Bytes per element of ``dtype`` (``float32``, ``bfloat16``, ``float16``; a ``torch.`` prefix is accepted)."""
    name = str(dtype).removeprefix("torch.")
    try:
        return BYTES_PER_ELEMENT[name]
    except KeyError:
        raise ValueError(f"dtype must be one of {sorted(BYTES_PER_ELEMENT)}, got {dtype!r}") from None


def _get(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``cfg[key]``, treating a missing key and an explicit null alike."""
    value = cfg.get(key)
    return default if value is None else value


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only (Llama/Mistral-style) model that decide its memory use.

    ``n_params`` is estimated from the other fields (:meth:`count_params`)
    when not given.
    """

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    n_params: int | None = None

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_size",
                     "intermediate_size", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelShape.{name} must be a positive int, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if self.n_params is None:
            object.__setattr__(self, "n_params", self.count_params())

    def count_params(self) -> int:
        """Parameter count from the shape.

        Token embeddings (vocab x hidden); per block the q and o projections
        (hidden x heads*head_dim each), the k and v projections (hidden x
        kv_heads*head_dim each: grouped-query attention), the gated MLP (gate,
        up, down: 3 x hidden x intermediate) and two RMSNorm weights; the final
        norm; the LM head unless tied to the embeddings. No biases (none in
        Llama/Mistral).
        """
        h, d = self.hidden_size, self.head_dim
        attn = 2 * h * self.n_heads * d + 2 * h * self.n_kv_heads * d
        mlp = 3 * h * self.intermediate_size
        block = attn + mlp + 2 * h
        embed = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return embed + self.n_layers * block + h + head

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | Any) -> ModelShape:
        """Read the usual Llama/Mistral ``config.json`` keys from a mapping or a ``transformers.PretrainedConfig``.

        ``num_key_value_heads`` defaults to ``num_attention_heads`` (no
        grouped-query attention, as in Llama-2-7B), ``head_dim`` to
        ``hidden_size // num_attention_heads``, ``tie_word_embeddings`` to
        False (the Llama/Mistral default). A multimodal config's
        ``text_config`` is used when present.
        """
        if not isinstance(cfg, Mapping):
            if not hasattr(cfg, "to_dict"):
                raise TypeError(f"expected a mapping or a transformers PretrainedConfig, got {type(cfg).__name__}")
            cfg = cfg.to_dict()
        if isinstance(cfg.get("text_config"), Mapping):
            cfg = cfg["text_config"]
        missing = [k for k in ("num_hidden_layers", "num_attention_heads", "hidden_size",
                               "intermediate_size", "vocab_size") if cfg.get(k) is None]
        if missing:
            raise ValueError(f"model config lacks {missing}")
        n_heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        return cls(
            n_layers=int(cfg["num_hidden_layers"]),
            n_heads=n_heads,
            n_kv_heads=int(_get(cfg, "num_key_value_heads", n_heads)),
            head_dim=int(_get(cfg, "head_dim", hidden // n_heads)),
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            vocab_size=int(cfg["vocab_size"]),
            tie_word_embeddings=bool(_get(cfg, "tie_word_embeddings", False)),
        )

    @classmethod
    def from_pretrained_dir(cls, path: str | Path) -> ModelShape:
        """Read ``config.json`` (only; no weights, no tokenizer) of a checkpoint directory."""
        file = Path(path) / "config.json"
        if not file.is_file():
            raise FileNotFoundError(f"no config.json in {path}")
        return cls.from_config(json.loads(file.read_text(encoding="utf-8")))


def kv_bytes_per_token(shape: ModelShape, dtype: str) -> int:
    """KV-cache bytes per token per sequence: 2 (K and V) x layers x KV heads x head dim x bytes."""
    return 2 * shape.n_layers * shape.n_kv_heads * shape.head_dim * bytes_per_element(dtype)


def weight_bytes(shape: ModelShape, dtype: str) -> int:
    """Bytes of the weights in ``dtype`` (parameter count x bytes per element)."""
    assert shape.n_params is not None
    return shape.n_params * bytes_per_element(dtype)


def prefill_activation_bytes_per_token(shape: ModelShape, dtype: str) -> int:
    """Peak live activation bytes per prompt token inside one decoder block during prefill (SDPA attention).

    Residual stream and normed input (2 x hidden) plus the larger of the
    attention phase (q, k, v; k and v repeated to all query heads; attention
    output; o-projection output) and the MLP phase (gate, up, their product:
    3 x intermediate; down-projection output). See the module docstring.
    """
    h, d = shape.hidden_size, shape.head_dim
    attn = (shape.n_heads + 2 * shape.n_kv_heads) * d + 2 * shape.n_heads * d + shape.n_heads * d + h
    mlp = 3 * shape.intermediate_size + h
    return (2 * h + max(attn, mlp)) * bytes_per_element(dtype)


def attention_scores_bytes(shape: ModelShape, dtype: str, prompt_len: int) -> int:
    """Eager attention only: the per-sequence P x P scores of one block (dtype, masked copy, float32 softmax)."""
    return shape.n_heads * prompt_len * prompt_len * (2 * bytes_per_element(dtype) + 4)


@dataclass(frozen=True)
class TokenBudget:
    """The memory a batch may use, and the bytes a batch needs under the module's memory model.

    ``budget_bytes = floor(available_bytes * safety)``. A batch of prompts
    (left-padded to the longest, P tokens) with ``max_new_tokens`` N needs
    ``len(batch) * sequence_bytes(P, N)``.
    """

    shape: ModelShape
    dtype: str
    available_bytes: int
    safety: float = 0.9
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        bytes_per_element(self.dtype)  # validates
        if not 0 < self.safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {self.safety}")
        if self.attention not in _ATTENTION:
            raise ValueError(f"attention must be one of {list(_ATTENTION)}, got {self.attention!r}")
        if int(self.available_bytes) <= 0:
            raise ValueError(f"available_bytes must be > 0, got {self.available_bytes}: no memory is left "
                             "for the KV cache (are the weights bigger than the limit?)")

    @property
    def budget_bytes(self) -> int:
        """Bytes a batch may use: ``floor(available_bytes * safety)``."""
        return math.floor(int(self.available_bytes) * self.safety)

    def sequence_bytes(self, prompt_len: int, max_new_tokens: int) -> int:
        """Bytes one sequence of a batch padded to ``prompt_len`` needs (KV cache + working memory)."""
        s, kv = self.shape, kv_bytes_per_token(self.shape, self.dtype)
        total_len = prompt_len + max_new_tokens
        cache = total_len * kv + total_len * (kv // s.n_layers)  # + one layer's transient copy
        act = prompt_len * prefill_activation_bytes_per_token(s, self.dtype)
        if self.attention == "eager":
            act += attention_scores_bytes(s, self.dtype, prompt_len)
        logits = s.vocab_size * 4 * LOGITS_FLOAT32_COPIES
        captured = s.n_layers * s.hidden_size * 4
        return cache + act + logits + captured

    def batch_bytes(self, prompt_lengths: Sequence[int], max_new_tokens: int) -> int:
        """Bytes a batch of these prompts needs: its size x :meth:`sequence_bytes` of its longest prompt."""
        if not prompt_lengths:
            return 0
        return len(prompt_lengths) * self.sequence_bytes(max(prompt_lengths), max_new_tokens)

    def fits(self, prompt_lengths: Sequence[int], max_new_tokens: int) -> bool:
        """Whether the batch's bytes are within :attr:`budget_bytes`."""
        return self.batch_bytes(prompt_lengths, max_new_tokens) <= self.budget_bytes

    def max_batch_size(self, prompt_len: int, max_new_tokens: int) -> int:
        """Most sequences padded to ``prompt_len`` that fit; raises if not even one does."""
        need = self.sequence_bytes(prompt_len, max_new_tokens)
        n = self.budget_bytes // need
        if n < 1:
            raise ValueError(
                f"a prompt of {prompt_len} tokens with max_new_tokens={max_new_tokens} needs {need:,} bytes "
                f"({need / 1e9:.2f} GB: KV cache {kv_bytes_per_token(self.shape, self.dtype):,} bytes/token in "
                f"{self.dtype} plus working memory) but only {self.budget_bytes:,} bytes "
                f"({self.budget_bytes / 1e9:.2f} GB = {int(self.available_bytes):,} available x safety "
                f"{self.safety}) are available; use dtype bfloat16, fewer max_new_tokens, shorter prompts "
                "or a bigger GPU (or a higher memory limit)")
        return n

    def plan(self, prompt_lengths: Sequence[int], max_new_tokens: int,
             max_batch: int | None = None) -> list[list[int]]:
        """Group prompt indices into batches; see :func:`plan_batches`."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {max_batch}")
        lengths = [int(n) for n in prompt_lengths]
        bad = [n for n in lengths if n < 1]
        if bad:
            raise ValueError(f"prompt lengths must be >= 1 token, got {bad[:5]}")
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        batches: list[list[int]] = []
        start = 0
        while start < len(order):
            size = self.max_batch_size(lengths[order[start]], max_new_tokens)
            if max_batch is not None:
                size = min(size, max_batch)
            batches.append(order[start:start + size])
            start += size
        return batches


def plan_batches(prompt_lengths: Sequence[int], max_new_tokens: int, shape: ModelShape, dtype: str,
                 available_bytes: int, max_batch: int | None = None, safety: float = 0.9,
                 *, attention: str = "sdpa") -> list[list[int]]:
    """Indices of the prompts grouped into batches that each fit ``available_bytes * safety``.

    Prompts are sorted by length, longest first (ties by index), so the most
    demanding batch runs first (a misconfiguration fails at once) and each
    batch pads little. Each batch is then the longest run of the remaining
    sorted prompts that fits the budget (:class:`TokenBudget`) and has at
    most ``max_batch`` prompts. Indices inside a batch are in that sorted order.

    Property (greedy-tight): every batch fits, and no batch could take the
    next prompt of the following batch -- adding it, or merging two
    consecutive batches, would exceed the budget or ``max_batch``. Because a
    sub-run of a fitting run also fits, this is the fewest batches among
    plans that keep the length order contiguous.

    Raises ``ValueError`` naming the prompt length, the bytes needed and the
    bytes available when a single prompt cannot fit alone.
    """
    budget = TokenBudget(shape, dtype, available_bytes, safety=safety, attention=attention)
    return budget.plan(prompt_lengths, max_new_tokens, max_batch=max_batch)


def available_memory(device: Any, limit_bytes: int | None, weights_bytes: int) -> int:
    """Bytes available for the KV cache and working memory of generation, on ``device``.

    On CUDA: the free device memory reported by ``torch.cuda.mem_get_info``,
    plus what PyTorch's caching allocator holds reserved but unused (it is
    reusable by this process). Call it after the weights are loaded: they are
    then already out of the free memory, so ``weights_bytes`` is not
    subtracted. If ``limit_bytes`` is also given, it is a cap on the whole
    run's memory including the weights, and the result is
    ``min(free, limit_bytes - weights_bytes)``.

    On any other device (CPU, MPS) free memory is not measured: ``limit_bytes``
    is required and the result is ``limit_bytes - weights_bytes``.
    """
    dev_type = getattr(device, "type", None) or str(device).split(":")[0]
    budget_from_limit = None
    if limit_bytes is not None:
        budget_from_limit = int(limit_bytes) - int(weights_bytes)
        if budget_from_limit <= 0:
            raise ValueError(f"memory limit {int(limit_bytes):,} bytes leaves nothing after the weights "
                             f"({int(weights_bytes):,} bytes); raise the limit or use dtype bfloat16")
    if dev_type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        free = int(free) + max(0, int(cached))
        return free if budget_from_limit is None else min(free, budget_from_limit)
    if budget_from_limit is None:
        raise ValueError(f"a memory limit (limit_bytes) is required on device {str(device)!r}: "
                         "free memory is only measured on CUDA")
    return budget_from_limit
