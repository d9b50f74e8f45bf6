"""JSON-schema constrained decoding for the local judge, with llguidance.

A judge reply must be one JSON object whose integers lie in Sotopia's
ranges. :class:`JSONSchemaConstraint` compiles a JSON schema once per
tokenizer into an llguidance grammar (``LLMatcher.grammar_from_json_schema``
over ``llguidance.hf.from_tokenizer``); :meth:`JSONSchemaConstraint.processor`
gives a transformers ``LogitsProcessor`` for one ``generate`` call that keeps
one ``LLMatcher`` per batch row, feeds it each row's newly chosen token, and
sets the logits of every token the grammar forbids to ``-inf``. When a row's
JSON is complete the matcher allows only EOS, so generation ends by itself.

Why llguidance (docs/analyses.md, "Backends"): it enforces integer minimum/maximum,
emits strictly valid JSON and has no dependencies. Its ``llguidance.torch``
helpers are not imported: that module ``torch.compile``s its mask kernel at
import (slow, warnings, a compiler on CPU). The matcher writes each row's
bitmask straight into a CPU int32 tensor (``unsafe_compute_mask_ptr``, what
``llguidance.torch.fill_next_token_bitmask`` does) and the bitmask is
unpacked here with plain tensor ops.

JSON whitespace is not free (``whitespace_flexible`` off, separators ``", "``
and ``": "``): a weak model could otherwise emit whitespace forever.
llguidance is imported lazily: only constrained decoding needs it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import LogitsProcessor

logger = logging.getLogger(__name__)

LLGUIDANCE_PIN = "llguidance==1.9.1"

#: JSON compiler options that always apply (the schema's own ``x-guidance`` may not loosen them).
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def require_llguidance() -> Any:
    """The ``llguidance`` module, or an ImportError that says how to install it."""
    try:
        import llguidance
        import llguidance.hf  # noqa: F401  (needs transformers, which we have)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "constrained decoding (judge.constrained: true) needs llguidance: "
            f"pip install 'syncr2[judge-local]' (or pip install {LLGUIDANCE_PIN})"
        ) from exc
    return llguidance


def llguidance_version() -> str:
    """The installed llguidance version (recorded with the backend parameters)."""
    return str(require_llguidance().__version__)


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(B, ceil(V/32)) int32 bitmask -> (B, V) bool "allowed" mask, on the bitmask's device.

    Bit j of word w allows token 32 * w + j (llguidance's layout).
    """
    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(bitmask.shape[0], -1)[:, :vocab_size].bool()


class JSONSchemaConstraint:
    """A JSON schema compiled for one tokenizer; builds per-call logits processors.

    ``vocab_size`` is the width of the model's logits (it may exceed the
    tokenizer's length); ``eos_ids`` the token ids that end generation (the
    matcher allows them once the JSON is complete). Raises ValueError when
    llguidance rejects the schema.
    """

    def __init__(self, tokenizer: Any, schema: Mapping[str, Any], vocab_size: int, eos_ids: Sequence[int]) -> None:
        llg = require_llguidance()
        import llguidance.hf

        self.schema = dict(schema)
        self.vocab_size = int(vocab_size)
        self.eos_ids = [int(i) for i in eos_ids]
        if not self.eos_ids:
            raise ValueError("constrained decoding needs at least one EOS token id")
        self.ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=self.vocab_size, eos_token=self.eos_ids)
        self.grammar = llg.LLMatcher.grammar_from_json_schema(json.dumps(self.schema), overrides=JSON_OPTIONS)
        is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(self.grammar, self.ll_tokenizer)
        if is_error:
            raise ValueError(f"llguidance rejects the judge JSON schema: {messages[0] if messages else 'unknown error'}")
        for m in messages:
            logger.warning("llguidance: %s", m)

    def matcher(self) -> Any:
        """A fresh matcher at the start of the grammar."""
        llg = require_llguidance()
        m = llg.LLMatcher(self.ll_tokenizer, self.grammar, log_level=0)
        if m.is_error():
            raise ValueError(f"llguidance matcher error: {m.get_error()}")
        return m

    def processor(self, batch_size: int, prompt_len: int) -> JSONSchemaLogitsProcessor:
        """A logits processor for one ``generate`` call over ``batch_size`` rows padded to ``prompt_len``."""
        return JSONSchemaLogitsProcessor(self, batch_size, prompt_len)


class JSONSchemaLogitsProcessor(LogitsProcessor):
    """Masks each row's logits to what its matcher allows; see the module docstring.

    A row is done once it has produced an EOS id; later steps of that row
    (which ``generate`` fills with padding) are left alone. A matcher that
    enters an error state (it should not, since only allowed tokens can be
    chosen) is logged and the row is forced to EOS, so the reply stays
    invalid JSON rather than looping; ``errors`` keeps the messages per row.
    """

    def __init__(self, constraint: JSONSchemaConstraint, batch_size: int, prompt_len: int) -> None:
        self.constraint = constraint
        self.prompt_len = int(prompt_len)
        self.matchers = [constraint.matcher() for _ in range(batch_size)]
        self.done = [False] * batch_size
        self.errors: list[str | None] = [None] * batch_size
        self.bitmask = torch.full((batch_size, (constraint.vocab_size + 31) // 32), -1, dtype=torch.int32)
        self._eos = set(constraint.eos_ids)

    def _consume_last(self, input_ids: torch.Tensor) -> None:
        last = input_ids[:, -1].tolist()
        for r, tok in enumerate(last):
            if self.done[r]:
                continue
            if tok in self._eos:
                self.done[r] = True
                continue
            m = self.matchers[r]
            if self.errors[r] is None and not m.consume_token(int(tok)):
                self.errors[r] = m.get_error() or f"token {tok} rejected"
                logger.warning("constrained decoding, row %d: %s; forcing EOS", r, self.errors[r])

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.prompt_len:
            self._consume_last(input_ids)
        if scores.shape[-1] < self.constraint.vocab_size:
            raise ValueError(f"logits have {scores.shape[-1]} entries, the constraint expects {self.constraint.vocab_size}")
        self.bitmask.fill_(-1)
        eos_only = torch.zeros(scores.shape[-1], dtype=torch.bool)
        eos_only[self.constraint.eos_ids] = True
        force_eos: list[int] = []
        for r, m in enumerate(self.matchers):
            if self.done[r]:
                continue
            if self.errors[r] is not None:
                force_eos.append(r)
                continue
            row = self.bitmask[r]  # a contiguous CPU row of the (B, W) int32 tensor
            m.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * row.element_size())
        allowed = unpack_bitmask(self.bitmask.to(scores.device, non_blocking=True), self.constraint.vocab_size)
        if scores.shape[-1] > self.constraint.vocab_size:  # logits beyond the constraint's vocabulary: never allowed
            extra = torch.zeros(scores.shape[0], scores.shape[-1] - self.constraint.vocab_size, dtype=torch.bool,
                                device=scores.device)
            allowed = torch.cat([allowed, extra], dim=1)
        if force_eos:
            allowed[force_eos] = eos_only.to(scores.device)
        if any(self.done):  # finished rows are padded by generate; leave their logits unmasked
            allowed[[r for r, d in enumerate(self.done) if d]] = True
        return scores.masked_fill(~allowed, float("-inf"))
