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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_records_the_cpus_distributions(tmp_path):
    path = str(build_from_spec({**TINY, "tom_vocabulary": True}, tmp_path / "tom"))
    out = {}
    for device in ("cpu", "cuda"):
        (key, lm), _ = load_pair([("t", path, {"device": device, "batch_size": 2})] * 2, SETTINGS, PROTOCOL)
        fmt = ToMFormat.for_model(lm.tokenizer, lm.render("Hello"), "t")
        capture = ToMCapture(fmt, "constrained")
        result = lm.generate([lm.render(tom_intro(f"Agent {i}.")) for i in range(3)], seed=[4, 5, 6],
                             processors=capture)
        out[device] = (*capture.distributions(3), [split_reply(t)[:2] for t in result.texts])
    assert np.allclose(out["cpu"][0], out["cuda"][0], atol=1e-4) and np.allclose(out["cpu"][1], out["cuda"][1], atol=1e-4)
    assert all(e is not None for e, _ in out["cuda"][2])


def _curves_and_tasks():
    rng = np.random.default_rng(0)
    curves, tasks = [], []
    for seed in range(3):
        for layer in range(2):
            curves.append({"pair": "a__a", "model": "a", "target": "self_current", "distribution": "emotion",
                           "split_seed": seed, "layer": layer, "C": 1.0, "val_kl": 0.1 + layer,
                           "test_kl": 0.2 + seed / 10 + layer, "baseline_kl": 0.5 + seed / 20, "chosen": layer == 0,
                           "n_train": 40, "n_test": 10})
        for task in range(4):
            tasks.append({"pair": "a__a", "model": "a", "target": "self_current", "distribution": "emotion",
                          "split_seed": seed, "task_id": task, "n": 3, "model_kl": rng.uniform(0.1, 0.3),
                          "baseline_kl": rng.uniform(0.3, 0.6)})
    return pd.DataFrame(curves), pd.DataFrame(tasks)


def test_summary_against_scipy():
    from scipy import stats

    from syncr2.analysis.tom import summarize

    curves, tasks = _curves_and_tasks()
    row = summarize(curves, tasks).iloc[0]
    chosen = curves[curves.chosen]
    assert row["kl"] == pytest.approx(chosen.test_kl.mean())
    assert row["kl_se"] == pytest.approx(stats.sem(chosen.test_kl))
    assert row["baseline_se"] == pytest.approx(stats.sem(chosen.baseline_kl))
    assert row["improvement"] == pytest.approx((chosen.baseline_kl - chosen.test_kl).mean())
    assert row["p_wilcoxon"] == pytest.approx(stats.wilcoxon(tasks.baseline_kl - tasks.model_kl).pvalue)
    assert row["layers"] == "0,0,0" and row["n_pairs"] == 12


def test_report_with_nothing_decoded_keeps_the_compliance(tmp_path):
    """Free mode with a model that never follows the format: the summary and table still say so."""
    from syncr2.core.settings import PairNaming
    from syncr2.report.steps import tom_report

    curves, tasks = _curves_and_tasks()
    curves.iloc[0:0].to_parquet(tmp_path / "c.parquet")
    tasks.iloc[0:0].to_parquet(tmp_path / "t.parquet")
    pd.DataFrame({"model_key": ["a"] * 4, "compliant": [False] * 4}).to_parquet(tmp_path / "e.parquet")
    (tmp_path / "fig").mkdir(), (tmp_path / "tab").mkdir()
    tom_report([tmp_path / "c.parquet"], [tmp_path / "t.parquet"], [tmp_path / "e.parquet"],
               PairNaming({"a": "A"}, ["a"], {"a": "A"}, "A"), tmp_path / "s.parquet", tmp_path / "fig", tmp_path / "tab")
    summary = pd.read_parquet(tmp_path / "s.parquet")
    assert len(summary) == 1 and summary["compliance"].iloc[0] == 0 and summary["tom_turns"].iloc[0] == 4
    assert "n/a (nothing decoded)" in (tmp_path / "tab" / "table_tom.md").read_text()
    assert (tmp_path / "fig" / "fig11_tom.png").stat().st_size > 0


def test_the_format_is_read_before_the_cleaner_sees_the_reply():
    """"Trust. Expressive. Declare:" once lost both words to the cleaner's speaker-label rule."""
    from syncr2.simulation.tom import tom_turn

    flat8, flat5 = np.full(8, 0.125), np.full(5, 0.2)
    utterance, cols = tom_turn("Trust. Expressive. Declare:\n", flat8, flat5, PROTOCOL.clean)
    assert cols["compliant"] and (cols["emotion"], cols["act"]) == ("Trust", "Expressive")
    utterance, cols = tom_turn("Joy. Assertive. Mira Holt: hello there\nsecond line", flat8, flat5, PROTOCOL.clean)
    assert utterance == "hello there" and cols["compliant"]
    utterance, cols = tom_turn("Sure: here it is", flat8, np.full(5, np.nan), PROTOCOL.clean)
    assert utterance == PROTOCOL.clean("Sure: here it is") and not cols["compliant"] and cols["emotion"] is None
