"""Benchmark and projection: what the paper study (config/paper.yaml) costs in H100 GPU-hours.

    python bench/bench_paper_cost.py                        # CPU: 2 of 32 layers measured, ~4 min
    python bench/bench_paper_cost.py --models llama3-8b --batch 1 --layers 1
    python bench/bench_paper_cost.py --device cuda --dtype bfloat16 --batch 25 --attn syncr2_gqa

Three parts, printed in this order:

1. Prompt lengths of the real Sotopia tasks (``/work/shared/sotopia``): the
   authors' preset renders every task's two intros; tokens are ESTIMATED as
   characters / 4.0 (there is no Llama/Mistral tokenizer offline), chat-template
   special tokens counting one each. Every utterance is assumed to be
   ``--utterance-tokens`` tokens (default 40), so the speaker's prompt at turn t
   is intro + t dialogue lines + the open line, and the passive reader's prompt
   is the authors' passive transform of it (both rendered as text, then counted).

2. Measurements on random-weight models with the EXACT shapes of Llama-3-8B,
   Llama-2-7B and Mistral-7B-v0.2 (their ``config.json`` values, inline below;
   ``AutoModelForCausalLM.from_config``, no download). One
   ``model.generate(max_new_tokens=N, min_new_tokens=N, do_sample=False)``
   over a left-padded batch of B prompts of realistic lengths (real prompt
   lengths at turn ``--turn``, spread over the distribution) gives both the
   prefill time (until the first logits) and the decode step time (mean
   between later logits), timed by a logits processor. On CPU a full 7B
   float32 model (~30 GB) does not fit this machine, so the model has
   ``--layers`` decoder blocks at the real widths and is measured again with
   half of them; the two points give a per-layer cost and a fixed cost
   (embeddings, LM head, the generate loop), extrapolated LINEARLY to 32
   layers (assumption: every block costs the same). On CUDA the full model is
   built in ``--dtype`` when its weights fit (else the same two-point fit).
   Peak memory: CUDA ``torch.cuda.max_memory_allocated``; CPU the resident set
   size sampled every 5 ms from /proc/self/statm during the call.

3. A projection of the whole study in H100 GPU-hours, from a FLOP and byte
   count of every batch the study runs (the model and its inputs are printed):
   simulate = 36 ordered pairs x 5 seeds x 450 tasks x 16 turns (blocks of 50
   tasks, one ``generate`` per turn, batches of 25), passive = seeds 0-2 re-read
   (one forward per recorded prompt). BEFORE = the configuration before this
   work (float32, batches of 25 in task order, every batch decoding 300 tokens,
   repeated-K/V decode attention); AFTER = stop at the first newline, batches
   sorted by length and planned by ``memory_budget.plan_batches``, grouped
   decode attention, in float32, float32+TF32 and bfloat16, each also with
   prefix reuse across turns (``PrefixStore``: a prompt computes only what
   follows the same agent's kept prompt of turn t-2, a batch the most any of
   its rows needs, attention over the whole context; the kept caches of the
   block's episodes take memory from the planner, and ChatLM's cut to half of
   it is followed; passive reading per reader and episode). With CPU-only
   measurements the H100 figures rest on stated H100 efficiencies; with CUDA
   measurements the model is calibrated by them (same dtype and attention).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import torch
from torch import nn

from syncr2.simulation.memory_budget import (
    ModelShape,
    TokenBudget,
    bytes_per_element,
    kv_bytes_per_token,
    plan_batches,
    weight_bytes,
)

SOTOPIA = Path("/work/shared/sotopia")

# --------------------------------------------------------------------------- model shapes
#: config.json values of the paper's checkpoints (only what decides shape and speed).
CONFIGS: dict[str, dict] = {
    "llama3-8b": {  # meta-llama/Meta-Llama-3-8B-Instruct
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "max_position_embeddings": 8192, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
    "llama2-7b": {  # meta-llama/Llama-2-7b-chat-hf
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
        "max_position_embeddings": 4096, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
    "mistral-7b": {  # mistralai/Mistral-7B-Instruct-v0.2
        "model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-5,
        "sliding_window": None, "tie_word_embeddings": False,
    },
    # the paper's other three models: projected from their shapes, measured only when named in --models
    "mistral-7b-v0.1": {  # mistralai/Mistral-7B-Instruct-v0.1
        "model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
        "max_position_embeddings": 32768, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
        "sliding_window": 4096, "tie_word_embeddings": False,
    },
    "mistral-7b-v0.3": {  # mistralai/Mistral-7B-Instruct-v0.3
        "model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32768,
        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-5,
        "sliding_window": None, "tie_word_embeddings": False,
    },
    "llama3.2-3b": {  # meta-llama/Llama-3.2-3B-Instruct (rope_scaling llama3 omitted: no effect on cost)
        "model_type": "llama", "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
        "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
        "max_position_embeddings": 131072, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
    },
}

#: The paper's six models (config/paper.yaml keys) -> shape, template family, measured stand-in for calibration.
PAPER_MODELS = [
    ("M1", "mistral-7b-v0.1", "inst", "mistral-7b"),
    ("M2", "mistral-7b", "inst", "mistral-7b"),
    ("M3", "mistral-7b-v0.3", "inst", "mistral-7b"),
    ("L2", "llama2-7b", "inst", "llama2-7b"),
    ("L3", "llama3-8b", "llama3", "llama3-8b"),
    ("L3.2", "llama3.2-3b", "llama3", "llama3-8b"),
]
PAPER_PATHS = {"inst": "mistralai/Mistral-7B-Instruct-v0.2", "llama3": "meta-llama/Meta-Llama-3-8B-Instruct"}

# --------------------------------------------------------------------------- the study (config/paper.yaml)
N_MODELS, N_TASKS, N_TURNS, SEEDS, PASSIVE_SEEDS = 6, 450, 16, 5, 3
PAIRS_PER_ROLE = N_MODELS  # each model is agent 1 in 6 ordered pairs and agent 2 in 6 (36 = 6 x 6)
BLOCK, BATCH, MAX_NEW = 50, 25, 300

# --------------------------------------------------------------------------- H100 assumptions (SXM5, 80 GB)
H100 = {
    "peak_flops": {"bfloat16": 989e12, "float32+tf32": 494e12, "float32": 67e12},  # dense, NVIDIA datasheet
    "efficiency": {"bfloat16": 0.40, "float32+tf32": 0.40, "float32": 0.60},  # assumed MFU (SGEMM runs closer to peak)
    "bandwidth": 2.5e12,  # effective HBM3 bytes/s (75% of 3.35 TB/s), assumed
    "memory": 80 * 2**30 - 2**30,  # 80 GiB minus 1 GiB for the CUDA context
}


def storage_dtype(dtype: str) -> str:
    """The dtype weights are stored in (``float32+tf32`` stores float32)."""
    return dtype.split("+")[0]


def shape_of(name: str) -> ModelShape:
    return ModelShape.from_config(CONFIGS[name])


def nonembed_params(s: ModelShape) -> int:
    """Parameters a token's forward pass multiplies through, except the LM head (decoder blocks + final norm)."""
    return s.n_params - s.vocab_size * s.hidden_size * (1 if s.tie_word_embeddings else 2)


# --------------------------------------------------------------------------- the FLOP / byte model
@dataclass(frozen=True)
class Device:
    """Effective rates of the projected device, per compute dtype, and a fixed time per forward pass."""

    flops: dict[str, float]  # effective FLOP/s by dtype
    bandwidth: float  # effective bytes/s
    overhead_s: float  # per forward (kernel launches, generate loop, sampler), assumed
    memory: int


def forward_time(flops: float, nbytes: float, dtype: str, dev: Device) -> float:
    """Roofline: the larger of compute and memory time, plus the per-forward overhead."""
    return max(flops / dev.flops[dtype], nbytes / dev.bandwidth) + dev.overhead_s


def prefill_cost(s: ModelShape, b: int, p: int, dtype: str, lm_head: bool = True) -> tuple[float, float]:
    """(FLOPs, bytes) of one forward over b rows left-padded to p tokens (padding is computed too).

    2 FLOPs per multiply-add: 2 x non-embedding params per token, causal
    attention 2 x p x heads x head_dim per token per layer (QK^T and PV over p/2
    keys on average), the LM head on the last position only. Bytes: the weights
    once and the KV cache written once.
    """
    attn = 2 * p * s.n_heads * s.head_dim * s.n_layers
    flops = b * p * (2 * nonembed_params(s) + attn) + (b * 2 * s.vocab_size * s.hidden_size if lm_head else 0)
    nbytes = weight_bytes(s, storage_dtype(dtype)) + b * p * kv_bytes_per_token(s, storage_dtype(dtype))
    return float(flops), float(nbytes)


def prefill_cost_reuse(s: ModelShape, b: int, w: int, computed: int, dtype: str,
                       lm_head: bool = True) -> tuple[float, float]:
    """(FLOPs, bytes) of one forward with prefix reuse: b rows of width w, the last ``computed`` (S) columns run.

    The S computed tokens of a row sit at positions w - S .. w - 1 and each
    attends to every earlier column, so attention runs over w - S/2 keys on
    average (S = w gives :func:`prefill_cost`'s w/2). Bytes: the weights,
    and the KV cache of the batch moved 7 w - 2 S times per row-token: the
    past assembled from the kept caches (read + write w - S), the cache's
    ``torch.cat`` growth (read + write w), attention reading it (w), and the
    prompt columns copied back into the store (read + write w).
    """
    st = storage_dtype(dtype)
    attn = 4 * (w - computed / 2) * s.n_heads * s.head_dim * s.n_layers
    flops = b * computed * (2 * nonembed_params(s) + attn) + (b * 2 * s.vocab_size * s.hidden_size if lm_head else 0)
    nbytes = weight_bytes(s, st) + b * (7 * w - 2 * computed) * kv_bytes_per_token(s, st)
    return float(flops), float(nbytes)


def kv_traffic_factor(s: ModelShape, grouped: bool) -> int:
    """Times the KV cache's bytes move per decode step.

    DynamicCache grows by ``torch.cat`` (read + write the whole cache: 2) and
    attention reads it (1). Repeated-K/V decode (stock SDPA with a padding
    mask) first copies each K/V head n_rep times (read 1 + write n_rep) and
    then attention reads the n_rep copies: 3 + 2 n_rep instead of 1. Without
    grouping (n_rep 1, Llama-2) ``repeat_kv`` is a no-op.
    """
    n_rep = s.n_heads // s.n_kv_heads
    return 3 if grouped or n_rep == 1 else 3 + 2 * n_rep


def decode_costs(s: ModelShape, b: int, ctx: np.ndarray, dtype: str, grouped: bool) -> tuple[np.ndarray, np.ndarray]:
    """(FLOPs, bytes) of decode steps of b rows at cache lengths ``ctx`` (one entry per step)."""
    st = storage_dtype(dtype)
    flops = b * (2 * nonembed_params(s) + 2 * s.vocab_size * s.hidden_size
                 + 4 * ctx * s.n_heads * s.head_dim * s.n_layers)
    nbytes = (weight_bytes(s, st) - s.vocab_size * s.hidden_size * bytes_per_element(st) * (0 if s.tie_word_embeddings else 1)
              + kv_traffic_factor(s, grouped) * b * ctx * kv_bytes_per_token(s, st))
    return flops.astype(float), nbytes.astype(float)


def generate_time(s: ModelShape, b: int, p: int, new_tokens: int, dtype: str, grouped: bool, dev: Device,
                  k_pre: float = 1.0, k_dec: float = 1.0, computed: int | None = None) -> tuple[float, float]:
    """(prefill s, decode s) of one generate call: prefill gives token 1, new_tokens - 1 decode steps follow.

    ``computed``: with prefix reuse, the columns the prefill computes (:func:`prefill_cost_reuse`).
    """
    f, by = prefill_cost(s, b, p, dtype)
    if computed is not None:  # prefix reuse: only the last ``computed`` columns run
        f, by = prefill_cost_reuse(s, b, p, computed, dtype)
    t_pre = k_pre * forward_time(f, by, dtype, dev)
    ctx = p + np.arange(1, new_tokens)
    if ctx.size == 0:
        return t_pre, 0.0
    f, by = decode_costs(s, b, ctx, dtype, grouped)
    t_dec = k_dec * float(np.sum(np.maximum(f / dev.flops[dtype], by / dev.bandwidth) + dev.overhead_s))
    return t_pre, t_dec


# --------------------------------------------------------------------------- token counts
def template_tokens(family: str) -> int:
    """Estimated tokens the authors' chat template adds around the user message (special tokens count 1)."""
    from syncr2.simulation.presets import PromptPreset

    tpl = PromptPreset.from_config({"preset": "authors"}).chat_template_for(PAPER_PATHS[family])
    text = tpl.replace("{{ messages[0]['content'] }}", "")
    specials = re.findall(r"<\|[a-z_]+\|>", text)
    rest = re.sub(r"<\|[a-z_]+\|>", "", text)
    return len(specials) + math.ceil(len(rest) / 4.0) + 1  # + the BOS the tokenizer adds (special_tokens: always)


def est_tokens(chars: np.ndarray | int) -> np.ndarray:
    return np.ceil(np.asarray(chars, dtype=float) / 4.0).astype(np.int64)


@dataclass
class PromptChars:
    """Characters of the user message, (tasks, turns): the speaker's prompt and the passive reader's."""

    genuine: np.ndarray
    passive: np.ndarray
    intro: np.ndarray  # (tasks, 2)
    source: str
    #: characters each prompt shares, from its start, with the same speaker's (reader's) prompt two turns
    #: earlier -- the prefix a kept cache covers (0 at turns 0 and 1: the agent's first prompt)
    genuine_common: np.ndarray | None = None
    passive_common: np.ndarray | None = None


def sotopia_prompt_chars(path: Path, utterance_tokens: int) -> PromptChars:
    """Render every task's prompts at every turn with filler utterances of ``4 x utterance_tokens`` characters."""
    from syncr2.simulation.presets import PromptPreset
    from syncr2.simulation.tasks import load_tasks

    tasks = load_tasks("sotopia_exports", str(path))
    preset = PromptPreset.from_config({"preset": "authors"})
    try:
        intros = [(preset.render_intro(t, 1), preset.render_intro(t, 2)) for t in tasks]
        names = [tuple(t.agent_names) for t in tasks]
        source = "PromptPreset(authors).render_intro"
    except AttributeError:  # an older API: the task table's rendered intros
        from syncr2.simulation.tasks import tasks_frame

        frame = tasks_frame(tasks, preset)
        intros = list(zip(frame["intro1"], frame["intro2"]))
        names = list(zip(frame["agent1_name"], frame["agent2_name"]))
        source = "tasks_frame intro1/intro2"
    filler = ("word " * utterance_tokens)[: 4 * utterance_tokens].strip()
    genuine = np.zeros((len(tasks), N_TURNS), dtype=np.int64)
    passive = np.zeros_like(genuine)
    genuine_common = np.zeros_like(genuine)
    passive_common = np.zeros_like(genuine)
    for i, ((i1, i2), (n1, n2)) in enumerate(zip(intros, names)):
        history: list[tuple[str, str]] = []
        texts: list[tuple[str, str]] = []
        for t in range(N_TURNS):
            speaker_intro, speaker = (i1, n1) if t % 2 == 0 else (i2, n2)
            prompt = preset.prompt(speaker_intro, history, speaker, t)
            reading = preset.passive_prompt(prompt, speaker, n1)
            genuine[i, t] = len(prompt)
            passive[i, t] = len(reading)
            if t >= 2:  # the same agent's previous prompt (and the same reader's previous reading)
                genuine_common[i, t] = len(os.path.commonprefix([texts[t - 2][0], prompt]))
                passive_common[i, t] = len(os.path.commonprefix([texts[t - 2][1], reading]))
            texts.append((prompt, reading))
            history.append((speaker, filler))
    intro = np.array([[len(a), len(b)] for a, b in intros], dtype=np.int64)
    return PromptChars(genuine, passive, intro, source, genuine_common, passive_common)


def template_suffix_tokens(family: str) -> int:
    """Estimated tokens of the chat template after the user message (computed again on every turn)."""
    from syncr2.simulation.presets import PromptPreset

    tpl = PromptPreset.from_config({"preset": "authors"}).chat_template_for(PAPER_PATHS[family])
    text = tpl.split("{{ messages[0]['content'] }}", 1)[1]
    specials = re.findall(r"<\|[a-z_]+\|>", text)
    return len(specials) + math.ceil(len(re.sub(r"<\|[a-z_]+\|>", "", text)) / 4.0)


#: tokens a kept prefix loses at its end because the token where the two prompts part may merge differently
REUSE_BOUNDARY_TOKENS = 1


def new_tokens_with_reuse(chars: np.ndarray, common: np.ndarray, full: np.ndarray, family: str) -> np.ndarray:
    """Tokens a prompt computes when the same key's previous prompt is kept (the whole prompt at turns 0-1).

    The characters after the common prefix (tokens = characters / 4, as
    everywhere here) + the chat template's closing tokens + one boundary
    token; at least 1 (``PrefixStore.reusable``: one token always runs) and
    at most the whole prompt.
    """
    new = est_tokens(chars - common) + template_suffix_tokens(family) + REUSE_BOUNDARY_TOKENS
    new = np.clip(new, 1, full)
    new[:, :2] = full[:, :2]
    return new


# --------------------------------------------------------------------------- building and measuring
def build_model(name: str, n_layers: int, dtype: torch.dtype, device: torch.device, attn: str) -> nn.Module:
    """A random-weight model of ``name``'s shape with ``n_layers`` blocks (parameters filled uniform, std 0.02)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if attn == "syncr2_gqa":
        from syncr2.simulation.gqa_attention import register

        register()
    spec = dict(CONFIGS[name])
    cfg = AutoConfig.for_model(spec.pop("model_type"), **{**spec, "num_hidden_layers": n_layers},
                               pad_token_id=0, bos_token_id=1, eos_token_id=2)
    try:
        from accelerate import init_empty_weights
    except ImportError:  # slower: the library's own (normal) init
        with device:
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=attn)
        return model.eval().requires_grad_(False)
    with init_empty_weights(include_buffers=False):  # parameters on meta, RoPE buffers real
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=attn)
    made: dict[int, nn.Parameter] = {}
    bound = 0.02 * math.sqrt(3.0)
    gen = torch.Generator(device=device).manual_seed(0)
    for mod in model.modules():
        for pname, p in list(mod._parameters.items()):
            if p is None:
                continue
            if id(p) not in made:  # tied parameters stay tied
                x = torch.empty(p.shape, dtype=p.dtype, device=device)
                x.fill_(1.0) if p.ndim == 1 else x.uniform_(-bound, bound, generator=gen)
                made[id(p)] = nn.Parameter(x, requires_grad=False)
            mod._parameters[pname] = made[id(p)]
    return model.to(device).eval()


def truncate(model: nn.Module, n_layers: int) -> None:
    """Keep the first ``n_layers`` decoder blocks (the config follows, so caches are sized right)."""
    model.model.layers = nn.ModuleList(list(model.model.layers)[:n_layers])
    model.config.num_hidden_layers = n_layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:n_layers]


class RssSampler:
    """Peak resident set size of this process, sampled every 5 ms from /proc/self/statm."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def __enter__(self) -> Self:
        self.before = self.rss()
        self.peak = self.before
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


@dataclass
class Timing:
    layers: int
    prefill_s: float
    step_s: float
    peak_bytes: int
    base_bytes: int


def timed_generate(model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor, new_tokens: int) -> Timing:
    """Prefill seconds and mean decode-step seconds of one greedy generate call, and its peak memory."""
    from transformers import LogitsProcessor, LogitsProcessorList

    cuda = input_ids.device.type == "cuda"
    stamps: list[float] = []

    class Clock(LogitsProcessor):
        def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if cuda:
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
            return scores

    kw = {"attention_mask": mask, "max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
          "pad_token_id": 0, "eos_token_id": 2, "logits_processor": LogitsProcessorList([Clock()])}
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.generate(input_ids=input_ids, **kw)
        peak = torch.cuda.max_memory_allocated()
    else:
        with RssSampler() as mem, torch.inference_mode():
            t0 = time.perf_counter()
            model.generate(input_ids=input_ids, **kw)
        base, peak = mem.before, mem.peak
    step = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
    return Timing(len(model.model.layers), stamps[0] - t0, step, peak, base)


def left_padded(lengths: list[int], vocab: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    width = max(lengths)
    ids = torch.zeros((len(lengths), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, width - n:] = torch.randint(3, vocab, (n,), generator=g)
        mask[i, width - n:] = 1
    return ids.to(device), mask.to(device)


@dataclass
class Measured:
    name: str
    layers_built: int
    points: list[Timing]
    prefill_full_s: float
    step_full_s: float
    extrapolated: bool
    lengths: list[int]
    dtype: str
    attn: str


def linear_fit(points: list[Timing], attr: str, full: int) -> tuple[float, float, float, bool]:
    """(per layer, fixed, at ``full`` layers, fell back) from two (layers, seconds) points.

    Falls back to scaling the larger point proportionally when the fit gives a
    negative per-layer or fixed part (timing noise on a shared machine).
    """
    (l1, t1), (l2, t2) = ((p.layers, getattr(p, attr)) for p in points)
    if l1 == l2:
        return t1 / l1, 0.0, t1 / l1 * full, False
    per = (t1 - t2) / (l1 - l2)
    fixed = t1 - per * l1
    if per <= 0 or fixed < 0:
        per, fixed = max(t1, t2) / max(l1, l2), 0.0
        return per, fixed, per * full, True
    return per, fixed, fixed + per * full, False


def linear_to(points: list[Timing], attr: str, full: int) -> tuple[float, float, float]:
    return linear_fit(points, attr, full)[:3]


def measure(name: str, args: argparse.Namespace, device: torch.device, lengths: list[int]) -> Measured:
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    shape = shape_of(name)
    full = shape.n_layers
    layers = full
    if device.type == "cpu":
        layers = min(args.layers, full)
    else:
        free, _ = torch.cuda.mem_get_info(device)
        need = weight_bytes(shape, args.dtype) + TokenBudget(shape, args.dtype, 10**15).batch_bytes(lengths, args.new_tokens)
        if need > 0.9 * free:
            per_layer = (weight_bytes(shape, args.dtype) - 2 * shape.vocab_size * shape.hidden_size
                         * bytes_per_element(args.dtype)) / full
            layers = max(2, min(full, int((0.9 * free - need + full * per_layer) // per_layer)))
    ids, mask = left_padded(lengths, shape.vocab_size, device)
    t0 = time.perf_counter()
    model = build_model(name, layers, dtype, device, args.attn)
    build_s = time.perf_counter() - t0
    w_ids, w_mask = left_padded([16, 12][: len(lengths)] or [16], shape.vocab_size, device)
    timed_generate(model, w_ids, w_mask, 2)  # warm-up: first-call overheads are not throughput
    def best(model: nn.Module) -> Timing:  # the fastest of --repeats calls (prefill and decode separately)
        runs = [timed_generate(model, ids, mask, args.new_tokens) for _ in range(max(1, args.repeats))]
        return Timing(runs[0].layers, min(r.prefill_s for r in runs), min(r.step_s for r in runs),
                      max(r.peak_bytes for r in runs), min(r.base_bytes for r in runs))

    points = [best(model)]
    low = max(1, layers // 2) if layers < full else layers
    if low != layers:
        truncate(model, low)
        points.append(best(model))
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    pts = points if len(points) == 2 else points * 2
    _, _, pre = linear_to(pts, "prefill_s", full)
    _, _, step = linear_to(pts, "step_s", full)
    m = Measured(name, layers, points, pre, step, layers < full, lengths, args.dtype, args.attn)
    m.build_s = build_s  # type: ignore[attr-defined]
    return m


def report_measured(m: Measured, dev_name: str, new_tokens: int) -> None:
    s = shape_of(m.name)
    b, p = len(m.lengths), max(m.lengths)
    real = sum(m.lengths)
    grouped = m.attn not in ("sdpa", "eager")
    print(f"{m.name}: {dev_name}, {m.dtype}, attn {m.attn}, batch {b}, prompt tokens {m.lengths} "
          f"(padded to {p}), {len(m.points) and m.points[0].layers} of {s.n_layers} layers built "
          f"(build {m.build_s:.1f} s)")
    for t in m.points:
        mem = f"peak {t.peak_bytes / 1e9:.2f} GB (before the call {t.base_bytes / 1e9:.2f} GB)"
        print(f"    {t.layers:2d} layers: prefill {t.prefill_s:7.2f} s ({real / t.prefill_s:8.1f} tok/s), "
              f"decode {t.step_s * 1e3:8.1f} ms/step ({1 / t.step_s:6.2f} steps/s); {mem}")
    if m.extrapolated:
        pts = m.points if len(m.points) == 2 else m.points * 2  # --layers 1: one point, scaled proportionally
        per_p, fix_p, _, fb_p = linear_fit(pts, "prefill_s", s.n_layers)
        per_d, fix_d, _, fb_d = linear_fit(pts, "step_s", s.n_layers)
        note = "; ".join(f"{what}: the two points gave a negative part (timing noise), scaled proportionally instead"
                         for what, fb in (("prefill", fb_p), ("decode", fb_d)) if fb)
        print(f"    linear in layers: prefill {per_p:.2f} s/layer + {fix_p:.2f} s fixed; "
              f"decode {per_d * 1e3:.1f} ms/layer + {fix_d * 1e3:.1f} ms fixed" + (f" ({note})" if note else ""))
    f_pre, _ = prefill_cost(s, b, p, m.dtype)
    f_dec, b_dec = decode_costs(s, b, np.array([p + new_tokens // 2]), m.dtype, grouped)
    tag = "extrapolated to" if m.extrapolated else "measured at"
    print(f"    {tag} {s.n_layers} layers: prefill {m.prefill_full_s:.2f} s = {real / m.prefill_full_s:.1f} tok/s "
          f"({b * p / m.prefill_full_s:.1f} padded tok/s, {f_pre / m.prefill_full_s / 1e9:.1f} GFLOP/s effective); "
          f"decode {m.step_full_s * 1e3:.0f} ms/step = {1 / m.step_full_s:.3f} steps/s "
          f"({b / m.step_full_s:.2f} tok/s, {b_dec[0] / m.step_full_s / 1e9:.1f} GB/s, "
          f"{f_dec[0] / m.step_full_s / 1e9:.1f} GFLOP/s effective)")
    need = weight_bytes(s, m.dtype) + TokenBudget(s, m.dtype, 10**15).batch_bytes(m.lengths, new_tokens)
    print(f"    full model memory (memory_budget model): weights {weight_bytes(s, m.dtype) / 1e9:.2f} GB + "
          f"this batch's KV/activations {(need - weight_bytes(s, m.dtype)) / 1e9:.2f} GB")


# --------------------------------------------------------------------------- the projection
@dataclass(frozen=True)
class Scenario:
    name: str
    dtype: str
    sorted_batches: bool
    decode_tokens: int  # per generate batch
    grouped: bool
    reuse: bool = False  # prefix reuse across turns (simulation and passive reading); needs sorted_batches


def batches_of(lengths: np.ndarray, scenario: Scenario, shape: ModelShape, dev: Device,
               new_tokens: int) -> list[np.ndarray]:
    """Prompt lengths per batch: task order in 25s (BEFORE) or the memory planner's sorted batches."""
    if not scenario.sorted_batches:
        return [lengths[i:i + BATCH] for i in range(0, len(lengths), BATCH)]
    avail = dev.memory - weight_bytes(shape, storage_dtype(scenario.dtype))
    plan = plan_batches(lengths.tolist(), new_tokens, shape, storage_dtype(scenario.dtype), avail, max_batch=BATCH)
    return [lengths[idx] for idx in plan]


def evict(kept: np.ndarray, kv: int, cap: int) -> int:
    """``PrefixStore.evict_to`` on kept prompt lengths (0: none kept): drop the largest until kv x tokens <= cap.

    ``kept`` is changed in place (dropped entries become 0); returns how many were dropped.
    """
    flat = kept.ravel()
    held = int(flat.sum())
    if held * kv <= cap:
        return 0
    order = np.argsort(-flat, kind="stable")
    left = held - np.cumsum(flat[order])  # tokens still kept after dropping the first j + 1
    k = int(np.argmax(left * kv <= cap)) + 1
    kept.flat[order[:k]] = 0
    return k


def project(scenario: Scenario, gen_tokens: dict[str, np.ndarray], pas_tokens: dict[str, np.ndarray],
            dev: Device, calib: dict[str, dict[str, float]],
            reuse_tokens: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, float]:
    """GPU-seconds of the study by part (simulate prefill, simulate decode, passive), and the worst batch memory.

    With ``scenario.reuse``, ``reuse_tokens[family]`` = (speaker, passive)
    tokens each prompt computes when its key's previous prompt is kept
    (:func:`new_tokens_with_reuse`). The kept caches are followed through each
    block like ``ChatLM``: after a generate (capture) batch every row's prompt
    is kept; before each call the caches held (both agents' of the block's
    episodes, at this model's KV bytes per token) leave ``memory - weights -
    kept`` to the planner, and beyond half of ``memory - weights`` the largest
    are dropped (``ChatLM.plan_batches``), so those rows compute their whole
    prompt; a batch computes its rows' largest need in every row.
    """
    out = {"prefill": 0.0, "decode": 0.0, "passive": 0.0, "worst_mem": 0.0, "n_batches": 0,
           "real": 0, "padded": 0, "p_batches": 0, "computed": 0, "p_real": 0, "p_computed": 0,
           "worst_kept": 0, "worst_kept_p": 0, "evicted": 0, "evicted_p": 0, "kept_rows": 0, "rows": 0}
    if scenario.reuse and (reuse_tokens is None or not scenario.sorted_batches):
        raise ValueError("a prefix-reuse scenario needs reuse_tokens and sorted batches")
    mult, p_mult = PAIRS_PER_ROLE * SEEDS, PAIRS_PER_ROLE * PASSIVE_SEEDS
    for key, name, family, stand_in in PAPER_MODELS:
        s = shape_of(name)
        k = calib.get(stand_in, {}) if calib.get(stand_in, {}).get("dtype") == scenario.dtype else {}
        k_pre = k.get("prefill", 1.0)
        k_dec = k.get("decode", 1.0) if k.get("grouped") == (scenario.grouped or s.n_heads == s.n_kv_heads) else 1.0
        genuine, passive = gen_tokens[family], pas_tokens[family]
        st = storage_dtype(scenario.dtype)
        budget = TokenBudget(s, st, 10**15)
        kv, wbytes = kv_bytes_per_token(s, st), weight_bytes(s, st)
        total = dev.memory - wbytes  # what batches and kept caches share
        g_new, p_new = reuse_tokens[family] if scenario.reuse else (None, None)
        for b0 in range(0, N_TASKS, BLOCK):
            rows = slice(b0, b0 + BLOCK)
            n_rows = len(range(N_TASKS)[rows])
            kept = np.zeros((2, n_rows), dtype=np.int64)  # tokens of each agent's kept prompt per episode
            for t in range(N_TURNS):  # one generate call per turn over the block's 50 episodes
                lens = genuine[rows, t]
                if scenario.reuse:
                    agent = t % 2
                    out["evicted"] += mult * evict(kept, kv, total // 2)
                    held = int(kept.sum()) * kv
                    out["worst_kept"] = max(out["worst_kept"], held)
                    need = np.where(kept[agent] > 0, g_new[rows, t], lens)
                    out["kept_rows"] += mult * int((kept[agent] > 0).sum())
                    out["rows"] += mult * n_rows
                    plan = plan_batches(lens.tolist(), MAX_NEW, s, st, total - held, max_batch=BATCH)
                    groups = [(lens[idx], int(need[idx].max())) for idx in plan]
                else:
                    held = 0
                    groups = [(bl, None) for bl in batches_of(lens, scenario, s, dev, MAX_NEW)]
                for bl, computed in groups:
                    w = int(bl.max())
                    pre, dec = generate_time(s, len(bl), w, scenario.decode_tokens, scenario.dtype, scenario.grouped,
                                             dev, k_pre, k_dec, computed=computed)
                    out["prefill"] += mult * pre
                    out["decode"] += mult * dec
                    out["n_batches"] += mult
                    out["real"] += mult * int(bl.sum())
                    out["padded"] += mult * len(bl) * w
                    out["computed"] += mult * len(bl) * (w if computed is None else computed)
                    mem = wbytes + held + budget.batch_bytes(bl.tolist(), MAX_NEW)
                    out["worst_mem"] = max(out["worst_mem"], mem)
                if scenario.reuse:
                    kept[t % 2] = lens  # every row keeps its prompt; all end after turn 15, the block clears
            for agent in (1, 2):  # passive: one capture call over an agent's 8 turns x 50 tasks, sorted (before too)
                if not scenario.reuse:
                    lens = passive[rows, agent - 1::2].ravel()
                    plan = plan_batches(lens.tolist(), 0, s, st, total, max_batch=BATCH)
                    waves = [(lens, lens, plan, 0)]
                else:  # capture with keys (task, seed): wave k = each episode's k-th reading, kept caches between
                    waves = []
                    kept_p = np.zeros((1, n_rows), dtype=np.int64)
                    for t in range(agent - 1, N_TURNS, 2):
                        lens = passive[rows, t]
                        out["evicted_p"] += p_mult * evict(kept_p, kv, total // 2)
                        held = int(kept_p.sum()) * kv
                        out["worst_kept_p"] = max(out["worst_kept_p"], held)
                        need = np.where(kept_p[0] > 0, p_new[rows, t], lens)
                        waves.append((lens, need, plan_batches(lens.tolist(), 0, s, st, total - held, max_batch=BATCH),
                                      held))
                        kept_p[0] = lens
                for lens, need, plan, held in waves:
                    for idx in plan:
                        w = int(lens[idx].max())
                        if scenario.reuse:
                            computed = int(need[idx].max())
                            f, by = prefill_cost_reuse(s, len(idx), w, computed, scenario.dtype, lm_head=False)
                        else:
                            computed = w
                            f, by = prefill_cost(s, len(idx), w, scenario.dtype, lm_head=False)
                        out["passive"] += p_mult * k_pre * forward_time(f, by, scenario.dtype, dev)
                        out["p_batches"] += p_mult
                        out["p_real"] += p_mult * int(lens[idx].sum())
                        out["p_computed"] += p_mult * len(idx) * computed
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--models", default="llama3-8b,llama2-7b,mistral-7b",
                    help=f"comma-separated, of {', '.join(CONFIGS)}; 'none' measures nothing")
    ap.add_argument("--batch", type=int, default=None, help="measured batch (default 2 on CPU, 25 on CUDA)")
    ap.add_argument("--layers", type=int, default=2, help="CPU: decoder blocks built (also measured at half)")
    ap.add_argument("--attn", default="sdpa", help="attn_implementation: sdpa, eager, syncr2_gqa, ...")
    ap.add_argument("--new-tokens", type=int, default=16, help="tokens generated per measured call")
    ap.add_argument("--repeats", type=int, default=1, help="calls per measured point (the fastest is kept)")
    ap.add_argument("--turn", type=int, default=7, help="measured prompts are real prompt lengths at this turn")
    ap.add_argument("--utterance-tokens", type=int, default=40, help="assumed tokens per utterance")
    ap.add_argument("--after-decode", type=int, default=100,
                    help="AFTER: decode steps per batch with stop-at-newline (the batch's longest first line)")
    ap.add_argument("--overhead-ms", type=float, default=10.0, help="assumed fixed time per forward pass on the H100")
    ap.add_argument("--sotopia", type=Path, default=SOTOPIA)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda but CUDA is not available")
    batch = args.batch or (2 if device.type == "cpu" else BATCH)
    t_start = time.perf_counter()

    # ---- 1. prompt lengths
    chars = sotopia_prompt_chars(args.sotopia, args.utterance_tokens)
    tpl = {fam: template_tokens(fam) for fam in PAPER_PATHS}
    gen_tokens = {fam: est_tokens(chars.genuine) + n for fam, n in tpl.items()}
    pas_tokens = {fam: est_tokens(chars.passive) + n for fam, n in tpl.items()}
    intro_tok = est_tokens(chars.intro)
    print(f"== 1. Sotopia prompt lengths ({args.sotopia}, {chars.genuine.shape[0]} tasks, intros from {chars.source})")
    print(f"tokens ESTIMATED as characters / 4.0 (no Llama/Mistral tokenizer offline); template special tokens 1 each; "
          f"every utterance assumed {args.utterance_tokens} tokens ({4 * args.utterance_tokens} characters)")
    print(f"intro tokens: mean {intro_tok.mean():.0f}, min {intro_tok.min()}, median {np.median(intro_tok):.0f}, "
          f"max {intro_tok.max()}; chat template adds {tpl['inst']} ([INST] models) / {tpl['llama3']} (Llama-3.x)")
    g = gen_tokens["inst"]
    print("speaker prompt tokens by turn ([INST] template; mean / max over tasks):")
    print("  " + "  ".join(f"t{t}:{g[:, t].mean():.0f}/{g[:, t].max()}" for t in range(N_TURNS)))
    print(f"passive prompt tokens: mean {pas_tokens['inst'].mean():.0f} vs speaker {g.mean():.0f}")
    reuse_tokens = {fam: (new_tokens_with_reuse(chars.genuine, chars.genuine_common, gen_tokens[fam], fam),
                          new_tokens_with_reuse(chars.passive, chars.passive_common, pas_tokens[fam], fam))
                    for fam in PAPER_PATHS}
    gn, pn = reuse_tokens["inst"]
    print(f"with prefix reuse, tokens computed per prompt (the rest is the same agent's prompt of turn t-2, kept): "
          f"the text after the common prefix / 4 + the template's closing tokens ({template_suffix_tokens('inst')} "
          f"[INST], {template_suffix_tokens('llama3')} Llama-3.x) + {REUSE_BOUNDARY_TOKENS} boundary token; "
          "turns 0-1 the whole prompt")
    print("  speaker ([INST]; mean / max): " + "  ".join(f"t{t}:{gn[:, t].mean():.0f}/{gn[:, t].max()}"
                                                          for t in range(N_TURNS)))
    print(f"  turns 2-15: speaker {gn[:, 2:].mean():.0f} of {g[:, 2:].mean():.0f} tokens "
          f"({gn[:, 2:].sum() / g[:, 2:].sum():.1%}), passive reader {pn[:, 2:].mean():.0f} of "
          f"{pas_tokens['inst'][:, 2:].mean():.0f} ({pn[:, 2:].sum() / pas_tokens['inst'][:, 2:].sum():.1%})")

    # ---- 2. measurements
    names = [] if args.models == "none" else [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; choose from {list(CONFIGS)}")
    turn_lens = np.sort(gen_tokens["inst"][:, args.turn])
    q = [(i + 0.5) / batch for i in range(batch)]
    lengths = sorted((int(np.quantile(turn_lens, x, method="nearest")) for x in q), reverse=True)
    dev_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"CPU, {torch.get_num_threads()} torch threads")
    print(f"\n== 2. Measured ({dev_name}, torch {torch.__version__}); prompts: real lengths at turn {args.turn} "
          f"({batch} quantiles), random token ids; {args.new_tokens} new tokens per call")
    if device.type == "cpu":
        print(f"CPU: {args.layers} of 32 decoder blocks at the real widths, measured again at "
              f"{max(1, args.layers // 2)}; per-layer and fixed costs extrapolated LINEARLY to all layers. "
              "Memory: peak RSS sampled from /proc/self/statm every 5 ms (process-wide, weights included).")
    measured: list[Measured] = []
    for name in names:
        m = measure(name, args, device, lengths)
        report_measured(m, dev_name, args.new_tokens)
        measured.append(m)
    print(f"ru_maxrss of the process: {__import__('resource').getrusage(__import__('resource').RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")

    # ---- 3. projection
    dev = Device(flops={d: H100["peak_flops"][d] * H100["efficiency"][d] for d in H100["peak_flops"]},
                 bandwidth=H100["bandwidth"], overhead_s=args.overhead_ms / 1e3, memory=H100["memory"])
    calib: dict[str, dict[str, float]] = {}
    if device.type == "cuda":
        for m in measured:
            s = shape_of(m.name)
            b, p = len(m.lengths), max(m.lengths)
            t_pre, t_dec = generate_time(s, b, p, args.new_tokens, m.dtype, m.attn not in ("sdpa", "eager"), dev)
            calib[m.name] = {"dtype": m.dtype, "grouped": m.attn not in ("sdpa", "eager") or s.n_heads == s.n_kv_heads,
                             "prefill": m.prefill_full_s / t_pre,
                             "decode": m.step_full_s * (args.new_tokens - 1) / t_dec}
    print("\n== 3. Projection of the paper study in H100 GPU-hours")
    print("FLOP/byte model (per batch of b rows padded to p tokens; 2 FLOPs per multiply-add):")
    print("  prefill FLOPs = b p (2 N + 2 p H d_h L) + 2 b V D (LM head, last position; none for passive capture);"
          " bytes = weights + b p kv")
    print("  decode step at cache length c: FLOPs = b (2 N + 2 V D + 4 c H d_h L); "
          "bytes = weights (no input embedding) + f_kv b c kv")
    print("  time per forward = max(FLOPs / F_eff, bytes / BW_eff) + overhead; a call of n new tokens = 1 prefill + "
          "(n - 1) decode steps")
    print("  f_kv = 3 (cache torch.cat read+write, attention read) grouped; 3 + 2 n_rep with repeated K/V "
          "(n_rep = H / H_kv; Llama-2 has n_rep 1)")
    print("  prefix reuse: a batch of width p computes its last S columns, S = the most tokens any row needs after "
          "its agent's kept prompt of turn t-2 (whole prompt at turns 0-1 or once evicted); FLOPs = b S (2 N + "
          "4 (p - S/2) H d_h L) + LM head, bytes = weights + b (7 p - 2 S) kv; the kept prompts of the block's 50 "
          "episodes x 2 agents (kv x their lengths) come off the planner's memory and are cut to half of it "
          "(largest dropped, as ChatLM.plan_batches); passive: per reader and episode, 8 waves of 50 readings")
    for key, name, family, _ in PAPER_MODELS:
        s = shape_of(name)
        print(f"  {key:4s} {name:16s} L={s.n_layers} D={s.hidden_size} H={s.n_heads} H_kv={s.n_kv_heads} "
              f"d_h={s.head_dim} V={s.vocab_size}: params {s.n_params / 1e9:.2f} B, N (non-embedding) "
              f"{nonembed_params(s) / 1e9:.2f} B, weights fp32 {weight_bytes(s, 'float32') / 1e9:.1f} GB / bf16 "
              f"{weight_bytes(s, 'bfloat16') / 1e9:.1f} GB, kv fp32 {kv_bytes_per_token(s, 'float32') / 2**10:.0f} KiB/token, "
              f"f_kv repeated {kv_traffic_factor(s, False)}")
    print("H100 SXM5 inputs: " + ", ".join(
        f"{d} peak {H100['peak_flops'][d] / 1e12:.0f} TFLOP/s x {H100['efficiency'][d]:.0%} = "
        f"{dev.flops[d] / 1e12:.0f} TFLOP/s" for d in H100["peak_flops"])
        + f"; BW_eff {dev.bandwidth / 1e12:.2f} TB/s (75% of 3.35); overhead {args.overhead_ms:g} ms per forward; "
        f"memory {dev.memory / 2**30:.0f} GiB usable")
    if calib:
        for name, c in calib.items():
            print(f"  calibrated by the CUDA measurement of {name} ({c['dtype']}, "
                  f"{'grouped' if c['grouped'] else 'repeated'} K/V): prefill x{c['prefill']:.2f}, decode x{c['decode']:.2f} "
                  "(applied to same-dtype scenarios; M1/M3 use Mistral-7B's, L3.2 Llama-3-8B's)")
    else:
        print("  no CUDA measurement: the H100 figures are the model above with these ASSUMED efficiencies "
              "(the CPU measurements only show the per-layer extrapolation and CPU effective rates)")

    scenarios = [
        Scenario("BEFORE float32, batch 25 task order, 300 tokens, repeated K/V", "float32", False, MAX_NEW, False),
        Scenario(f"AFTER  float32, sorted, {args.after_decode} tokens, grouped K/V", "float32", True, args.after_decode, True),
        Scenario(f"AFTER  float32+TF32, sorted, {args.after_decode} tokens, grouped", "float32+tf32", True, args.after_decode, True),
        Scenario(f"AFTER  bfloat16, sorted, {args.after_decode} tokens, grouped K/V", "bfloat16", True, args.after_decode, True),
        Scenario(f"AFTER  float32, sorted, {args.after_decode} tok, grouped + reuse", "float32", True,
                 args.after_decode, True, reuse=True),
        Scenario(f"AFTER  float32+TF32, sorted, {args.after_decode} tok, grouped + reuse", "float32+tf32", True,
                 args.after_decode, True, reuse=True),
        Scenario(f"AFTER  bfloat16, sorted, {args.after_decode} tok, grouped + reuse", "bfloat16", True,
                 args.after_decode, True, reuse=True),
    ]
    results = {}
    print(f"{'scenario (GPU-hours)':58s} {'prefill':>8s} {'decode':>8s} {'passive':>8s} {'total h':>8s} "
          f"{'ratio':>7s}  worst batch; generate batches, padding; passive batches")
    before = None
    for sc in scenarios:
        r = project(sc, gen_tokens, pas_tokens, dev, calib, reuse_tokens)
        results[sc.name] = r
        total = (r["prefill"] + r["decode"] + r["passive"]) / 3600
        before = before or total
        flag = " > 80 GiB: would not run" if r["worst_mem"] > dev.memory + 2**30 else ""
        print(f"{sc.name:58s} {r['prefill'] / 3600:8.1f} {r['decode'] / 3600:8.1f} {r['passive'] / 3600:8.1f} "
              f"{total:8.1f} {before / total:6.2f}x  {r['worst_mem'] / 2**30:.0f} GiB{flag}; {r['n_batches']:,}, "
              f"{r['padded'] / r['real'] - 1:.1%} pad tokens; {r['p_batches']:,}")
    print("  (ratio = BEFORE total / this total; worst batch = weights + kept caches + the batch, memory_budget model)")
    print("prefix reuse (GiB = 2^30 bytes; kept caches as the planner sees them, worst call of any model and block):")
    for sc in scenarios:
        r = results[sc.name]
        if not sc.reuse:
            continue
        print(f"  {sc.name:58s} prompt tokens computed: simulate {r['computed'] / r['padded']:.1%} of the padded "
              f"batches ({r['computed'] / r['real']:.1%} of the real tokens), passive {r['p_computed'] / r['p_real']:.1%}; "
              f"kept caches worst {r['worst_kept'] / 2**30:.1f} GiB simulate, {r['worst_kept_p'] / 2**30:.1f} GiB "
              f"passive; {r['kept_rows'] / r['rows']:.1%} of the generate rows found their cache; "
              f"{r['evicted']:,} + {r['evicted_p']:,} caches dropped (simulate + passive)")
    for key, name, family, _ in PAPER_MODELS:  # the worst case per model: the kept caches of a block at its last turn
        s = shape_of(name)
        g_tok = gen_tokens[family]
        worst = max(int(g_tok[b0:b0 + BLOCK, N_TURNS - 2:].sum()) for b0 in range(0, N_TASKS, BLOCK))
        print(f"  {key:4s} worst case, a block's 50 episodes x 2 agents' prompts of turns 14-15 kept (none dropped): "
              + ", ".join(f"{dt} {worst * kv_bytes_per_token(s, dt) / 2**30:.1f} GiB "
                          f"(limit half of {(dev.memory - weight_bytes(s, dt)) / 2**30:.0f})"
                          for dt in ("float32", "bfloat16")))

    # sensitivity of the AFTER figures to the two softest assumptions
    sens = []
    for dec in (args.utterance_tokens + 8, args.after_decode, 200):
        for ovh in (0.0, args.overhead_ms, 20.0):
            d2 = Device(dev.flops, dev.bandwidth, ovh / 1e3, dev.memory)
            b_ = project(scenarios[0], gen_tokens, pas_tokens, d2, calib)
            row = []
            for dt, reuse in (("float32", False), ("bfloat16", False), ("bfloat16", True)):
                a_ = project(Scenario("", dt, True, dec, True, reuse), gen_tokens, pas_tokens, d2, calib, reuse_tokens)
                row.append(sum(b_[k] for k in ("prefill", "decode", "passive"))
                           / sum(a_[k] for k in ("prefill", "decode", "passive")))
            sens.append((dec, ovh, sum(b_[k] for k in ("prefill", "decode", "passive")) / 3600, *row))
    print("sensitivity: AFTER decode tokens per batch x overhead per forward -> BEFORE h, ratio fp32, ratio bf16, "
          "ratio bf16 + reuse")
    for dec, ovh, bh, r32, r16, r16r in sens:
        print(f"  {dec:4d} tokens, {ovh:4.0f} ms: BEFORE {bh:7.1f} h; BEFORE/AFTER float32 {r32:5.2f}x, bfloat16 {r16:5.2f}x, "
              f"bfloat16 + reuse {r16r:5.2f}x")

    print("\n" + "=" * 100)
    print("SUMMARY: the paper study (6 models, 36 ordered pairs x 5 seeds x 450 tasks x 16 turns + passive re-read of "
          "seeds 0-2) on one H100")
    print(f"  BEFORE (float32, batch 25 in task order, every batch decodes 300 tokens, repeated K/V): {before:8.1f} GPU-hours")
    for sc in scenarios[1:]:
        r = results[sc.name]
        total = (r["prefill"] + r["decode"] + r["passive"]) / 3600
        print(f"  {sc.name:60s}: {total:8.1f} GPU-hours  (BEFORE / AFTER = {before / total:5.2f}x)")
    print("  assumptions:")
    for line in [
        (f"tokens = characters / 4.0 (+ template specials); utterances {args.utterance_tokens} tokens; every episode runs all "
         "16 turns (no LEAVE) -- an upper bound for both"),
        (f"BEFORE decodes {MAX_NEW} tokens per batch (some row of 25 always reaches the cap); AFTER {args.after_decode} "
         f"(a batch runs until its longest first line ends: ~2.5x the mean utterance; {args.utterance_tokens + 8} and "
         "200 in the sensitivity table)"),
        ("batches: BEFORE 25 in task order; AFTER sorted by length and sized by memory_budget.plan_batches "
         "(80 GiB H100); the passive capture was already sorted before this work, so it differs only in dtype"),
        ("prefix reuse: a prompt computes what follows its agent's (reader's) prompt of turn t-2 (+ template close, "
         f"+ {REUSE_BOUNDARY_TOKENS} boundary token), a batch its rows' most; kept caches of both agents of a block "
         "at the model's own KV size (as in a same-model pair) share the GPU with one model's weights, cut to half "
         "as ChatLM does; decode is unchanged"),
        ("H100 effective rates as printed (bf16/TF32 40% MFU, FP32 SGEMM 60% of 67 TFLOP/s, 2.5 TB/s); "
         f"{args.overhead_ms:g} ms fixed per forward (launches, generate loop, sampler)"),
        ("models M1/M3 projected with their own shapes (measured stand-in: Mistral-7B-v0.2), L3.2 with its own "
         "(Llama-3-8B); model loading, judge and R2 jobs are not counted"),
        ("CPU measurements are not converted to H100 times (a 2-core CPU says nothing about H100 efficiency); "
         "they check the linear-in-layers extrapolation and give this machine's rates"),
    ]:
        print(f"   - {line}")
    print(f"(bench wall time {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
