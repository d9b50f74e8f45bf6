"""The tiny-model builder and the ChatLM wrapper, on real (tiny, random-weight) checkpoints."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from syncr2.simulation.lm import ChatLM, LMConfig, _FinishTracker
from syncr2.simulation.tiny_models import BUILD_FILE, build_from_spec, build_tiny_model

SPECS = {
    "llama": {"arch": "llama", "n_layers": 4, "hidden_size": 64, "n_heads": 4, "n_kv_heads": 2,
              "intermediate_size": 128, "seed": 11},
    "mistral": {"arch": "mistral", "n_layers": 3, "hidden_size": 96, "n_heads": 4, "n_kv_heads": 2,
                "intermediate_size": 192, "seed": 12},
}

MESSAGES = [
    "Hi Ben, do you have a minute?",
    "Imagine you are Ana Lopez. Turn 0: Ben Carter said: Hello there, how have you been lately? "
    "Turn 1: Ana Lopez said: I have been well, thank you for asking.\nTurn 2: Ben Carter said:",
    "Would you be willing to lower the price a little?",
    "I noticed you borrowed my charger without asking. Can we agree on a schedule for cleaning the kitchen?",
    "Goodbye.",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs single-threaded (conftest.one_thread)."""


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: build_from_spec(spec, root / arch) for arch, spec in SPECS.items()}


@pytest.fixture(scope="module")
def lms(model_dirs) -> dict[str, ChatLM]:
    return {
        arch: ChatLM.load(LMConfig(path=str(d), device="cpu", batch_size=3, max_new_tokens=24))
        for arch, d in model_dirs.items()
    }


def _with(lm: ChatLM, **changes) -> ChatLM:
    """The same loaded model under another config (batch size, generation settings)."""
    return ChatLM(replace(lm.cfg, **changes), lm.tokenizer, lm.model, lm.device)


# ----------------------------------------------------------------------------- building
def test_build_is_deterministic(tmp_path, model_dirs):
    spec = SPECS["llama"]
    again = build_tiny_model(tmp_path / "again", **spec)
    other = build_tiny_model(tmp_path / "other", **{**spec, "seed": 99})
    first = model_dirs["llama"]
    assert (again / "model.safetensors").read_bytes() == (first / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_bytes() == (first / "tokenizer.json").read_bytes()
    assert (other / "model.safetensors").read_bytes() != (first / "model.safetensors").read_bytes()
    record = json.loads((first / BUILD_FILE).read_text())
    digest = hashlib.sha256((first / "model.safetensors").read_bytes()).hexdigest()
    assert record["weights_sha256"] == {"model.safetensors": digest}
    assert record["seed"] == 11 and record["arch"] == "llama"


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_built_checkpoint_loads_with_requested_shape(arch, model_dirs, lms):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = SPECS[arch]
    model = AutoModelForCausalLM.from_pretrained(model_dirs[arch])
    tok = AutoTokenizer.from_pretrained(model_dirs[arch])
    assert type(model).__name__ == {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}[arch]
    assert model.config.vocab_size == len(tok)
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id != tok.eos_token_id
    lm = lms[arch]
    assert (lm.n_layers, lm.hidden_size, lm.dtype) == (spec["n_layers"], spec["hidden_size"], "float32")
    assert lm.weights_hash.startswith("sha256:") and lm.revision is None
    assert lm.identity()["n_layers"] == spec["n_layers"]


# ------------------------------------------------------------------------- prompting
def test_render_and_single_bos(lms):
    lm = lms["llama"]
    text = lm.render("Hello there")
    assert text == "<s><|user|>\nHello there</s>\n<|assistant|>\n"
    ids = lm.tokenize([text])[0]
    assert ids[0] == lm.tokenizer.bos_token_id and ids[1] != lm.tokenizer.bos_token_id
    # a template that does not write BOS: the tokenizer adds it, once
    override = _with(lm, chat_template="{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A:")
    text = override.render("Hello there")
    assert text == "Q: Hello there\nA:"
    ids = override.tokenize([text])[0]
    assert ids[0] == lm.tokenizer.bos_token_id and ids.count(lm.tokenizer.bos_token_id) == 1


# --------------------------------------------------------------------------- capture
@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_capture_matches_independent_forward(arch, lms):
    lm = lms[arch]
    prompt = lm.render(MESSAGES[1])
    ours = lm.capture([prompt])[0]
    ids = torch.tensor([lm.tokenize([prompt])[0]])
    with torch.inference_mode():
        hs = lm.model(input_ids=ids, output_hidden_states=True).hidden_states
    L = lm.n_layers
    assert ours.shape == (L, lm.hidden_size) and len(hs) == L + 1
    for layer in range(L - 1):
        np.testing.assert_allclose(ours[layer], hs[layer + 1][0, -1].numpy(), atol=1e-5, rtol=0)
    # HF's last hidden state has the final norm applied; our last block output does not
    last = hs[L][0, -1].numpy()
    assert np.abs(ours[L - 1] - last).max() > 1e-2
    with torch.inference_mode():
        normed = lm.model.model.norm(torch.from_numpy(ours[L - 1])[None]).numpy()[0]
    np.testing.assert_allclose(normed, last, atol=1e-5, rtol=0)


def test_left_padding_positions(lms):
    lm = lms["llama"]
    ids, mask, pos = lm._left_pad([[5, 6, 7], [8], [9, 10, 11, 12]])
    assert ids.tolist()[1] == [lm.tokenizer.pad_token_id] * 3 + [8]
    assert mask.tolist() == [[0, 1, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]]
    assert pos.tolist() == [[0, 0, 1, 2], [0, 0, 0, 0], [0, 1, 2, 3]]


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_batched_left_padded_capture_equals_single(arch, lms):
    lm = lms[arch]
    prompts = [lm.render(m) for m in MESSAGES]
    lengths = {len(r) for r in lm.tokenize(prompts)}
    assert len(lengths) == len(prompts)  # every batch has padding
    batched = _with(lm, batch_size=3).capture(prompts)
    single = _with(lm, batch_size=1).capture(prompts)
    assert batched.shape == (len(prompts), lm.n_layers, lm.hidden_size) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, single, atol=1e-4, rtol=0)
    assert np.abs(single[0] - single[1]).max() > 1e-3  # different prompts, different states


# -------------------------------------------------------------------------- generate
@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_generate_reps_equal_capture_and_batch_one(arch, lms):
    lm = _with(lms[arch], max_new_tokens=6)
    prompts = [lm.render(m) for m in MESSAGES]
    res = _with(lm, batch_size=3).generate(prompts, seed=0)
    assert res.reps.shape == (len(prompts), lm.n_layers, lm.hidden_size)
    np.testing.assert_allclose(res.reps, lm.capture(prompts), atol=1e-4, rtol=0)
    single = _with(lm, batch_size=1).generate(prompts, seed=0)
    np.testing.assert_allclose(res.reps, single.reps, atol=1e-4, rtol=0)
    assert list(res.n_prompt_tokens) == [len(r) for r in lm.tokenize(prompts)]
    assert all(1 <= k <= 6 for k in res.n_new_tokens)
    assert all(r in ("eos", "length") for r in res.finish_reasons)


def test_generate_seeds(lms):
    lm = _with(lms["llama"], max_new_tokens=16)
    prompts = [lm.render(m) for m in MESSAGES[:4]]
    a = lm.generate(prompts, seed=0)
    b = lm.generate(prompts, seed=0)
    c = lm.generate(prompts, seed=1)
    assert a.texts == b.texts and list(a.n_new_tokens) == list(b.n_new_tokens)
    assert a.texts != c.texts
    assert sum(t != u for t, u in zip(a.texts, c.texts)) >= 3
    assert len(set(a.texts)) == len(a.texts)  # not one degenerate reply
    assert all(len(t.strip()) > 0 for t in a.texts)
    assert a.settings["temperature"] == 0.7 and a.settings["top_k"] == 50


def test_stop_at_newline_keeps_the_first_line(lms):
    lm = lms["mistral"]
    tok = lm.tokenizer
    nl = tok.convert_tokens_to_ids("Ċ")  # byte-level BPE's "\n"
    word = tok("Hello", add_special_tokens=False)["input_ids"][0]
    tables = lm._newline_lookup()
    assert bool(tables[1][nl]) and not bool(tables[0][nl]) and bool(tables[0][word])
    tracker = _FinishTracker(2, 3, torch.tensor([tok.eos_token_id]), tables, torch.device("cpu"))
    rows = torch.tensor([[7, 7], [7, 7], [7, 7]])
    steps = [[nl, word, tok.eos_token_id], [word, word, word], [word, nl, word]]  # a leading newline is no stop
    stops = []
    for step in zip(*steps):
        rows = torch.cat([rows, torch.tensor(step)[:, None]], dim=1)
        stops.append(tracker(rows, None).tolist())
    assert stops == [[False, False, False], [False, False, True], [False, False, False]]
    assert tracker.finish_len.tolist() == [3, 0, 2] and tracker.reason.tolist() == [1, 0, 2]

    # end to end: the reply's first line is the same with and without the early stop
    lm = _with(lm, max_new_tokens=32)
    prompts = [lm.render(m) for m in MESSAGES]
    full = lm.generate(prompts, seed=3)
    short = lm.generate(prompts, seed=3, stop_at_newline=True)

    def first_line(t: str) -> str:
        return t.lstrip().split("\n")[0]

    assert [first_line(t) for t in short.texts] == [first_line(t) for t in full.texts]
    assert short.settings["stop_at_newline"] and not full.settings["stop_at_newline"]
    assert all(k_s <= k_f for k_s, k_f in zip(short.n_new_tokens, full.n_new_tokens))


# --------------------------------------------------------------------- the fixed date
DATED = ('{{ strftime_now("%d %b %Y") }}|{{ strftime_now("%Y-%m-%d") }}|{{ date_string }}|'
         "{% for m in messages %}{{ m['content'] }}{% endfor %}")


def test_template_date_is_fixed_not_the_clock(lms, monkeypatch):
    from datetime import datetime

    import transformers.utils.chat_template_utils as ctu

    class Tomorrow(datetime):
        """A clock that would betray any use of the real ``strftime_now``."""

        @classmethod
        def now(cls, tz=None):
            return datetime(2031, 1, 2)

    monkeypatch.setattr(ctu, "datetime", Tomorrow)
    ctu._compile_jinja_template.cache_clear()
    lm = _with(lms["llama"], chat_template=DATED)
    plain = lm.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], chat_template=DATED, tokenize=False)
    assert plain.startswith("02 Jan 2031|")  # the library's own strftime_now reads the (patched) clock
    assert lm.render("hi") == "26 Jul 2024|2024-07-26|26 Jul 2024|hi"  # the default date_string
    assert _with(lm, date_string="03 Feb 2021").render("hi") == "03 Feb 2021|2021-02-03|03 Feb 2021|hi"
    assert lm.render("hi", date_string="05 Mar 2020").startswith("05 Mar 2020|2020-03-05|")
    with pytest.raises(ValueError, match="date_string must look like"):
        LMConfig(path="x", date_string="2024-07-26")
    assert _with(lm, chat_template=DATED + " ").chat_template_sha256 != lm.chat_template_sha256
