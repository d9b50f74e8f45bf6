"""Token budgets from config.json only: KV/parameter arithmetic for Llama-2-7B, Llama-3-8B, Mistral-7B, and batch plans."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from syncr2.simulation.memory_budget import (
    LOGITS_FLOAT32_COPIES,
    ModelShape,
    TokenBudget,
    available_memory,
    bytes_per_element,
    kv_bytes_per_token,
    plan_batches,
    prefill_activation_bytes_per_token,
    weight_bytes,
)

# The published config.json files (model-relevant keys as released; no weights needed).
LLAMA2_7B_CHAT = {
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008,
    "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "float16",
    "transformers_version": "4.32.0.dev0", "use_cache": True, "vocab_size": 32000,
}
LLAMA3_8B_INSTRUCT = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128009, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 8192,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 500000.0,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.40.0.dev0",
    "use_cache": True, "vocab_size": 128256,
}
MISTRAL_7B_INSTRUCT_V02 = {
    "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
    "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.36.0", "use_cache": True, "vocab_size": 32000,
}
CONFIGS = {"llama2": LLAMA2_7B_CHAT, "llama3": LLAMA3_8B_INSTRUCT, "mistral": MISTRAL_7B_INSTRUCT_V02}
KNOWN_PARAMS = {"llama2": 6.74e9, "llama3": 8.03e9, "mistral": 7.24e9}

GB = 10**9


def shape(name: str) -> ModelShape:
    return ModelShape.from_config(CONFIGS[name])


def brute_force_bytes(cfg: dict, dtype: str, lengths: list[int], new_tokens: int,
                      eager: bool = False) -> int:
    """Independent re-count of a batch's bytes, row by row and layer by layer, from the raw config dict."""
    b = {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]
    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    heads, kv_heads, layers = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]
    hd = hidden // heads
    width = max(lengths)  # left padding: every row is as long as the longest prompt
    total = 0
    for _row in lengths:
        tokens = width + new_tokens
        per_layer_kv = tokens * (kv_heads * hd * b) * 2  # K and V
        total += sum(per_layer_kv for _ in range(layers)) + per_layer_kv  # + one transient layer copy
        attn_phase = heads * hd + 2 * kv_heads * hd + 2 * heads * hd + heads * hd + hidden
        mlp_phase = 3 * inter + hidden
        total += width * (2 * hidden + max(attn_phase, mlp_phase)) * b
        if eager:
            total += heads * width * width * (2 * b + 4)
        total += cfg["vocab_size"] * 4 * LOGITS_FLOAT32_COPIES
        total += layers * hidden * 4
    return total


# ---------------------------------------------------------------- arithmetic


def test_kv_bytes_per_token_by_hand():
    assert kv_bytes_per_token(shape("llama2"), "bfloat16") == 2 * 32 * 32 * 128 * 2 == 524288
    assert kv_bytes_per_token(shape("llama2"), "float16") == 524288
    assert kv_bytes_per_token(shape("llama2"), "float32") == 2 * 524288
    for name in ("llama3", "mistral"):
        assert kv_bytes_per_token(shape(name), "bfloat16") == 2 * 32 * 8 * 128 * 2 == 131072
        assert kv_bytes_per_token(shape(name), "float32") == 262144


@pytest.mark.parametrize("name", list(CONFIGS))
def test_param_counts_match_known_sizes(name):
    n = shape(name).n_params
    assert abs(n - KNOWN_PARAMS[name]) / KNOWN_PARAMS[name] < 0.005


def test_param_counts_exact():
    # embeddings + 32 x (q,k,v,o + gate,up,down + 2 norms) + final norm + untied lm_head
    assert shape("llama2").n_params == 2 * 32000 * 4096 + 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 4096
    assert shape("llama2").n_params == 6_738_415_616
    assert shape("llama3").n_params == 8_030_261_248
    assert shape("mistral").n_params == 7_241_732_096
    tied = ModelShape.from_config({**LLAMA2_7B_CHAT, "tie_word_embeddings": True})
    assert tied.n_params == 6_738_415_616 - 32000 * 4096
    given = ModelShape.from_config(LLAMA2_7B_CHAT)
    assert ModelShape(**{**given.__dict__, "n_params": 123}).n_params == 123


def test_weight_bytes():
    assert weight_bytes(shape("llama2"), "float32") == 4 * 6_738_415_616  # ~27 GB
    assert weight_bytes(shape("llama3"), "bfloat16") == 2 * 8_030_261_248


def test_prefill_activation_by_hand():
    # Llama-2: MLP phase dominates: residual + normed (2 x 4096) + gate, up, product (3 x 11008) + down (4096)
    assert prefill_activation_bytes_per_token(shape("llama2"), "float32") == (2 * 4096 + 3 * 11008 + 4096) * 4
    assert prefill_activation_bytes_per_token(shape("llama3"), "bfloat16") == (2 * 4096 + 3 * 14336 + 4096) * 2


def test_bytes_per_element_and_errors():
    assert [bytes_per_element(d) for d in ("float32", "bfloat16", "float16", "torch.bfloat16")] == [4, 2, 2, 2]
    with pytest.raises(ValueError, match=r"bfloat16.*float16.*float32.*'int8'"):
        bytes_per_element("int8")
    with pytest.raises(ValueError, match="dtype must be one of"):
        kv_bytes_per_token(shape("llama2"), "auto")


# ---------------------------------------------------------------- reading configs


@pytest.mark.parametrize("name", list(CONFIGS))
def test_from_pretrained_dir_reads_config_json(tmp_path, name):
    (tmp_path / "config.json").write_text(json.dumps(CONFIGS[name]))
    s = ModelShape.from_pretrained_dir(tmp_path)
    assert s == shape(name)
    assert (s.n_layers, s.n_heads, s.head_dim, s.hidden_size) == (32, 32, 128, 4096)
    assert s.n_kv_heads == (32 if name == "llama2" else 8)
    assert s.tie_word_embeddings is False


def test_from_pretrained_dir_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        ModelShape.from_pretrained_dir(tmp_path)


def test_from_config_accepts_pretrained_config():
    from transformers import LlamaConfig, MistralConfig

    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "vocab_size", "tie_word_embeddings")
    assert ModelShape.from_config(LlamaConfig(**{k: LLAMA3_8B_INSTRUCT[k] for k in keys})) == shape("llama3")
    assert ModelShape.from_config(MistralConfig(**{k: MISTRAL_7B_INSTRUCT_V02[k] for k in keys})) == shape("mistral")


def test_from_config_defaults_and_errors():
    cfg = {k: v for k, v in LLAMA2_7B_CHAT.items() if k not in ("num_key_value_heads", "tie_word_embeddings")}
    assert ModelShape.from_config(cfg) == shape("llama2")  # kv heads = heads, untied
    assert ModelShape.from_config({**cfg, "head_dim": 64}).head_dim == 64
    with pytest.raises(ValueError, match="vocab_size"):
        ModelShape.from_config({k: v for k, v in cfg.items() if k != "vocab_size"})
    with pytest.raises(ValueError, match="multiple"):
        ModelShape.from_config({**cfg, "num_key_value_heads": 5})


# ---------------------------------------------------------------- plans


def test_llama2_float32_on_80gb_splits_into_fitting_batches():
    s = shape("llama2")
    avail = available_memory("cpu", 80 * GB, weight_bytes(s, "float32"))
    assert avail == 80 * GB - 4 * 6_738_415_616
    budget = int(avail * 0.9)
    lengths, new = [1800] * 25, 300
    # one batch of 25 would blow up: its KV cache alone exceeds what is left after the weights
    assert 25 * (1800 + 300) * 1048576 > avail
    assert brute_force_bytes(LLAMA2_7B_CHAT, "float32", lengths, new) > budget
    plan = plan_batches(lengths, new, s, "float32", avail)
    assert [len(b) for b in plan] == [18, 7]
    for batch in plan:
        assert brute_force_bytes(LLAMA2_7B_CHAT, "float32", [lengths[i] for i in batch], new) <= budget
        assert TokenBudget(s, "float32", avail).batch_bytes([lengths[i] for i in batch], new) == \
            brute_force_bytes(LLAMA2_7B_CHAT, "float32", [lengths[i] for i in batch], new)
    assert sorted(i for b in plan for i in b) == list(range(25))
    # bfloat16 halves the cache and the weights: one batch
    avail_bf16 = available_memory("cpu", 80 * GB, weight_bytes(s, "bfloat16"))
    assert [len(b) for b in plan_batches(lengths, new, s, "bfloat16", avail_bf16)] == [25]


def test_llama3_bf16_needs_fewer_batches():
    lengths, new = [1800] * 25, 300
    s2, s3 = shape("llama2"), shape("llama3")
    plan2 = plan_batches(lengths, new, s2, "float32", available_memory("cpu", 80 * GB, weight_bytes(s2, "float32")))
    avail3 = available_memory("cpu", 80 * GB, weight_bytes(s3, "bfloat16"))
    plan3 = plan_batches(lengths, new, s3, "bfloat16", avail3)
    assert len(plan3) < len(plan2)
    assert plan3 == [list(range(25))]
    assert brute_force_bytes(LLAMA3_8B_INSTRUCT, "bfloat16", lengths, new) <= int(avail3 * 0.9)


def test_prompt_too_long_to_fit_alone_raises_with_numbers():
    s = shape("llama2")
    avail = 4 * GB
    need = brute_force_bytes(LLAMA2_7B_CHAT, "float32", [4000], 300)
    budget = int(avail * 0.9)
    assert need > budget
    with pytest.raises(ValueError) as err:
        plan_batches([100, 4000, 50], 300, s, "float32", avail)
    msg = str(err.value)
    assert "4000 tokens" in msg and "max_new_tokens=300" in msg
    assert f"{need:,} bytes" in msg and f"{budget:,} bytes" in msg
    assert "bfloat16" in msg and "max_new_tokens" in msg and "bigger GPU" in msg


def test_plan_is_partition_sorted_longest_first_and_honours_max_batch():
    s = shape("mistral")
    lengths = [30, 500, 120, 500, 7, 260, 260, 1]
    plan = plan_batches(lengths, 64, s, "bfloat16", 40 * GB, max_batch=3)
    assert plan == [[1, 3, 5], [6, 2, 0], [4, 7]]
    assert all(len(b) <= 3 for b in plan)
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
    assert plan_batches([], 64, s, "bfloat16", 40 * GB) == []
    with pytest.raises(ValueError, match="max_batch"):
        plan_batches(lengths, 64, s, "bfloat16", 40 * GB, max_batch=0)
    with pytest.raises(ValueError, match="prompt lengths"):
        plan_batches([3, 0], 64, s, "bfloat16", 40 * GB)


def test_eager_attention_counts_scores():
    s = shape("llama2")
    sdpa = TokenBudget(s, "float16", 60 * GB)
    eager = TokenBudget(s, "float16", 60 * GB, attention="eager")
    assert eager.sequence_bytes(1800, 300) - sdpa.sequence_bytes(1800, 300) == 32 * 1800 * 1800 * (2 * 2 + 4)
    assert eager.batch_bytes([1800, 10], 300) == brute_force_bytes(LLAMA2_7B_CHAT, "float16", [1800, 10], 300, True)
    n_sdpa = len(plan_batches([1800] * 40, 300, s, "float16", 60 * GB))
    n_eager = len(plan_batches([1800] * 40, 300, s, "float16", 60 * GB, attention="eager"))
    assert n_eager >= n_sdpa
    with pytest.raises(ValueError, match="attention"):
        TokenBudget(s, "float16", GB, attention="flash")
    with pytest.raises(ValueError, match="safety"):
        TokenBudget(s, "float16", GB, safety=1.5)


@pytest.mark.parametrize("name,dtype", [("llama2", "bfloat16"), ("llama3", "bfloat16"), ("mistral", "float32")])
def test_random_plans_fit_and_are_greedy_tight(name, dtype):
    """Every batch fits (brute force); merging any two consecutive batches does not fit or exceeds max_batch."""
    rng = np.random.default_rng(1234)
    s, cfg = shape(name), CONFIGS[name]
    for _trial in range(25):
        n = int(rng.integers(1, 60))
        lengths = [int(x) for x in rng.integers(1, 3000, size=n)]
        new = int(rng.integers(0, 400))
        max_batch = None if rng.random() < 0.5 else int(rng.integers(1, 20))
        avail = int(rng.integers(2 * GB, 40 * GB))
        safety = float(rng.uniform(0.5, 1.0))
        budget = int(avail * safety)
        try:
            plan = plan_batches(lengths, new, s, dtype, avail, max_batch=max_batch, safety=safety)
        except ValueError as err:
            assert brute_force_bytes(cfg, dtype, [max(lengths)], new) > budget, err
            continue
        assert sorted(i for b in plan for i in b) == list(range(n))
        flat = [lengths[i] for b in plan for i in b]
        assert flat == sorted(flat, reverse=True)
        for batch in plan:
            assert brute_force_bytes(cfg, dtype, [lengths[i] for i in batch], new) <= budget
            assert max_batch is None or len(batch) <= max_batch
        for a, b in zip(plan, plan[1:]):
            merged = [lengths[i] for i in a + b]
            too_many = max_batch is not None and len(merged) > max_batch
            assert too_many or brute_force_bytes(cfg, dtype, merged, new) > budget
            # tighter: not even the next prompt could have joined
            grown = [lengths[i] for i in a + b[:1]]
            assert (max_batch is not None and len(grown) > max_batch) or \
                brute_force_bytes(cfg, dtype, grown, new) > budget


# ---------------------------------------------------------------- available memory


def test_available_memory_cpu_needs_a_limit():
    with pytest.raises(ValueError, match="limit_bytes"):
        available_memory("cpu", None, 10 * GB)
    assert available_memory("cpu", 80 * GB, 27 * GB) == 53 * GB
    with pytest.raises(ValueError, match="leaves nothing"):
        available_memory("cpu", 20 * GB, 27 * GB)
    with pytest.raises(ValueError, match="available_bytes must be > 0"):
        TokenBudget(shape("llama2"), "float32", 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_available_memory_cuda_uses_free_memory():
    """On a real GPU: free memory plus PyTorch's reserved-but-unused blocks, capped by a limit minus the weights."""
    held = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")  # 256 MiB that is not free
    free, _total = torch.cuda.mem_get_info()
    slack = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    got = available_memory("cuda", None, 27 * GB)
    assert abs(got - (free + slack)) < 64 * 2**20  # the allocator may move a little between the calls
    assert available_memory("cuda", 27 * GB + 10 * GB, 27 * GB) <= 10 * GB
    del held


def test_error_message_shape_is_readable():
    s = shape("llama2")
    with pytest.raises(ValueError, match=re.escape("only 900,000,000 bytes")):
        TokenBudget(s, "float32", GB).max_batch_size(2000, 300)
