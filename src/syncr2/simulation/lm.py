"""One chat model: render prompts, generate replies, record block outputs.

:class:`ChatLM` wraps any Hugging Face causal-LM checkpoint (a directory or a
hub id), loaded only through ``AutoTokenizer.from_pretrained`` and
``AutoModelForCausalLM.from_pretrained``; the tiny models of
:mod:`syncr2.simulation.tiny_models` take exactly the same path as Mistral-7B or
Llama-3-8B.

Representations (docs/protocol.md, "Capture"): for every decoder block l = 1..L, the
block's output -- the residual stream after block l, BEFORE the final norm --
at the last prompt token, the position whose logits give the first generated
token. They are taken with forward hooks on the decoder blocks, never from
``output_hidden_states`` (whose last entry has the final norm applied for
Llama/Mistral). Prompts are left-padded, so the last position of every row is
its last prompt token; position ids are ``cumsum(attention_mask) - 1`` so that
a padded row computes exactly what it computes alone.

Sampling (:meth:`ChatLM.generate`): ``model.generate`` runs greedy and a
:class:`RowGumbelSampler` logits processor turns it into sampling -- the
temperature / top-k / top-p warpers of transformers, in transformers' order,
then Gumbel noise from ONE seeded generator per row: argmax(logits / T + G),
G ~ Gumbel(0, 1), is a draw from softmax(logits / T). A row's reply is thus a
function of its prompt, its seed and the settings, not of the batch it shares.

Prompts are rendered with a fixed date (``LMConfig.date_string``): Llama-3.x
chat templates write "today" into every prompt, through the ``date_string``
variable or the ``strftime_now`` function; both are pinned, so a genuine run
and a later passive re-read see the same prompt text.

GPU notes: the model is placed once (``device_map`` straight onto the GPU
when ``accelerate`` is installed, else loaded on the host and moved), every
call runs under ``torch.inference_mode()``, the hooks keep a small float32
copy of one position per block on the device and the batch's (B, L, D) block
is copied to the host once per batch. ``capture`` runs the decoder stack
without the LM head (no (B, T, V) logits).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.device import resolve_device
from .prefix_cache import BatchLayout, PrefixStore

log = logging.getLogger(__name__)

#: The date written into prompts by templates that show "today" (the Llama-3.2 template's own default).
DEFAULT_DATE_STRING = "26 Jul 2024"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: Local checkpoints whose weight files total at most this many bytes are
#: identified by a hash of their contents; larger ones by names and sizes.
SMALL_CHECKPOINT_BYTES = 256 * 1024 * 1024

#: The file a checkpoint converted from GGUF records its source in (``{"gguf_sha256": ...}``).
GGUF_SOURCE_FILE = "syncr2_source.json"


@dataclass
class LMConfig:
    """How to load and run one model.

    ``top_k`` / ``top_p`` left at None follow ``model.generate``'s own
    behaviour: the checkpoint's ``generation_config.json`` (Llama-3-Instruct
    sets top_p 0.9), else the library defaults (top_k 50, top_p 1.0). That is
    what a plain ``generate(do_sample=True, temperature=0.7)`` did in the
    authors' runs; :meth:`ChatLM.generation_settings` records the values in
    force. ``temperature <= 0`` means greedy decoding. ``date_string`` is the
    date chat templates see as today (``%d %b %Y``, e.g. "26 Jul 2024").
    ``batch_size`` only affects speed and memory, never the sampled text.
    ``memory_limit_gb`` caps the memory a batch may use (weights included);
    on CUDA the free device memory caps it anyway (:meth:`ChatLM.plan_batches`).
    ``special_tokens``: ``template`` (a rendered prompt that starts with the
    BOS text gets no second one) or ``always`` (the tokenizer's special tokens
    are added whatever the text, as the authors' ``tokenizer.encode`` did).
    ``attn_implementation`` None selects :mod:`syncr2.simulation.gqa_attention`
    (decode steps of grouped-query models without repeated K/V; prefill is
    SDPA); ``sdpa`` or ``eager`` select transformers' own. ``tf32`` lets CUDA
    run float32 matmuls in TF32; the recorded dtype then reads ``float32+tf32``.
    ``prefix_reuse`` keeps each keyed prompt's key/value cache for the next
    prompt of the same key (:mod:`syncr2.simulation.prefix_cache`); it changes
    speed, never a token, so it is no rerun trigger.
    """

    path: str
    revision: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    chat_template: str | None = None
    batch_size: int = 8
    max_new_tokens: int = 300
    temperature: float = 0.7
    attn_implementation: str | None = None
    top_k: int | None = None
    top_p: float | None = None
    stop_at_newline: bool = False
    date_string: str = DEFAULT_DATE_STRING
    memory_limit_gb: float | None = None
    special_tokens: str = "template"
    tf32: bool = False
    prefix_reuse: bool = True

    def __post_init__(self) -> None:
        if self.special_tokens not in ("template", "always"):
            raise ValueError(f"special_tokens must be 'template' or 'always', got {self.special_tokens!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")
        fixed_date(self.date_string)  # fail at configuration time on a malformed date

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> LMConfig:
        """Build from a config mapping, ignoring keys that are not LMConfig fields (e.g. ``family``, ``build``)."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in {**d, **overrides}.items() if k in names}
        return cls(**kw)


@dataclass
class GenerationResult:
    """Replies and speaker representations of one :meth:`ChatLM.generate` call (rows in prompt order).

    ``n_new_tokens`` counts generated tokens up to and including the one that
    ended the reply (EOS or, with ``stop_at_newline``, the newline token).
    ``finish_reasons``: "eos", "newline" or "length" (``max_new_tokens`` reached).
    """

    texts: list[str]
    reps: np.ndarray
    n_prompt_tokens: np.ndarray
    n_new_tokens: np.ndarray
    finish_reasons: list[str]
    settings: dict[str, Any] = field(default_factory=dict)


def fixed_date(date_string: str) -> datetime:
    """``date_string`` ("26 Jul 2024", the format Llama-3.x templates print) as a datetime."""
    try:
        return datetime.strptime(date_string, "%d %b %Y")
    except ValueError as exc:
        raise ValueError(f"date_string must look like '26 Jul 2024' (%d %b %Y), got {date_string!r}") from exc


def row_seed(*parts: Any) -> int:
    """A 63-bit seed from a hash of ``parts`` (JSON-serialisable), stable across runs and platforms."""
    digest = hashlib.sha256(json.dumps(list(parts), separators=(",", ":")).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class RowGumbelSampler:
    """Sampling as greedy decoding: warp the logits, add Gumbel noise from each row's own generator.

    The warpers are transformers' own (temperature, then top-k, then top-p:
    the order ``generate(do_sample=True)`` applies them), so filtered tokens are
    at -inf before the noise is added and can never win the argmax. The noise
    for row r at every step is V float64 uniforms from generator r, drawn
    whether or not the row has finished, so a row's draws never depend on the
    other rows of its batch. Generators live on the scores' device (created at
    the first step), so nothing of size (B, V) crosses the host bus.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_k: int | None = None,
                 top_p: float | None = None) -> None:
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 to sample, got {temperature}")
        self.seeds = [int(s) for s in seeds]
        self.warpers: list[Any] = []
        if temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(float(temperature)))
        if top_k is not None and top_k != 0:
            self.warpers.append(TopKLogitsWarper(top_k=int(top_k), min_tokens_to_keep=1))
        if top_p is not None and top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p=float(top_p), min_tokens_to_keep=1))
        self.generators: list[torch.Generator] | None = None

    def gumbel(self, n_rows: int, width: int, device: torch.device) -> torch.Tensor:
        """The next (n_rows, width) float64 Gumbel(0, 1) draws, row r from generator r."""
        if self.generators is None:
            self.generators = [torch.Generator(device=device).manual_seed(s) for s in self.seeds]
        if n_rows != len(self.generators):
            raise ValueError(f"{n_rows} rows of scores but {len(self.generators)} seeds")
        u = torch.stack([torch.rand(width, generator=g, dtype=torch.float64, device=device) for g in self.generators])
        return -torch.log(-torch.log(u.clamp_(min=torch.finfo(torch.float64).tiny)))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        noise = self.gumbel(scores.shape[0], scores.shape[1], scores.device)
        return (scores.to(torch.float64) + noise).to(scores.dtype)


def without_cache_implementation(gen_cfg: Any) -> Any:
    """A copy of a generation config that names no cache implementation (a given past cache is used instead)."""
    if getattr(gen_cfg, "cache_implementation", None) is None:
        return gen_cfg
    out = copy.deepcopy(gen_cfg)
    out.cache_implementation = None
    return out


def find_decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks (``model.model.layers`` for Llama/Mistral-like models).

    Falls back to the single ModuleList named ``layers``/``h``/``blocks``
    whose length is the config's ``num_hidden_layers``; raises if there is
    none or more than one, since the hooks must sit on the residual stream.
    """
    n = getattr(model.config.get_text_config(), "num_hidden_layers", None)
    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    if isinstance(layers, nn.ModuleList) and (n is None or len(layers) == n):
        return layers
    found = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "h", "blocks") and len(mod) == n
    ]
    if len(found) != 1:
        raise ValueError(
            f"cannot locate the decoder blocks of {type(model).__name__}: expected model.model.layers "
            f"(Llama/Mistral-like) or exactly one ModuleList of {n} blocks named layers/h/blocks, "
            f"found {[name for name, _ in found]}"
        )
    return found[0][1]


class _FinishTracker:
    """A stopping criterion that records, on the device, when and why each row finished.

    With ``newline`` tables it also stops a row at the first newline that
    follows non-whitespace text, so that the reply's first non-empty line is
    always complete (the protocol keeps only the first line). Sampling draws
    for every row at every step whether it has finished or not, so stopping
    early does not change the other rows' tokens. No host syncs.
    """

    def __init__(
        self,
        prompt_len: int,
        batch: int,
        eos_ids: torch.Tensor,
        newline: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
        device: torch.device,
    ) -> None:
        self.prompt_len = prompt_len
        self.eos_ids = eos_ids.to(device)
        self.newline = newline
        self.finish_len = torch.zeros(batch, dtype=torch.long, device=device)
        self.reason = torch.zeros(batch, dtype=torch.long, device=device)  # 0 length, 1 eos, 2 newline
        self.has_text = torch.zeros(batch, dtype=torch.bool, device=device)

    def __call__(self, input_ids: torch.Tensor, scores: Any = None, **kwargs: Any) -> torch.Tensor:
        tok = input_ids[:, -1]
        n_new = input_ids.shape[1] - self.prompt_len
        is_eos = torch.isin(tok, self.eos_ids)
        if self.newline is not None:
            has_text, has_nl, nl_after_text = self.newline
            stop_nl = (self.has_text & has_nl[tok]) | nl_after_text[tok]
            self.has_text |= has_text[tok]
        else:
            stop_nl = torch.zeros_like(is_eos)
        done = is_eos | stop_nl
        new = done & (self.finish_len == 0)
        self.finish_len = torch.where(new, torch.full_like(self.finish_len, n_new), self.finish_len)
        self.reason = torch.where(new, torch.where(is_eos, 1, 2), self.reason)
        return stop_nl


def _make_stopping_criterion(tracker: _FinishTracker):
    """Wrap a tracker as a transformers ``StoppingCriteria`` instance."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Criterion(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            return tracker(input_ids, scores, **kwargs)

    return StoppingCriteriaList([_Criterion()])


class ChatLM:
    """A loaded chat model; see the module docstring. Build with :meth:`load`."""

    def __init__(self, cfg: LMConfig, tokenizer: Any, model: nn.Module, device: torch.device) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.model = model
        self.device = device
        self.blocks = find_decoder_blocks(model)
        self._base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        self._newline_tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.prefixes = PrefixStore()
        #: ``model.generate`` calls made by :meth:`generate`, for logs and tests.
        self.n_generate_calls = 0

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, cfg: LMConfig) -> ChatLM:
        """Load tokenizer (left padding, pad falls back to EOS) and model (dtype, device, eval mode)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import is_accelerate_available

        device = resolve_device(cfg.device)
        tokenizer = AutoTokenizer.from_pretrained(cfg.path, revision=cfg.revision, padding_side="left")
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError(f"{cfg.path}: the tokenizer has neither a pad nor an EOS token")
            tokenizer.pad_token = tokenizer.eos_token
        from .gqa_attention import register

        kw: dict[str, Any] = {"revision": cfg.revision, "dtype": _DTYPES[cfg.dtype],
                              "attn_implementation": cfg.attn_implementation or register()}
        if device.type == "cuda":
            # process-wide switches: one model per job, so its setting is the job's
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
        if device.type != "cpu" and is_accelerate_available():
            kw["device_map"] = {"": device}  # stream the weights straight onto the GPU
        model = AutoModelForCausalLM.from_pretrained(cfg.path, **kw)
        if model.device != device:
            model = model.to(device)
        model.eval()
        model.requires_grad_(False)
        return cls(cfg, tokenizer, model, device)

    # --------------------------------------------------------------- identity
    @property
    def n_layers(self) -> int:
        """L, the number of decoder blocks (= recorded layers)."""
        return len(self.blocks)

    @property
    def hidden_size(self) -> int:
        """D, the width of the residual stream."""
        return int(self.model.config.get_text_config().hidden_size)

    @property
    def dtype(self) -> str:
        """The weights' dtype name, e.g. ``float32``; ``float32+tf32`` when CUDA runs its matmuls in TF32."""
        name = str(self.model.dtype).removeprefix("torch.")
        tf32 = self.cfg.tf32 and self.device.type == "cuda" and name == "float32"
        return f"{name}+tf32" if tf32 else name

    @property
    def model_path(self) -> str:
        """The path or hub id the model was loaded from."""
        return self.cfg.path

    @property
    def revision(self) -> str | None:
        """The commit the weights came from when known (hub cache), else the requested revision."""
        return self._commit_hash or self.cfg.revision

    @property
    def _commit_hash(self) -> str | None:
        commit = getattr(self.model.config, "_commit_hash", None)
        if commit:
            return str(commit)
        m = re.search(r"snapshots[/\\]([0-9a-f]{40})(?:[/\\]|$)", str(Path(self.cfg.path).resolve()))
        return m.group(1) if m else None

    @cached_property
    def weights_hash(self) -> str:
        """A cheap, stable identifier of the weights.

        ``git:<commit>`` when the checkpoint came from the hub cache (the
        commit pins every file); ``gguf-sha256:<hex>`` for a checkpoint
        converted from a GGUF file (its sha256, recorded by the converter in
        :data:`GGUF_SOURCE_FILE`); for a local directory ``sha256:<hex>`` over
        the weight files' names and contents when they total at most
        :data:`SMALL_CHECKPOINT_BYTES` (the tiny models), else
        ``sizes-sha256:<hex>`` over their names and byte sizes plus the
        contents of any ``*.index.json`` (renames or re-shardings change it,
        silent in-place edits of the same size do not).
        """
        commit = self._commit_hash
        if commit:
            return f"git:{commit}"
        root = Path(self.cfg.path)
        if not root.is_dir():
            raise ValueError(f"{self.cfg.path}: not a local directory and no hub commit known")
        source = root / GGUF_SOURCE_FILE
        if source.is_file():  # converted from a GGUF file: the file's sha256 names the weights
            try:
                return f"gguf-sha256:{json.loads(source.read_text())['gguf_sha256']}"
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{source}: no readable 'gguf_sha256' ({exc}); rebuild this checkpoint") from exc
        files = sorted(
            p
            for p in root.iterdir()
            if p.is_file() and (p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json"))
        )
        if not files:
            raise ValueError(f"{root}: no weight files (*.safetensors, *.bin) found")
        total = sum(p.stat().st_size for p in files)
        h = hashlib.sha256()
        if total <= SMALL_CHECKPOINT_BYTES:
            for p in files:
                h.update(p.name.encode() + b"\0")
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            return f"sha256:{h.hexdigest()}"
        for p in files:
            h.update(f"{p.name}\0{p.stat().st_size}\0".encode())
            if p.name.endswith(".index.json"):
                h.update(p.read_bytes())
        return f"sizes-sha256:{h.hexdigest()}"

    def identity(self) -> dict[str, Any]:
        """Fields to record with every shard: path, revision, weights hash, dtype, L, D, template hash."""
        return {
            "model_path": self.model_path,
            "revision": self.revision,
            "weights_hash": self.weights_hash,
            "dtype": self.dtype,
            "n_layers": self.n_layers,
            "hidden_size": self.hidden_size,
            "chat_template_sha256": self.chat_template_sha256,
        }

    # -------------------------------------------------------------- prompting
    @property
    def chat_template(self) -> str | None:
        """The template in force: the config override, else the tokenizer's."""
        return self.cfg.chat_template or getattr(self.tokenizer, "chat_template", None)

    @property
    def chat_template_sha256(self) -> str:
        """sha256 of the template string in force ("" hashed when there is none)."""
        return hashlib.sha256((self.chat_template or "").encode()).hexdigest()

    def render(self, user_message: str, date_string: str | None = None) -> str:
        """``user_message`` as the single user turn of the chat template, with the generation prompt, as text.

        The template sees ``date_string`` (default: the config's) as today,
        both as the ``date_string`` variable and through ``strftime_now``:
        transformers exposes ``strftime_now`` as a Jinja global, and variables
        passed to the render call shadow globals, so the override holds for
        this call only (no patching of the library or of the clock).
        """
        template = self.chat_template
        if not template:
            raise ValueError(f"{self.cfg.path}: the tokenizer has no chat template; set chat_template in the config")
        date_string = self.cfg.date_string if date_string is None else date_string
        today = fixed_date(date_string)
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message}],
            chat_template=template,
            tokenize=False,
            add_generation_prompt=True,
            date_string=date_string,
            strftime_now=today.strftime,
        )

    def tokenize(self, prompts: list[str]) -> list[list[int]]:
        """Token ids of rendered prompts, with exactly one BOS.

        Chat templates of Llama-2/3 and Mistral write the BOS token into the
        text themselves; such a prompt is tokenized with
        ``add_special_tokens=False`` (as ``apply_chat_template(tokenize=True)``
        does), otherwise a second BOS would be added. A prompt that does not
        start with the BOS text gets the tokenizer's own special tokens. With
        ``special_tokens: always`` every prompt gets them (the authors' Llama-3
        prompts start with two BOS).
        """
        bos = self.tokenizer.bos_token
        always = self.cfg.special_tokens == "always"
        out = []
        for p in prompts:
            has_bos = bool(bos) and p.startswith(bos)
            out.append(self.tokenizer(p, add_special_tokens=always or not has_bos)["input_ids"])
        return out

    def _left_pad(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask, position_ids) on the device, left-padded to the longest row."""
        width = max(len(r) for r in ids)
        if width == 0:
            raise ValueError("empty prompt")
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, r in enumerate(ids):
            if r:
                input_ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
                mask[i, width - len(r):] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp_(min=0)
        return input_ids.to(self.device), mask.to(self.device), position_ids.to(self.device)

    # ---------------------------------------------------------------- capture
    def _hook_blocks(self, slots: list[torch.Tensor | None], expected_len: int) -> list[Any]:
        """Hooks that store each block's output at the last position, once, then remove themselves.

        Only the first call of each block is recorded: in ``generate`` that is
        the prefill over the computed part of the prompt (the whole prompt, or
        what follows a reused prefix), the KV-cache decode steps that follow
        find the hook gone. A first call over another number of positions
        (chunked prefill) is an error, not a silently wrong record.
        """
        handles: list[Any] = []

        def make(i: int):
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                h = output[0] if isinstance(output, (tuple, list)) else output
                if h.shape[1] != expected_len:
                    raise RuntimeError(
                        f"block {i} first ran on {h.shape[1]} positions, expected the prompt's {expected_len}; "
                        "chunked prefill is not supported while recording"
                    )
                slots[i] = h[:, -1, :].to(dtype=torch.float32, copy=True)
                handles[i].remove()

            return hook

        for i, block in enumerate(self.blocks):
            handles.append(block.register_forward_hook(make(i)))
        return handles

    def _collect(self, slots: list[torch.Tensor | None]) -> np.ndarray:
        if any(s is None for s in slots):
            raise RuntimeError("a decoder block did not run during the forward pass")
        return torch.stack(slots, dim=1).cpu().numpy()  # one device->host copy per batch

    def plan_batches(self, lengths: Sequence[int], max_new_tokens: int) -> list[list[int]]:
        """Row indices grouped into batches, longest prompts first, that fit the memory budget.

        At most ``cfg.batch_size`` rows each. On CUDA, or with
        ``cfg.memory_limit_gb``, a batch also fits the token budget of
        :mod:`syncr2.simulation.memory_budget` (KV cache of the padded batch
        plus working memory, from the model's config), so a long turn splits
        into more batches instead of running out of memory. The kept prefix
        caches (:attr:`prefixes`) count against that memory: on CUDA they are
        allocated, so the free memory already excludes them; under a memory
        limit their bytes are subtracted. They may hold at most half of it:
        beyond that the largest are dropped (those rows then compute their
        whole prompt). Sorting by length keeps padding small; results do not
        depend on the batches.
        """
        from .memory_budget import ModelShape, available_memory, plan_batches, weight_bytes

        limit = None if self.cfg.memory_limit_gb is None else int(self.cfg.memory_limit_gb * 1e9)
        if self.device.type != "cuda" and limit is None:
            order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
            return [order[s:s + self.cfg.batch_size] for s in range(0, len(order), self.cfg.batch_size)]
        shape = ModelShape.from_config(self.model.config)
        weights = weight_bytes(shape, self.cfg.dtype)
        # the memory a batch could use if no prefix were kept
        total = [available_memory("cpu", limit, weights)] if limit is not None else []
        if self.device.type == "cuda":
            total.append(available_memory(self.device, None, weights) + self.prefixes.nbytes)
        if self.prefixes.nbytes > min(total) // 2:
            self.prefixes.evict_to(min(total) // 2)
        free = min(total) - self.prefixes.nbytes
        batches = plan_batches(list(lengths), max_new_tokens, shape, self.cfg.dtype, free,
                               max_batch=self.cfg.batch_size)
        if len(batches) > -(-len(lengths) // self.cfg.batch_size):
            log.info("memory budget %.2f GB: %d prompts (longest %d tokens + %d new) in %d batches",
                     free / 1e9, len(lengths), max(lengths), max_new_tokens, len(batches))
        return batches

    def _reuse(self, keys: Sequence[Hashable | None] | None, n: int) -> list[Hashable | None] | None:
        """The per-row prefix keys when prefix reuse is on and keys were given, else None."""
        if keys is None or not self.cfg.prefix_reuse:
            return None
        keys = list(keys)
        if len(keys) != n:
            raise ValueError(f"{n} prompts but {len(keys)} prefix keys")
        return keys

    def _past(self, keys: list[Hashable | None] | None, batch: list[list[int]]) -> tuple[BatchLayout, Any]:
        """The batch's layout and the kept caches as its past (no reuse: the whole prompt is computed)."""
        if keys is None:
            width = max(len(r) for r in batch)
            return BatchLayout(width, width, (0,) * len(batch), tuple(len(r) for r in batch)), None
        layout = self.prefixes.layout(keys, batch)
        self.prefixes.count(layout)
        return layout, self.prefixes.past(keys, layout, self._n_cache_layers)

    def forget_prefixes(self, keys: Sequence[Hashable]) -> None:
        """Drop the kept caches of these keys (an episode that ended)."""
        self.prefixes.forget(keys)

    @property
    def _n_cache_layers(self) -> int:
        """Layers with a key/value cache (every decoder block)."""
        return int(self.model.config.get_text_config().num_hidden_layers)

    @staticmethod
    def _waves(keys: list[Hashable | None] | None, n: int) -> list[list[int]]:
        """Row indices in waves: wave k holds each key's k-th prompt, so a prompt runs after its key's previous one."""
        if keys is None:
            return [list(range(n))]
        seen: dict[Hashable, int] = {}
        waves: list[list[int]] = []
        for i, key in enumerate(keys):
            k = 0 if key is None else seen.get(key, 0)
            if key is not None:
                seen[key] = k + 1
            while len(waves) <= k:
                waves.append([])
            waves[k].append(i)
        return waves

    @torch.inference_mode()
    def capture(self, prompts: list[str], keys: Sequence[Hashable | None] | None = None) -> np.ndarray:
        """Block outputs at the last token of each rendered prompt, one forward pass, no generation.

        Returns float32 (n, L, D). Prompts are batched by length (longest
        first, :meth:`plan_batches` with no new tokens) to limit padding; the
        result is in the input order. ``keys`` (one per prompt; None: no
        reuse) name prompts that extend each other, e.g. one reader's prompts
        of one episode in turn order: with ``prefix_reuse`` each keyed prompt
        runs after the previous prompt of its key and computes only what
        follows their common prefix. The kept caches are dropped at the end.
        """
        ids = self.tokenize(prompts)
        keys = self._reuse(keys, len(ids))
        out = np.empty((len(ids), self.n_layers, self.hidden_size), dtype=np.float32)
        try:
            for wave in self._waves(keys, len(ids)):
                for batch_rows in self.plan_batches([len(ids[i]) for i in wave], 0):
                    rows = [wave[j] for j in batch_rows]
                    out[rows] = self._capture_batch([ids[i] for i in rows], None if keys is None else [keys[i] for i in rows])
        finally:
            self.prefixes.clear()
        return out

    def _capture_batch(self, batch: list[list[int]], keys: list[Hashable | None] | None) -> np.ndarray:
        """One forward pass over a batch (after its reused prefix), returning its (B, L, D) block outputs."""
        input_ids, mask, pos = self._left_pad(batch)
        layout, past = self._past(keys, batch)
        start = layout.cached_width
        slots: list[torch.Tensor | None] = [None] * self.n_layers
        handles = self._hook_blocks(slots, layout.computed)
        try:
            kw: dict[str, Any] = {"use_cache": False}
            if past is not None:
                kw = {"use_cache": True, "past_key_values": past,
                      "cache_position": torch.arange(start, layout.width, device=self.device)}
            self._base(input_ids=input_ids[:, start:], attention_mask=mask, position_ids=pos[:, start:], **kw)
        finally:
            for h in handles:
                h.remove()
        if past is not None:
            self.prefixes.keep(keys, batch, past, layout.width)
        return self._collect(slots)

    # ------------------------------------------------------------- generation
    def _eos_ids(self) -> list[int]:
        """The checkpoint's generation-config EOS ids (Llama-3: end_of_text and eot), else the tokenizer's EOS."""
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None and not ids:
            ids.add(self.tokenizer.eos_token_id)
        return sorted(int(i) for i in ids)

    def _newline_lookup(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-token tables over the model vocabulary: has text, has a newline, has a newline after text."""
        if self._newline_tables is None:
            vocab = int(self.model.config.get_text_config().vocab_size)
            n_tok = min(vocab, len(self.tokenizer))
            pieces = self.tokenizer.batch_decode([[i] for i in range(n_tok)], skip_special_tokens=False)
            special = set(self.tokenizer.all_special_ids)
            pieces = ["" if i in special else s for i, s in enumerate(pieces)] + [""] * (vocab - n_tok)

            def table(flags: list[bool]) -> torch.Tensor:
                return torch.tensor(flags, dtype=torch.bool).to(self.device)

            self._newline_tables = (
                table([bool(s.strip()) for s in pieces]),
                table(["\n" in s for s in pieces]),
                table(["\n" in s.lstrip() for s in pieces]),
            )
        return self._newline_tables

    def generation_settings(self, stop_at_newline: bool | None = None) -> dict[str, Any]:
        """The sampling settings in force (config values, else the checkpoint's, else the library defaults)."""
        gc = self.model.generation_config
        sample = self.cfg.temperature > 0

        def pick(ours: Any, checkpoint: Any, library: Any) -> Any:
            if not sample:
                return None
            return ours if ours is not None else checkpoint if checkpoint is not None else library

        return {
            "do_sample": sample,
            "temperature": self.cfg.temperature if sample else None,
            "top_k": pick(self.cfg.top_k, gc.top_k, 50),
            "top_p": pick(self.cfg.top_p, gc.top_p, 1.0),
            "max_new_tokens": self.cfg.max_new_tokens,
            "eos_token_ids": self._eos_ids(),
            "pad_token_id": int(self.tokenizer.pad_token_id),
            "stop_at_newline": self.cfg.stop_at_newline if stop_at_newline is None else stop_at_newline,
            "date_string": self.cfg.date_string,
            "sampler": "gumbel-max, one generator per row" if sample else "greedy",
        }

    def _generation_config(self, settings: dict[str, Any]) -> Any:
        """The checkpoint's generation config made greedy (sampling is done by :class:`RowGumbelSampler`).

        temperature / top_k / top_p are set to the library defaults, inert under
        greedy decoding (``generate`` would fill None from the checkpoint and
        warn). Sampling warpers that :class:`RowGumbelSampler` does not apply
        are refused rather than silently dropped.
        """
        gen_cfg = copy.deepcopy(self.model.generation_config)
        if settings["do_sample"]:
            unsupported = {
                name: getattr(gen_cfg, name, None) for name in ("min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff")
                if getattr(gen_cfg, name, None) not in (None, 0.0, 1.0)
            }
            if unsupported:
                raise ValueError(f"{self.cfg.path}: generation_config sets {unsupported}; only temperature, "
                                 "top_k and top_p are supported when sampling")
        gen_cfg.update(
            do_sample=False, temperature=1.0, top_k=50, top_p=1.0, num_beams=1,
            max_new_tokens=self.cfg.max_new_tokens, max_length=None, return_dict_in_generate=True,
            pad_token_id=settings["pad_token_id"],
            eos_token_id=settings["eos_token_ids"],  # the same ids the finish tracker reports as "eos"
        )
        return gen_cfg

    @torch.inference_mode()
    def generate(
        self, prompts: list[str], seed: int | Sequence[int], stop_at_newline: bool | None = None,
        keys: Sequence[Hashable | None] | None = None,
        processors: Callable[[list[int], int], list[Any]] | None = None,
    ) -> GenerationResult:
        """Sample one reply per rendered prompt and record the prefill's block outputs.

        ``seed``: one seed per prompt (derived from what identifies the reply, e.g. task, pair, turn),
        or one int, from which prompt i gets ``row_seed(seed, i)``. Row i samples from its own
        generator (:class:`RowGumbelSampler`), so its text depends on its prompt, seed and the
        settings only, not on ``cfg.batch_size`` or the other prompts (up to float rounding). One
        ``model.generate`` call per left-padded batch of :meth:`plan_batches`, results in input order.
        ``stop_at_newline`` (default: the config's) ends a row at its first
        newline after non-whitespace text (the tokens after it are not
        generated). ``keys`` (one per prompt, e.g. an episode's agent; None: no
        reuse): with ``prefix_reuse``, a keyed prompt reuses the key/value
        cache of the key's previous prompt for their common token prefix, and
        its own prompt's cache is kept for the next call
        (:mod:`syncr2.simulation.prefix_cache`); :meth:`forget_prefixes` drops
        an ended episode's. ``processors(rows, prompt_len)``: one batch's logits processors, run
        before the sampler (the ToM format)."""
        from transformers import LogitsProcessorList

        settings = self.generation_settings(stop_at_newline)
        ids = self.tokenize(prompts)
        n = len(ids)
        seeds = [row_seed(int(seed), i) for i in range(n)] if isinstance(seed, (int, np.integer)) else list(seed)
        if len(seeds) != n:
            raise ValueError(f"{n} prompts but {len(seeds)} seeds")
        reps = np.empty((n, self.n_layers, self.hidden_size), dtype=np.float32)
        n_new = np.zeros(n, dtype=np.int64)
        eos = torch.tensor(settings["eos_token_ids"], dtype=torch.long)
        newline = self._newline_lookup() if settings["stop_at_newline"] else None
        gen_cfg = self._generation_config(settings)
        texts = [""] * n
        reasons = [""] * n
        keys = self._reuse(keys, n)
        for rows in self.plan_batches([len(r) for r in ids], settings["max_new_tokens"]):
            batch = [ids[i] for i in rows]
            batch_keys = None if keys is None else [keys[i] for i in rows]
            input_ids, mask, _ = self._left_pad(batch)
            prompt_len = input_ids.shape[1]
            batch_processors = [] if processors is None else list(processors(list(rows), prompt_len))
            if settings["do_sample"]:
                batch_processors.append(RowGumbelSampler(
                    [seeds[i] for i in rows], settings["temperature"], settings["top_k"], settings["top_p"]))
            layout, past = self._past(batch_keys, batch)
            log.debug("generate: %d rows of %d, width %d, %d computed", len(rows), n, prompt_len, layout.computed)
            tracker = _FinishTracker(prompt_len, len(batch), eos, newline, self.device)
            slots: list[torch.Tensor | None] = [None] * self.n_layers
            handles = self._hook_blocks(slots, layout.computed)
            try:
                generated = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    generation_config=gen_cfg if past is None else without_cache_implementation(gen_cfg),
                    logits_processor=LogitsProcessorList(batch_processors),
                    stopping_criteria=_make_stopping_criterion(tracker),
                    past_key_values=past,
                )
            finally:
                for h in handles:
                    h.remove()
            seqs = generated.sequences
            if past is not None:
                self.prefixes.keep(batch_keys, batch, generated.past_key_values, prompt_len)
            del generated, past
            self.n_generate_calls += 1
            reps[rows] = self._collect(slots)
            self._store_replies(rows, seqs[:, prompt_len:].cpu().numpy(), tracker, texts, reasons, n_new)
        return GenerationResult(
            texts=texts,
            reps=reps,
            n_prompt_tokens=np.array([len(r) for r in ids], dtype=np.int64),
            n_new_tokens=n_new,
            finish_reasons=reasons,
            settings=settings,
        )

    def _store_replies(self, rows: Sequence[int], new_tokens: np.ndarray, tracker: _FinishTracker,
                       texts: list[str], reasons: list[str], n_new: np.ndarray) -> None:
        """Each row's reply up to where it finished (EOS, newline, or the length cap), in input order."""
        finish_len = tracker.finish_len.cpu().numpy()
        reason = tracker.reason.cpu().numpy()
        for r, i in enumerate(rows):
            k = int(finish_len[r]) if finish_len[r] > 0 else new_tokens.shape[1]
            n_new[i] = k
            reasons[i] = {0: "length", 1: "eos", 2: "newline"}[int(reason[r])]
            texts[i] = self.tokenizer.decode(new_tokens[r, :k].tolist(), skip_special_tokens=True)


def load_lm(cfg: LMConfig | dict[str, Any]) -> ChatLM:
    """:meth:`ChatLM.load` from an :class:`LMConfig` or a config mapping."""
    return ChatLM.load(cfg if isinstance(cfg, LMConfig) else LMConfig.from_dict(cfg))


def describe(lm: ChatLM) -> str:
    """A one-line JSON summary of a loaded model (for logs)."""
    return json.dumps({**lm.identity(), "device": str(lm.device)}, sort_keys=True)
