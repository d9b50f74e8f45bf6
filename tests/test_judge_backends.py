"""Judge backends on real components: a tiny random-weight checkpoint, llguidance, the config factory."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import torch

from syncr2.social.constrained import require_llguidance, unpack_bitmask
from syncr2.social.judge import make_backend
from syncr2.social.judge_backends import HFLocalBackend, OpenAIHTTPBackend, checkpoint_fingerprint
from syncr2.social.judge_prompt import DIMENSIONS, RANGES, judge_messages
from syncr2.social.reply_parsing import parse_reply
from syncr2.simulation.tasks import load_demo_tasks, tasks_frame
from syncr2.simulation.tiny_models import build_from_spec

#: A tiny judge; long context because the authors' judge prompt is ~3,900 tokens of the tiny tokenizer.
JUDGE_SPEC = {"arch": "llama", "n_layers": 2, "hidden_size": 64, "n_heads": 4, "n_kv_heads": 2,
              "intermediate_size": 128, "seed": 7, "max_position_embeddings": 16384}

HTTP_CFG = {"backend": "openai_http", "base_url": "http://127.0.0.1:8000/v1", "model": "openai/gpt-oss-120b",
            "temperature": 0, "seed": 0, "top_p": 1, "n": 1, "token_limit_field": "max_completion_tokens",
            "max_tokens": 500000, "timeout_s": 600, "max_retries": 3, "api_key_env": None,
            "reasoning_effort": None, "response_format": None}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs single-threaded (conftest.one_thread)."""


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return build_from_spec(JUDGE_SPEC, tmp_path_factory.mktemp("judge") / "tiny-judge")


@pytest.fixture(scope="module")
def prompts():
    """Judge messages (authors and sotopia styles) for two demo tasks with short dialogues."""
    frame = tasks_frame(load_demo_tasks()).sort_values("task_id").head(2)
    out: dict[str, list] = {"authors": [], "sotopia": []}
    for row in frame.to_dict("records"):
        ep = pd.DataFrame({
            "task_id": row["task_id"], "seed": 0, "turn": [0, 1, 2],
            "speaker_name": [row["agent1_name"], row["agent2_name"], row["agent1_name"]],
            "utterance": ["Hi, do you have a minute?", "Sure, what is it?", "I wanted to say sorry."],
        })
        for style in out:
            out[style].append(judge_messages(row, ep, style))
    return out


def _assert_valid_scores(content: str, style: str) -> None:
    parsed = parse_reply(content, "stop", "strict", style)
    assert parsed.status == "valid", (parsed.error, content)
    json.loads(content)  # strictly valid JSON, not just repairable
    for agent in (1, 2):
        for dim in DIMENSIONS:
            lo, hi = RANGES[dim]
            assert lo <= parsed.scores[agent][dim] <= hi
    assert sum(len([d for d in parsed.scores[a] if d in RANGES]) for a in (1, 2)) == 14


def test_constrained_tiny_model_gives_valid_json(judge_dir, prompts):
    backend = make_backend({"backend": "hf_local", "path": str(judge_dir), "max_new_tokens": 700, "constrained": True,
                            "reasoning_max_length": 16, "device": "cpu", "dtype": "float32", "batch_size": 2},
                           style="authors")
    replies = backend.complete_batch(prompts["authors"])
    assert backend.n_generate_calls == 1  # both episodes in one left-padded generate call
    for reply in replies:
        assert reply.error is None and reply.finish_reason == "stop", reply
        assert reply.prompt_tokens > 3000 and 0 < reply.completion_tokens <= 700
        _assert_valid_scores(reply.content, "authors")
    again = backend.complete(prompts["authors"][1])
    assert again.content == replies[1].content  # greedy: deterministic


def test_constrained_tiny_model_sotopia_style(judge_dir, prompts):
    backend = make_backend({"backend": "hf_local", "path": str(judge_dir), "max_new_tokens": 800, "constrained": True,
                            "reasoning_max_length": 12, "device": "cpu"}, style="sotopia")
    reply = backend.complete(prompts["sotopia"][0])
    assert reply.finish_reason == "stop"
    _assert_valid_scores(reply.content, "sotopia")


def test_unconstrained_tiny_model_is_recorded_invalid(judge_dir, prompts):
    backend = make_backend({"backend": "hf_local", "path": str(judge_dir), "max_new_tokens": 40, "device": "cpu"})
    reply = backend.complete(prompts["authors"][0])
    assert reply.error is None and isinstance(reply.content, str)
    for rule in ("authors", "strict"):
        parsed = parse_reply(reply.content, reply.finish_reason, rule, "authors")
        assert parsed.status == "invalid"
        assert "unparsable" in parsed.flags or "not_an_object" in parsed.flags


def test_hf_params_canonical_and_lazy(judge_dir):
    a = make_backend({"backend": "hf_local", "path": str(judge_dir), "max_new_tokens": 50, "device": "cpu",
                      "batch_size": 1})
    b = make_backend({"backend": "hf_local", "path": str(judge_dir), "max_new_tokens": 50, "device": "auto",
                      "batch_size": 4})
    assert a.params() == b.params()  # device and batch size do not key the cache
    assert a._lm is None  # params() does not load the model
    c = make_backend({"backend": "hf_local", "path": str(judge_dir), "max_new_tokens": 51})
    assert c.params() != a.params()
    d = make_backend({"backend": "hf_local", "path": str(judge_dir), "max_new_tokens": 50, "constrained": True},
                     style="authors")
    assert d.params()["json_schema"]["required"] == ["agent_1_evaluation", "agent_2_evaluation"]
    assert d.params()["constraint"]["library"] == "llguidance"


def test_checkpoint_fingerprint(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    first = checkpoint_fingerprint(str(tmp_path))
    assert first == checkpoint_fingerprint(str(tmp_path)) and first.startswith("sha256:")
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    assert checkpoint_fingerprint(str(tmp_path)) != first
    assert checkpoint_fingerprint("org/model", "abc123") == "hub:org/model@abc123"


def test_make_backend_http_example_config():
    backend = make_backend(HTTP_CFG)
    assert isinstance(backend, OpenAIHTTPBackend)
    params = backend.params()
    assert params["model"] == "openai/gpt-oss-120b" and params["max_tokens"] == 500000
    assert "timeout_s" not in params and "max_retries" not in params and "api_key_env" not in params
    body = backend.request_body([{"role": "user", "content": "x"}])
    assert body["max_completion_tokens"] == 500000 and "reasoning_effort" not in body


def test_make_backend_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown key\(s\) temprature.*allowed:.*temperature"):
        make_backend({**HTTP_CFG, "temprature": 0})
    with pytest.raises(ValueError, match="unknown key.*base_url"):
        make_backend({"backend": "hf_local", "path": "x", "base_url": "http://127.0.0.1:1"})
    with pytest.raises(ValueError, match="backend must be one of"):
        make_backend({"backend": "vllm"})
    with pytest.raises(ValueError, match="needs the prompt style"):
        make_backend({"backend": "hf_local", "path": "x", "constrained": True})
    with pytest.raises(ValueError, match="token_limit_field"):
        make_backend({**HTTP_CFG, "token_limit_field": "max_new_tokens"})


def test_unpack_bitmask():
    words = torch.tensor([[0b101, -1], [0, -(1 << 31)]], dtype=torch.int32)
    allowed = unpack_bitmask(words, 40)
    assert allowed.shape == (2, 40)
    assert allowed[0].nonzero().flatten().tolist() == [0, 2] + list(range(32, 40))
    assert allowed[1].nonzero().flatten().tolist() == []
    assert unpack_bitmask(words, 64)[1].nonzero().flatten().tolist() == [63]


def test_llguidance_missing_is_a_clear_error(monkeypatch, judge_dir):
    monkeypatch.setitem(sys.modules, "llguidance", None)  # makes `import llguidance` fail
    with pytest.raises(ImportError, match=r"syncr2\[judge-local\].*llguidance==1\.9\.1"):
        require_llguidance()
    with pytest.raises(ImportError, match="llguidance"):
        HFLocalBackend(str(judge_dir), json_schema={"type": "object"})


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(judge_dir, prompts):
    """temperature > 0: a reply depends on its prompt and seed only, not on the prompts beside it."""
    cfg = {"backend": "hf_local", "path": str(judge_dir), "max_new_tokens": 700, "constrained": True,
           "reasoning_max_length": 16, "device": "cpu", "temperature": 1.0, "seed": 5}
    pair = make_backend({**cfg, "batch_size": 2}, style="authors").complete_batch(prompts["authors"])
    alone = make_backend({**cfg, "batch_size": 1}, style="authors").complete(prompts["authors"][1])
    assert alone.content == pair[1].content
    for reply in pair:
        _assert_valid_scores(reply.content, "authors")
    other_seed = make_backend({**cfg, "seed": 6}, style="authors")
    assert other_seed.params() != make_backend(cfg, style="authors").params()
    greedy = make_backend({**cfg, "temperature": 0.0}, style="authors").complete(prompts["authors"][1])
    assert greedy.content != alone.content or other_seed.complete(prompts["authors"][1]).content != alone.content


def test_gumbel_max_draws_from_the_softmax():
    """Oracle: the empirical frequencies of argmax(logits / T + Gumbel) match softmax(logits / T)."""
    import torch

    from syncr2.simulation.lm import RowGumbelSampler

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    proc = RowGumbelSampler([123], temperature=0.7)
    draws = torch.tensor([int(proc(None, logits.clone()).argmax()) for _ in range(20000)])
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    expected = torch.softmax(logits[0].double() / 0.7, 0)
    assert torch.allclose(freq, expected, atol=0.01), (freq, expected)
