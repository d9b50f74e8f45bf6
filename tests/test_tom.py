"""The ToM condition: the reply format, the candidates' tokens, the recorded distributions, the dataset.

Oracles: the tokenizer itself (the candidates' ids are those of the whole
formatted text), a plain forward pass (the recorded distributions are a
softmax of its logits at the candidates' first ids), and brute-force joins
of hand-made turns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from syncr2.analysis.tom import TARGETS, target_rows
from syncr2.simulation.presets import PromptPreset
from syncr2.simulation.simulate import GenerationSettings, load_pair, run_block
from syncr2.simulation.tasks import load_demo_tasks, tasks_frame
from syncr2.simulation.tiny_models import build_from_spec
from syncr2.simulation.tom import (
    ACTS,
    EMOTIONS,
    TOM_COLUMNS,
    TOM_INSTRUCTION,
    ToMCapture,
    ToMFormat,
    split_reply,
    tom_intro,
)

PROTOCOL = PromptPreset.from_config(None)
TINY = {"arch": "llama", "n_layers": 2, "hidden_size": 48, "n_heads": 4, "n_kv_heads": 2, "intermediate_size": 96,
        "seed": 5}
SETTINGS = GenerationSettings(max_turns=6, temperature=0.7, max_new_tokens=12)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_paper_instruction_word_for_word():
    assert TOM_INSTRUCTION.startswith("Please be sure to indicate your emotion and action type both in a word")
    assert TOM_INSTRUCTION.endswith("Your output format should be: Emotion. Action type. Response.")
    for word in (*EMOTIONS, *ACTS):
        assert f"{word}." in TOM_INSTRUCTION
    assert tom_intro("Intro.").endswith(TOM_INSTRUCTION) and tom_intro("Intro.\n").endswith(TOM_INSTRUCTION + "\n")


@pytest.mark.parametrize("text,want", [
    ("Joy. Assertive. I'd love to help.", ("Joy", "Assertive", "I'd love to help.")),
    ("  anger . directive .Give it back", ("Anger", "Directive", "Give it back")),
    ("Joy. Assertive.", ("Joy", "Assertive", "")),
    ("Happy. Assertive. Hi", (None, None, "Happy. Assertive. Hi")),  # not one of Plutchik's eight
    ("Joy, Assertive, Hi", (None, None, "Joy, Assertive, Hi")),
    ("Hello there.", (None, None, "Hello there.")),
])
def test_split_reply(text, want):
    assert split_reply(text) == want


@pytest.fixture(scope="module")
def smollm2(smollm2_checkpoint):
    (key, lm), _ = load_pair([("smollm2", str(smollm2_checkpoint), {"device": "cpu", "batch_size": 4})] * 2,
                             SETTINGS, PROTOCOL)
    return lm


def test_smollm2_candidates_are_the_tokens_of_the_formatted_reply(smollm2):
    ctx = smollm2.render("Hello")
    fmt = ToMFormat.for_model(smollm2.tokenizer, ctx, "smollm2")
    tok = AutoTokenizer.from_pretrained(smollm2.cfg.path)
    base = tok(ctx, add_special_tokens=False)["input_ids"]
    for emotion, e_ids in zip(EMOTIONS, fmt.emotions.ids):
        for act, a_ids in zip(ACTS, fmt.acts.ids):
            whole = tok(f"{ctx}{emotion}. {act}.", add_special_tokens=False)["input_ids"]
            assert whole == base + list(e_ids) + list(a_ids), (emotion, act)
    assert len(set(fmt.emotions.first)) == 8 and len(set(fmt.acts.first)) == 5
    assert tok.convert_ids_to_tokens(fmt.acts.first[0]) == "ĠAssert"  # acts follow a space: its byte-level mark
    assert [tok.decode(i) for i in fmt.emotions.first][:3] == ["J", "Trust", "Fear"]


def test_a_tokenizer_that_merges_candidates_is_refused(tmp_path):
    path = build_from_spec(TINY, tmp_path / "plain")
    (key, lm), _ = load_pair([("plain", str(path), {"device": "cpu"})] * 2, SETTINGS, PROTOCOL)
    with pytest.raises(ValueError, match="model plain: 'Surprise' and 'Sadness' start with the same sub-token"):
        ToMFormat.for_model(lm.tokenizer, lm.render("Hello"), "plain")
    path = build_from_spec({**TINY, "tom_vocabulary": True}, tmp_path / "tom")
    (key, lm), _ = load_pair([("tom", str(path), {"device": "cpu"})] * 2, SETTINGS, PROTOCOL)
    fmt = ToMFormat.for_model(lm.tokenizer, lm.render("Hello"), "tom")
    assert all(len(ids) == 2 for ids in fmt.emotions.ids)  # the word, then its full stop


def _forward_dist(lm, text: str, ids: list[int]) -> np.ndarray:
    """The oracle: softmax of a plain forward pass's last logits at ``ids``."""
    batch = torch.tensor([lm.tokenize([text])[0]])
    with torch.no_grad():
        logits = lm.model(input_ids=batch).logits[0, -1].double()
    return torch.softmax(logits[ids], 0).numpy()


@pytest.mark.parametrize("mode", ["constrained", "free"])
def test_recorded_distributions_are_the_models_own(smollm2, mode):
    prompts = [smollm2.render(tom_intro(f"You are agent {i}. Say hello to your neighbour.") + "\nTurn 0: you said:")
               for i in range(3)]
    fmt = ToMFormat.for_model(smollm2.tokenizer, smollm2.render("Hello"), "smollm2")
    capture = ToMCapture(fmt, mode)
    result = smollm2.generate(prompts, seed=[1, 2, 3], processors=capture)
    emotion, act = capture.distributions(len(prompts))
    for i, prompt in enumerate(prompts):
        assert np.allclose(emotion[i], _forward_dist(smollm2, prompt, fmt.emotions.first), atol=1e-4)
        e, a, _ = split_reply(result.texts[i])
        if mode == "constrained":
            assert e is not None and a is not None, result.texts[i]
            assert result.texts[i].startswith(f"{e}. {a}.")
        if e is not None and np.isfinite(act[i]).all():  # the act was read after the canonical "Emotion."
            assert np.allclose(act[i], _forward_dist(smollm2, prompt + f"{e}.", fmt.acts.first), atol=1e-4)
        elif mode == "free":
            assert np.isnan(act[i]).all()


def test_tom_block_hides_both_words_from_the_partner(tmp_path):
    path = str(build_from_spec({**TINY, "tom_vocabulary": True}, tmp_path / "tom"))
    models = load_pair([("t", path, {"device": "cpu", "batch_size": 4})] * 2, SETTINGS, PROTOCOL)
    tasks = tasks_frame(load_demo_tasks(), PROTOCOL, reader_seed=0).head(3)
    episodes, reps = run_block(tasks, models, 0, 0, SETTINGS, PROTOCOL, progress=False, tom_mode="constrained")
    assert set(TOM_COLUMNS) <= set(episodes.columns) and episodes["compliant"].all()
    for _, row in episodes.iterrows():
        assert row["raw_output"].startswith(f"{row['emotion']}. {row['act']}.")
        assert np.isclose(sum(row["emotion_dist"]), 1) and np.isclose(sum(row["act_dist"]), 1)
        later = episodes[(episodes.task_id == row["task_id"]) & (episodes.turn > row["turn"])]
        for prompt in later["prompt"]:  # the dialogue line of this turn shows the response alone
            assert f"{row['emotion']}. {row['act']}." not in prompt.split(TOM_INSTRUCTION)[-1]
    assert TOM_INSTRUCTION in episodes["prompt"].iloc[0]
    assert len(reps[1][0]) + len(reps[2][0]) == len(episodes)


def test_targets_pair_the_right_turns():
    """Brute force: every target's (representation turn, distribution turn) on a hand-made episode."""
    turns = pd.DataFrame({"task_id": 7, "seed": 0, "turn": range(5), "speaker": [1, 2, 1, 2, 1],
                          "model_key": ["a", "b", "a", "b", "a"], "row": [10, 20, 11, 21, 12],
                          "compliant": [True, True, True, False, True]})
    turns["emotion_dist"] = [[float(t), 1.0 - t] for t in range(5)]  # the turn number marks the distribution
    for name, rep_off, dist_off in TARGETS:
        rows = target_rows(turns, name, "emotion")
        want = [(t, t + rep_off, t + dist_off) for t in range(5)
                if t + max(rep_off, dist_off) < 5 and turns.compliant[t + dist_off]]
        got = [(int(r.turn), int({10: 0, 20: 1, 11: 2, 21: 3, 12: 4}[r.row]), int(r.q[0])) for r in rows.itertuples()]
        assert got == want, name
        assert all(m == ("a" if rt % 2 == 0 else "b") for m, (_, rt, _) in zip(rows["model"], want))
