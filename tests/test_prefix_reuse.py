"""Prefix reuse across turns is exact: the same episodes, tokens and representations with and without it.

Real checkpoints through ``from_pretrained``: tiny random Llama, Mistral with a
sliding window shorter than the prompts, and Gemma-3 (local and global blocks)
on the demo tasks with the protocol's prompts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from syncr2.simulation.lm import ChatLM, LMConfig
from syncr2.simulation.memory_budget import ModelShape, weight_bytes
from syncr2.simulation.passive import passive_prompts
from syncr2.simulation.prefix_cache import KeptPrefix, PrefixStore, common_prefix_length
from syncr2.simulation.presets import PromptPreset
from syncr2.simulation.simulate import GenerationSettings, block_rows, load_pair, run_block
from syncr2.simulation.tasks import load_demo_tasks, tasks_frame
from syncr2.simulation.tiny_models import build_from_spec

PROTOCOL = PromptPreset.from_config(None)
SPECS = {
    "llama": {"arch": "llama", "n_layers": 3, "hidden_size": 48, "n_heads": 4, "n_kv_heads": 2,
              "intermediate_size": 96, "seed": 5},
    # windows far shorter than the prompts (~300-600 tokens): the masks, not the cache, keep them
    "mistral": {"arch": "mistral", "n_layers": 2, "hidden_size": 64, "n_heads": 4, "n_kv_heads": 2,
                "intermediate_size": 128, "seed": 6, "sliding_window": 64},
    "gemma3": {"arch": "gemma3", "n_layers": 7, "hidden_size": 64, "n_heads": 4, "n_kv_heads": 1,
               "intermediate_size": 128, "seed": 7, "sliding_window": 96},
}
TEMPLATE = "{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}<|assistant|>"
SETTINGS = GenerationSettings(max_turns=6, temperature=0.7, max_new_tokens=10, stop_at_newline=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("reuse")
    paths = {k: str(build_from_spec(spec, root / k)) for k, spec in SPECS.items()}
    return paths, tasks_frame(load_demo_tasks(), PROTOCOL, reader_seed=0)


def simulate(env, arch_pair: tuple[str, str], reuse: bool, batch_size: int = 4):
    paths, tasks = env
    opts = {"chat_template": TEMPLATE, "prefix_reuse": reuse, "batch_size": batch_size}
    models = load_pair([(k, paths[k], opts) for k in arch_pair], SETTINGS)
    episodes, reps = run_block(block_rows(tasks, 0, 6), models, 0, 0, SETTINGS, PROTOCOL, progress=False)
    return episodes, reps, models


def assert_close_reps(a: np.ndarray, b: np.ndarray) -> None:
    """Representations equal to 1e-4 of their range (float rounding of differently shaped batches)."""
    assert a.shape == b.shape
    span = float(a.max() - a.min())
    assert np.abs(a - b).max() <= 1e-4 * span


@pytest.mark.parametrize("pair", [("llama", "mistral"), ("gemma3", "gemma3")])
def test_episodes_identical_with_and_without_reuse(env, pair):
    plain, plain_reps, _ = simulate(env, pair, reuse=False)
    reused, reused_reps, models = simulate(env, pair, reuse=True)
    pd.testing.assert_frame_equal(plain, reused)  # every prompt, raw output, token count and end
    assert len(plain) > 6 and plain["n_prompt_tokens"].max() > 2 * SPECS[pair[0]].get("sliding_window", 0)
    for agent in (1, 2):
        pd.testing.assert_frame_equal(plain_reps[agent][0], reused_reps[agent][0])
        assert_close_reps(plain_reps[agent][1], reused_reps[agent][1])
    store = models[0][1].prefixes
    assert store.reused_tokens > store.computed_tokens  # most of every later prompt was reused
    assert len(store) == 0  # the block dropped its kept caches


def test_batch_size_does_not_matter_with_reuse(env):
    one, one_reps, _ = simulate(env, ("llama", "gemma3"), reuse=True, batch_size=1)
    many, many_reps, _ = simulate(env, ("llama", "gemma3"), reuse=True, batch_size=6)
    pd.testing.assert_frame_equal(one, many)
    for agent in (1, 2):
        assert_close_reps(one_reps[agent][1], many_reps[agent][1])


def test_passive_reading_with_and_without_reuse(env):
    paths, tasks = env
    episodes, _, _ = simulate(env, ("gemma3", "gemma3"), reuse=False)
    rows = episodes[episodes["speaker"] == 1].reset_index(drop=True)
    texts = passive_prompts(rows, tasks, PROTOCOL)
    keys = list(zip(rows["task_id"], rows["seed"]))
    out = {}
    for reuse in (False, True):
        lm = ChatLM.load(LMConfig(path=paths["gemma3"], chat_template=TEMPLATE, batch_size=4, prefix_reuse=reuse))
        out[reuse] = lm.capture([lm.render(t) for t in texts], keys=keys)
        if reuse:
            assert lm.prefixes.reused_tokens > lm.prefixes.computed_tokens
            assert len(lm.prefixes) == 0
    assert_close_reps(out[False], out[True])


def test_layout_reuses_at_most_the_common_prefix():
    store = PrefixStore()
    k = [torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)]
    store._entries["a"] = KeptPrefix(ids=[1, 2, 3, 4, 5, 6], keys=k, values=k)
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert store.reusable("a", [1, 2, 3, 4, 5, 6]) == 5  # one token must always run
    assert store.reusable("a", [1, 2, 9]) == 2 and store.reusable("b", [1, 2]) == 0
    layout = store.layout(["a", None], [[1, 2, 3, 4, 9, 9, 9], [7, 7, 7]])
    # row 0 needs 3 new tokens, row 1 (unknown key) all 3: both compute 3, row 0 reuses 4
    assert (layout.width, layout.computed, layout.reused) == (7, 3, (4, 0))
    past = store.past(["a", None], layout, 1)
    keys = past.layers[0].keys
    assert keys.shape == (2, 2, 4, 3)
    assert torch.equal(keys[0], k[0][:, :4]) and not keys[1].any()  # row 1 is zero padding


def test_planner_counts_and_bounds_the_kept_caches(env):
    paths, _ = env
    limit_gb = 0.05
    lm = ChatLM.load(LMConfig(path=paths["llama"], chat_template=TEMPLATE, batch_size=64, memory_limit_gb=limit_gb))
    shape = ModelShape.from_config(lm.model.config)
    free = int(limit_gb * 1e9) - weight_bytes(shape, "float32")
    lengths = [400] * 64
    before = lm.plan_batches(lengths, 10)
    # kept caches worth 40% of the free memory leave fewer rows per batch
    n_tok = int(0.4 * free) // (2 * 3 * 2 * 12 * 4)
    big = torch.zeros(2, n_tok, 12)
    lm.prefixes._entries["x"] = KeptPrefix(ids=[0], keys=[big] * 3, values=[big] * 3)
    after = lm.plan_batches(lengths, 10)
    assert len(after) > len(before)
    # more than half of the memory: the largest entries are dropped first
    lm.prefixes._entries["y"] = KeptPrefix(ids=[0], keys=[big] * 3, values=[big] * 3)
    lm.plan_batches(lengths, 10)
    assert len(lm.prefixes) == 1 and lm.prefixes.nbytes <= free // 2


def test_reuse_exact_on_smollm2(smollm2_checkpoint, one_thread):
    """The real SmolLM2-135M-Instruct (converted from its registry GGUF), both agents, 4 demo tasks."""
    tasks = tasks_frame(load_demo_tasks(), PROTOCOL, reader_seed=0)
    settings = GenerationSettings(max_turns=6, temperature=0.7, max_new_tokens=16, stop_at_newline=True)
    out = {}
    for reuse in (False, True):
        specs = [(k, str(smollm2_checkpoint), {"prefix_reuse": reuse, "batch_size": 4}) for k in ("s1", "s2")]
        models = load_pair(specs, settings)
        out[reuse] = run_block(block_rows(tasks, 0, 4), models, 0, 0, settings, PROTOCOL, progress=False)
        if reuse:
            store = models[0][1].prefixes
            assert store.reused_tokens > store.computed_tokens  # turns 0 and 1 compute whole prompts
    pd.testing.assert_frame_equal(out[False][0], out[True][0])
    assert out[True][0]["raw_output"].str.len().gt(0).mean() > 0.8  # a real model says something
    for agent in (1, 2):
        assert_close_reps(out[False][1][agent][1], out[True][1][agent][1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reuse_exact_on_cuda(env):
    paths, tasks = env
    out = {}
    for reuse in (False, True):
        opts = {"chat_template": TEMPLATE, "prefix_reuse": reuse, "batch_size": 4, "device": "cuda"}
        models = load_pair([(k, paths[k], opts) for k in ("llama", "gemma3")], SETTINGS)
        out[reuse] = run_block(block_rows(tasks, 0, 6), models, 0, 0, SETTINGS, PROTOCOL, progress=False)
    pd.testing.assert_frame_equal(out[False][0], out[True][0])
    for agent in (1, 2):
        assert_close_reps(out[False][1][agent][1], out[True][1][agent][1])
