"""Simulation and passive reading end to end on the tiny models and the demo tasks."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import transformers

from syncr2.cli import main
from syncr2.core.shards import ShardMeta, open_shard
from syncr2.simulation.prompts import PromptTemplates, passive_prompt
from syncr2.simulation.presets import PromptPreset
from syncr2.simulation.simulate import (
    EPISODE_COLUMNS,
    GenerationSettings,
    load_pair,
    read_episodes,
    simulate_block,
)
from syncr2.simulation.tasks import (
    load_demo_tasks,
    read_tasks,
    tasks_frame,
    write_tasks,
)
from syncr2.simulation.tiny_models import build_from_spec
from syncr2.synchrony.datasets import build_dataset

PROTOCOL = PromptPreset.from_config(None)

SPECS = {
    "tl": {"arch": "llama", "n_layers": 3, "hidden_size": 48, "n_heads": 4, "n_kv_heads": 2, "intermediate_size": 96, "seed": 5},
    "tm": {"arch": "mistral", "n_layers": 2, "hidden_size": 64, "n_heads": 4, "n_kv_heads": 2, "intermediate_size": 128, "seed": 6},
}
SETTINGS = GenerationSettings(max_turns=6, temperature=0.7, max_new_tokens=12)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sim")
    paths = {k: str(build_from_spec(spec, root / k)) for k, spec in SPECS.items()}
    frame = tasks_frame(load_demo_tasks(), PROTOCOL, reader_seed=0)
    write_tasks(frame, root / "tasks.parquet")
    yield root, paths, read_tasks(root / "tasks.parquet")
    torch.set_num_threads(threads)


def run(env, out, seed=0, block=0, pair=("tl", "tm"), batch_size=8):
    root, paths, tasks = env
    models = load_pair([(k, paths[k], {"batch_size": batch_size}) for k in pair], SETTINGS)
    simulate_block(tasks, block, 4, seed, models, SETTINGS, PROTOCOL, out / "ep.parquet",
                   (out / "a1.parquet", out / "a2.parquet"))
    return read_episodes(out / "ep.parquet"), models


def test_block_outputs_and_seed_reproducibility(env, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    ep, models = run(env, tmp_path / "a")
    assert list(ep.columns) == list(EPISODE_COLUMNS)
    assert sorted(ep.task_id.unique()) == [0, 1, 2, 3]  # block 0 of 4 tasks
    for task, grp in ep.groupby("task_id"):
        assert list(grp.turn) == list(range(len(grp)))  # turns 0.. without gaps
        assert list(grp.speaker) == [1 + t % 2 for t in grp.turn]
        assert grp.end_reason.iloc[-1] in ("leave", "max_turns") and grp.end_reason.iloc[:-1].isna().all()
        assert len(grp) == SETTINGS.max_turns or grp.end_reason.iloc[-1] == "leave"
    assert (ep.n_new_tokens <= SETTINGS.max_new_tokens).all()
    assert not ep.utterance.str.contains("\n").any()
    s1 = open_shard(tmp_path / "a" / "a1.parquet", model_key="tl", kind="genuine")
    s2 = open_shard(tmp_path / "a" / "a2.parquet", model_key="tm", kind="genuine")
    assert (s1.meta.n_layers, s1.meta.hidden_size, s2.meta.n_layers, s2.meta.hidden_size) == (3, 48, 2, 64)
    assert len(s1.index()) + len(s2.index()) == len(ep)
    # the recorded representation of a turn is the speaker's block outputs on that turn's prompt
    row = ep[(ep.speaker == 2)].iloc[2]
    lm = models[1][1]
    direct = lm.capture([lm.render(row.prompt)])[0]
    pos = s2.index().reset_index().set_index(["task_id", "turn"]).loc[(row.task_id, row.turn), "index"]
    np.testing.assert_allclose(np.stack([s2.layer(l)[pos] for l in range(2)]), direct, atol=1e-4)
    # the same seed reproduces the block (dialogue and representations); another seed does not
    ep_again, _ = run(env, tmp_path / "b")
    pd.testing.assert_frame_equal(ep, ep_again)
    np.testing.assert_array_equal(s1.layer(1), open_shard(tmp_path / "b" / "a1.parquet").layer(1))
    ep_other, _ = run(env, tmp_path / "c", seed=1)
    assert not ep_other.utterance.equals(ep.utterance)


def test_passive_reading_and_condition_dataset(env, tmp_path):
    root, paths, tasks = env
    ep, models = run(env, tmp_path)
    entries = [{"key": k, "path": str(paths[k]), "options": {}} for k in ("tl", "tm")]
    rc = main(["read-passive", "--settings", json.dumps({"models": entries}),
               "--in", "tasks", str(root / "tasks.parquet"), "--in", "episodes", str(tmp_path / "ep.parquet"),
               "--out", "reps1", str(tmp_path / "p1.parquet"), "--out", "reps2", str(tmp_path / "p2.parquet")])
    assert rc == 0
    p1 = open_shard(tmp_path / "p1.parquet", kind="passive", model_key="tl")
    g1 = open_shard(tmp_path / "a1.parquet")
    # provenance: the passive shard carries the genuine run's sampling settings and date
    assert (g1.meta.date_string, g1.meta.temperature, g1.meta.max_new_tokens) == ("26 Jul 2024", 0.7, 12)
    assert g1.meta.top_k == 50 and g1.meta.top_p == 1.0 and g1.meta.stop_at_newline is False
    assert (g1.meta.torch_version, g1.meta.transformers_version) == (torch.__version__, transformers.__version__)
    assert g1.meta.chat_template_sha256 == models[0][1].chat_template_sha256
    for name in (*ShardMeta.PAIR_FIELDS, *ShardMeta.MODEL_FIELDS, "top_k", "top_p"):
        assert getattr(p1.meta, name) == getattr(g1.meta, name), name
    pd.testing.assert_frame_equal(p1.index(), g1.index())
    # the passive representation is the reader's view of the transformed prompt, not the genuine one
    row = ep[ep.speaker == 1].iloc[1]
    reader = tasks.set_index("task_id").loc[row.task_id, "reader_name"]
    lm = models[0][1]
    text = passive_prompt(row.prompt, row.speaker_name, reader, PromptTemplates())
    np.testing.assert_allclose(p1.layer(0)[1], lm.capture([lm.render(text)])[0, 0], atol=1e-4)
    assert np.abs(p1.layer(0) - g1.layer(0)).max() > 1e-3
    genuine = [tmp_path / "a1.parquet", tmp_path / "a2.parquet"]
    passive = [tmp_path / "p1.parquet", tmp_path / "p2.parquet"]
    for cond in ("experimental", "passive", "lag1"):
        ds = build_dataset(genuine, cond, "AtoB", passive=passive)
        assert len(ds) > 0
        assert ds.load_source(2, np.arange(len(ds))).shape == (len(ds), 48)
        assert ds.load_target(1, np.arange(len(ds))).shape == (len(ds), 64)


def test_batch_size_changes_nothing(env, tmp_path):
    # intentionally changed: replies are sampled per episode, so the batch size no longer changes the dialogue
    (tmp_path / "big").mkdir(), (tmp_path / "one").mkdir()
    ep_big, _ = run(env, tmp_path / "big", pair=("tl", "tl"), batch_size=8)
    ep_one, _ = run(env, tmp_path / "one", pair=("tl", "tl"), batch_size=1)
    pd.testing.assert_frame_equal(ep_big, ep_one)
    for name in ("a1", "a2"):
        big, one = open_shard(tmp_path / "big" / f"{name}.parquet"), open_shard(tmp_path / "one" / f"{name}.parquet")
        pd.testing.assert_frame_equal(big.index(), one.index())
        for layer in range(3):
            np.testing.assert_allclose(big.layer(layer), one.layer(layer), atol=1e-5, rtol=0)
