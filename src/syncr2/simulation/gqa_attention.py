"""Grouped-query decode attention without repeated K/V, as a transformers attention function.

Llama-3 and Mistral share each key/value head among ``n_rep`` query heads
(grouped-query attention). transformers' stock SDPA path can hand that to
PyTorch only when there is no attention mask; our batches are left-padded,
so it copies every K/V head ``n_rep`` times (``repeat_kv``) on every decode
step, for every layer: 4x the KV cache's bytes moved per generated token on
Llama-3-8B, in a phase bound by memory traffic.

:func:`grouped_decode_attention` computes the one-query decode step with
the query heads viewed as (kv heads, n_rep): scores ``q @ K^T`` against the
shared K, softmax in float32, then ``p @ V``, reading each K/V head once.
Prefill (more than one query position) and models without grouping go to
transformers' own SDPA function unchanged. It is registered through
transformers' extension points (``AttentionInterface`` and, so that masks
are built in SDPA's format, ``AttentionMaskInterface``) under
:data:`ATTENTION_NAME`; ``LMConfig.attn_implementation`` selects it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: The name the attention function is registered under (``attn_implementation``).
ATTENTION_NAME = "syncr2_gqa"


def grouped_decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention output (batch, q_len, heads, head_dim), as transformers' attention functions return it.

    ``query`` is (batch, heads, q_len, head_dim), ``key``/``value`` (batch,
    kv_heads, kv_len, head_dim); query head ``j`` uses K/V head ``j // n_rep``
    (the layout ``repeat_kv`` produces). The mask is SDPA's: boolean (True =
    attend) or additive float, broadcastable to (batch, 1, q_len, kv_len).
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = int(getattr(module, "num_key_value_groups", 1))
    per_head_mask = attention_mask is not None and attention_mask.ndim == 4 and attention_mask.shape[1] != 1
    if (query.shape[2] != 1 or groups == 1 or dropout > 0.0 or kwargs.get("position_bias") is not None
            or kwargs.get("output_attentions", False) or per_head_mask):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    batch, heads, _, dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    if heads != kv_heads * groups:
        raise ValueError(f"{heads} query heads are not {kv_heads} K/V heads x {groups} groups")
    scale = 1.0 / math.sqrt(dim) if scaling is None else scaling
    q = query.reshape(batch, kv_heads, groups, dim)
    acc = torch.promote_types(query.dtype, torch.float32)  # softmax in float32 at least
    scores = torch.matmul(q, key.transpose(-1, -2)).to(acc) * scale  # (batch, kv_heads, groups, kv_len)
    if attention_mask is not None:
        mask = attention_mask[..., -kv_len:].reshape(attention_mask.shape[0], 1, 1, kv_len)
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(acc)
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(probs, value)  # (batch, kv_heads, groups, head_dim)
    return out.reshape(batch, 1, heads, dim), None


def register() -> str:
    """Register the attention function and its mask format with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

    if ATTENTION_NAME not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    AttentionInterface.register(ATTENTION_NAME, grouped_decode_attention)
    return ATTENTION_NAME
