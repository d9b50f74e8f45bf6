"""judge_block end to end: demo tasks, hand-made episodes, real backends (scripted HTTP server, tiny model)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from syncr2.social.judge import cache_key, judge_block, make_backend
from syncr2.social.judge_prompt import DIMENSIONS, judge_messages, prompt_sha256
from syncr2.simulation.simulate import EPISODE_COLUMNS
from syncr2.simulation.tasks import load_demo_tasks, tasks_frame
from syncr2.simulation.tiny_models import build_from_spec

sys.path.insert(0, str(Path(__file__).parent))
from test_judge_http import ScriptedServer, act  # noqa: E402

SEED = 2
BAD_TASK = 1  # the scripted server answers this task's prompts with text that is no judge reply


@pytest.fixture(scope="module")
def tasks() -> pd.DataFrame:
    return tasks_frame(load_demo_tasks()).sort_values("task_id").head(4).reset_index(drop=True)


def make_episodes(tasks: pd.DataFrame, seed: int = SEED) -> pd.DataFrame:
    """A fake episodes table (the simulation's columns): 3 or 4 turns per task, alternating speakers."""
    rows = []
    for k, t in enumerate(tasks.to_dict("records")):
        for turn in range(3 + k % 2):
            agent = 1 + turn % 2
            text = f"Turn text {turn} of task {t['task_id']}."
            rows.append({
                "task_id": t["task_id"], "seed": seed, "turn": turn, "speaker": agent,
                "speaker_name": t[f"agent{agent}_name"], "model_key": f"m{agent}", "prompt": "(prompt)",
                "raw_output": text, "utterance": text, "end_reason": "max_turns" if turn == 2 + k % 2 else "",
                "n_prompt_tokens": 10, "n_new_tokens": 5,
            })
    return pd.DataFrame(rows, columns=list(EPISODE_COLUMNS))


@pytest.fixture(scope="module")
def episodes(tasks) -> pd.DataFrame:
    return make_episodes(tasks)


def responder(tasks: pd.DataFrame):
    """Valid replies, except garbage for BAD_TASK (recognised by its agent names in the prompt)."""
    bad = tasks.set_index("task_id").loc[BAD_TASK]
    marker = f"Participants: {bad['agent1_name']} and {bad['agent2_name']}"

    def respond(n, body):
        return act("garbage" if marker in body["messages"][-1]["content"] else "ok")

    return respond


def http_backend(url: str, **kw):
    return make_backend({"backend": "openai_http", "base_url": url, "model": "scripted", "max_tokens": 256,
                         "timeout_s": 10, "max_retries": 1, "backoff_s": 0.01, "backoff_max_s": 0.02, **kw})


def run(tasks, episodes, backend, tmp_path, name="block0.parquet", **kw):
    args = dict(style="authors", parse_rule="strict", max_attempts=2, cache_dir=tmp_path / "cache",
                out=tmp_path / "eval" / "m1-m2" / f"seed{SEED}" / name, pair="m1-m2", model1="m1", model2="m2",
                seed=SEED, progress=False)
    args.update(kw)
    return judge_block(tasks, episodes, backend, **args)


def test_judge_block_http_cache_and_reruns(tasks, episodes, tmp_path, caplog):
    with ScriptedServer(responder(tasks)) as srv, caplog.at_level(logging.INFO, logger="syncr2.social.judge"):
        first = run(tasks, episodes, http_backend(srv.base_url), tmp_path)
        n_first = len(srv.requests)
        second = run(tasks, episodes, http_backend(srv.base_url), tmp_path)
        n_second = len(srv.requests) - n_first
        # other parameters: another cache key, everything is asked again
        run(tasks, episodes, http_backend(srv.base_url, seed=1), tmp_path, name="other.parquet")
        n_third = len(srv.requests) - n_first - n_second

    assert n_first == 3 + 2  # 3 valid at the first attempt, the bad task twice (max_attempts 2)
    assert n_second == 2  # valid replies come from the cache; only the invalid one is asked again (twice)
    assert n_third == 3 + 2
    out = pd.read_parquet(tmp_path / "eval" / "m1-m2" / f"seed{SEED}" / "block0.parquet")
    for frame in (first, out, second):
        assert len(frame) == 14 * 4
        assert frame.groupby("task_id").size().eq(14).all()
        per_episode = frame.drop_duplicates("task_id").set_index("task_id")
        assert per_episode["status"].to_dict() == {0: "valid", 1: "invalid", 2: "valid", 3: "valid"}
        assert (per_episode["attempts"].to_dict() == {0: 1, 1: 2, 2: 1, 3: 1})
    pd.testing.assert_frame_equal(out, second)  # a rerun rebuilds the same table
    bad = first[first.task_id == BAD_TASK]
    assert bad["score"].isna().all() and bad["flags"].str.contains("unparsable").all()
    good = first[first.task_id != BAD_TASK]
    assert good["score"].notna().all() and set(good["dimension"]) == set(DIMENSIONS)
    assert (first["pair"] == "m1-m2").all() and (first["seed"] == SEED).all() and (first["backend"] == "openai_http").all()
    assert json.loads(first["params_json"].iloc[0])["model"] == "scripted"
    summaries = [r.getMessage() for r in caplog.records if "episodes," in r.getMessage()]
    assert "4 episodes, 3 valid, 1 invalid, 0 from cache, 5 queried" in summaries[0]
    assert "4 episodes, 3 valid, 1 invalid, 3 from cache, 2 queried" in summaries[1]


def test_cache_files_keyed_by_prompt_and_params(tasks, episodes, tmp_path):
    with ScriptedServer(responder(tasks)) as srv:
        backend = http_backend(srv.base_url)
        run(tasks, episodes, backend, tmp_path, max_attempts=1)
    task = tasks.iloc[0].to_dict()
    messages = judge_messages(task, episodes[episodes.task_id == task["task_id"]], "authors")
    key = cache_key(prompt_sha256(messages), backend)
    record = json.loads((tmp_path / "cache" / key[:2] / f"{key}.json").read_text())
    assert record["prompt_sha256"] == prompt_sha256(messages) and record["reply"]["error"] is None
    assert record["reply"]["content"] and record["attempts"] == 1
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 4  # invalid replies are stored too (re-asked later)


def test_transport_errors_recorded_not_cached(tasks, episodes, tmp_path):
    with ScriptedServer(lambda n, body: act("503")) as srv:
        frame = run(tasks, episodes, http_backend(srv.base_url), tmp_path)
        assert len(srv.requests) == 4 * 2 * 2  # 4 episodes x 2 attempts x (1 + 1 retry)
    assert len(frame) == 14 * 4 and (frame["status"] == "invalid").all()
    assert frame["error"].str.contains("HTTP 503").all() and frame["flags"].str.contains("null_content").all()
    assert not list((tmp_path / "cache").rglob("*.json"))
    with ScriptedServer(responder(tasks)) as srv:  # the server is back: everything is asked again
        frame = run(tasks, episodes, http_backend(srv.base_url), tmp_path)
        assert len(srv.requests) == 5
    assert (frame.drop_duplicates("task_id")["status"] == "valid").sum() == 3


def test_null_and_truncated_replies_are_rows(tasks, episodes, tmp_path):
    with ScriptedServer(lambda n, body: act("null" if n % 2 else "length")) as srv:
        frame = run(tasks, episodes, http_backend(srv.base_url), tmp_path, max_attempts=1)
        assert len(srv.requests) == 4
    per = frame.drop_duplicates("task_id")
    assert (per["status"] == "invalid").all()
    assert per["flags"].str.contains("null_content").sum() == 2 and per["flags"].str.contains("truncated").sum() == 2
    assert per.loc[per["flags"].str.contains("null_content"), "reasoning_content"].eq("all reasoning, no answer").all()


def test_block_checks(tasks, episodes, tmp_path):
    backend = http_backend("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="seed"):
        run(tasks, make_episodes(tasks, seed=SEED + 1), backend, tmp_path)
    with pytest.raises(ValueError, match="no row in the task table"):
        run(tasks.iloc[:2], episodes, backend, tmp_path)
    with pytest.raises(ValueError, match="max_attempts"):
        run(tasks, episodes, backend, tmp_path, max_attempts=0)


def test_judge_block_constrained_tiny_model(tasks, episodes, tmp_path):
    spec = {"arch": "mistral", "n_layers": 2, "hidden_size": 64, "n_heads": 4, "n_kv_heads": 2,
            "intermediate_size": 128, "seed": 9, "max_position_embeddings": 16384}
    model_dir = build_from_spec(spec, tmp_path / "tiny-judge")
    cfg = {"backend": "hf_local", "path": str(model_dir), "max_new_tokens": 700, "constrained": True,
           "reasoning_max_length": 10, "device": "cpu", "batch_size": 2}
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        backend = make_backend(cfg, style="authors")
        first = run(tasks, episodes, backend, tmp_path, max_attempts=1)
        assert backend.n_generate_calls == 2  # 4 episodes, 2 per generate call
        rerun_backend = make_backend(cfg, style="authors")
        second = run(tasks, episodes, rerun_backend, tmp_path, max_attempts=1)
    finally:
        torch.set_num_threads(n)
    assert (first["status"] == "valid").all() and len(first) == 56
    assert first["score"].notna().all() and (first["finish_reason"] == "stop").all()
    assert rerun_backend.n_generate_calls == 0 and rerun_backend._lm is None  # all from the cache, model never loaded
    pd.testing.assert_frame_equal(first, second)
    with pytest.raises(ValueError, match="style"):
        run(tasks, episodes, backend, tmp_path, style="sotopia")
