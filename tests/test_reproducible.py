"""Reproducible episodes: a reply depends on (task, ordered pair, seed, settings), not on blocks or batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from syncr2.simulation.lm import RowGumbelSampler
from syncr2.simulation.presets import PromptPreset
from syncr2.simulation.simulate import GenerationSettings, block_rows, load_pair, run_block
from syncr2.simulation.tasks import load_demo_tasks, tasks_frame
from syncr2.simulation.tiny_models import build_from_spec

PROTOCOL = PromptPreset.from_config(None)

SPECS = {
    "tl": {"arch": "llama", "n_layers": 3, "hidden_size": 48, "n_heads": 4, "n_kv_heads": 2, "intermediate_size": 96, "seed": 5},
    "tm": {"arch": "mistral", "n_layers": 2, "hidden_size": 64, "n_heads": 4, "n_kv_heads": 2, "intermediate_size": 128, "seed": 6},
}
SETTINGS = GenerationSettings(max_turns=6, temperature=0.7, max_new_tokens=12, stop_at_newline=True)
#: agent 2's model filters with top-k and top-p, so the filters' interplay with the noise is exercised too
OPTIONS = {"tl": {}, "tm": {"top_k": 20, "top_p": 0.9}}
DIALOGUE = ["task_id", "seed", "turn", "speaker", "model_key", "prompt", "raw_output", "utterance",
            "end_reason", "n_prompt_tokens", "n_new_tokens"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("repro")
    paths = {k: str(build_from_spec(spec, root / k)) for k, spec in SPECS.items()}
    yield paths, tasks_frame(load_demo_tasks(), PROTOCOL, reader_seed=0)
    torch.set_num_threads(threads)


def simulate_all(env, block_size: int, batch_size: int, seed: int = 0):
    """Every demo task in blocks of ``block_size``, both models at ``batch_size``; rows sorted by (task, turn)."""
    paths, tasks = env
    models = load_pair([(k, paths[k], {**OPTIONS[k], "batch_size": batch_size}) for k in ("tl", "tm")], SETTINGS)
    episodes, reps = [], {1: [], 2: []}
    for block in range(-(-len(tasks) // block_size)):
        ep, r = run_block(block_rows(tasks, block, block_size), models, seed, block, SETTINGS, PROTOCOL,
                          progress=False)
        episodes.append(ep)
        for agent in (1, 2):
            reps[agent].append(r[agent])
    ep = pd.concat(episodes).sort_values(["task_id", "turn"]).reset_index(drop=True)
    out = {}
    for agent in (1, 2):
        idx = pd.concat([i for i, _ in reps[agent]], ignore_index=True)
        arr = np.concatenate([a for _, a in reps[agent]])
        order = np.lexsort((idx["turn"].to_numpy(), idx["task_id"].to_numpy()))
        out[agent] = (idx.iloc[order].reset_index(drop=True), arr[order])
    return ep, out


@pytest.fixture(scope="module")
def big(env):
    return simulate_all(env, block_size=6, batch_size=12)


def test_blocks_and_batches_do_not_change_episodes(env, big):
    ep_big, reps_big = big
    ep_small, reps_small = simulate_all(env, block_size=3, batch_size=2)
    assert sorted(ep_big.task_id.unique()) == list(range(12))
    pd.testing.assert_frame_equal(ep_big[DIALOGUE], ep_small[DIALOGUE])
    turns = ep_big.groupby("task_id")["turn"].max() + 1
    assert turns.nunique() > 1 or (ep_big.end_reason == "leave").any() or (turns == SETTINGS.max_turns).all()
    for agent in (1, 2):
        pd.testing.assert_frame_equal(reps_big[agent][0], reps_small[agent][0])
        np.testing.assert_allclose(reps_big[agent][1], reps_small[agent][1], atol=1e-5, rtol=0)
    assert ep_big.raw_output.nunique() > len(ep_big) // 2  # real sampled text, not one degenerate reply


def test_same_seed_reproduces_other_seed_differs(env, big):
    ep_big, reps_big = big
    ep_again, reps_again = simulate_all(env, block_size=6, batch_size=12)
    pd.testing.assert_frame_equal(ep_big, ep_again)
    np.testing.assert_array_equal(reps_big[1][1], reps_again[1][1])
    ep_other, _ = simulate_all(env, block_size=6, batch_size=12, seed=1)
    first = ep_big[ep_big.turn == 0].raw_output.tolist()
    other = ep_other[ep_other.turn == 0].raw_output.tolist()
    assert sum(a != b for a, b in zip(first, other)) >= len(first) // 2


# ------------------------------------------------------------------- the Gumbel-max sampler (oracle)
def empirical(sampler: RowGumbelSampler, logits: torch.Tensor, n: int) -> np.ndarray:
    """Frequencies of argmax(sampler(logits)) over ``n`` rows, each with its own generator."""
    scores = sampler(torch.zeros((n, 1), dtype=torch.long), logits.expand(n, -1).clone())
    winners = scores.argmax(-1).numpy()
    return np.bincount(winners, minlength=logits.shape[-1]) / n


def test_gumbel_max_matches_softmax():
    n = 40_000
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])
    for temp in (0.7, 1.0, 1.6):
        freq = empirical(RowGumbelSampler(range(n), temp), logits, n)
        p = torch.softmax(logits[0] / temp, -1).numpy()
        tol = 5 * np.sqrt(p * (1 - p) / n) + 1e-3
        assert np.all(np.abs(freq - p) < tol), (temp, freq, p)


def test_gumbel_max_with_top_k_and_top_p_filters_first():
    n = 40_000
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])
    # top-k 3: the three best tokens, renormalised
    freq = empirical(RowGumbelSampler(range(n), 0.7, top_k=3), logits, n)
    p = torch.softmax(logits[0, :3] / 0.7, -1).numpy()
    assert np.all(freq[3:] == 0)
    assert np.all(np.abs(freq[:3] - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-3)
    # top-p after temperature (transformers' order): the smallest set of mass >= top_p
    full = torch.softmax(logits[0] / 0.7, -1).numpy()
    keep = int(np.searchsorted(np.cumsum(full), 0.9) + 1)
    freq = empirical(RowGumbelSampler(range(n), 0.7, top_p=0.9), logits, n)
    p = full[:keep] / full[:keep].sum()
    assert np.all(freq[keep:] == 0) and keep < 6
    assert np.all(np.abs(freq[:keep] - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-3)


def test_gumbel_rows_have_their_own_streams():
    logits = torch.randn(1, 50, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros((1, 1), dtype=torch.long)
    alone = RowGumbelSampler([7], 1.0)(ids, logits.clone()).argmax(-1).item()
    sampler = RowGumbelSampler([3, 7, 9], 1.0)
    together = sampler(ids.expand(3, -1), logits.expand(3, -1).clone()).argmax(-1).tolist()
    assert together[1] == alone
    # one generator advances across steps: a row's first draw is the same, later ones differ
    steps = RowGumbelSampler([7], 1.0)
    draws = [steps(ids, logits.clone()).argmax(-1).item() for _ in range(20)]
    assert draws[0] == alone and len(set(draws)) > 1


def test_a_memory_budget_splits_batches_and_changes_nothing(env):
    """A memory limit too small for one batch of 12 long prompts splits generation and passive reading.

    Oracle: the same replies and block outputs as without a budget, and the
    planner's own arithmetic for the batch count.
    """
    from syncr2.simulation.lm import ChatLM, LMConfig
    from syncr2.simulation.memory_budget import ModelShape, TokenBudget, plan_batches, weight_bytes

    paths, tasks = env
    prompts = [f"{row.intro1}\nTurn 0: {row.agent1_name} said:" for row in tasks.itertuples()]
    free = ChatLM.load(LMConfig(path=paths["tl"], batch_size=12, max_new_tokens=12, device="cpu"))
    lengths = [len(r) for r in free.tokenize(prompts)]
    shape = ModelShape.from_config(free.model.config)
    weights = weight_bytes(shape, "float32")
    per_prompt = TokenBudget(shape, "float32", 10**12).batch_bytes([max(lengths)], 12)
    limit_gb = (weights + 3.5 * per_prompt / 0.9) / 1e9  # about three of the longest prompts per batch
    tight = ChatLM.load(LMConfig(path=paths["tl"], batch_size=12, max_new_tokens=12, device="cpu",
                                 memory_limit_gb=limit_gb))
    expected = plan_batches(lengths, 12, shape, "float32", int(limit_gb * 1e9) - weights, max_batch=12)
    assert 3 <= len(expected) < len(prompts) and tight.plan_batches(lengths, 12) == expected
    a = free.generate(prompts, seed=7)
    b = tight.generate(prompts, seed=7)
    assert free.n_generate_calls == 1 and tight.n_generate_calls == len(expected)
    assert a.texts == b.texts and a.finish_reasons == b.finish_reasons
    np.testing.assert_allclose(a.reps, b.reps, atol=1e-5)
    np.testing.assert_allclose(free.capture(prompts), tight.capture(prompts), atol=1e-5)

