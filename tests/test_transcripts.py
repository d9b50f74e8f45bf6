"""Transcripts: validation that names file, line and field; prompts as a simulated episode's; a real run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from syncr2.core.config import ConfigError, check_config
from syncr2.simulation.presets import PromptPreset
from syncr2.simulation.prompts import passive_prompt
from syncr2.simulation.transcripts import (
    DEFAULT_READER,
    NO_GOAL,
    TranscriptError,
    read_transcripts,
    transcript_episodes,
    transcript_intro,
    transcript_tasks_frame,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "transcripts" / "demo_conversations.jsonl"


def jsonl(tmp_path: Path, rows: list[dict], name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def conv(cid: str, speakers: list[str], texts: list[str] | None = None) -> list[dict]:
    texts = texts or [f"line {i}" for i in range(len(speakers))]
    return [{"conversation_id": cid, "turn": i, "speaker": s, "text": t} for i, (s, t) in enumerate(zip(speakers, texts))]


def test_the_example_reads_as_six_conversations_of_twelve_alternating_turns():
    turns = read_transcripts(EXAMPLE)
    assert turns.task_id.nunique() == 6 and (turns.groupby("task_id").size() == 12).all()
    for _, c in turns.groupby("task_id"):
        assert (c.agent.to_numpy() == [1, 2] * 6).all() and list(c.turn) == list(range(12))
    museum = turns[turns.conversation_id == "museum-plan"]
    assert set(museum.scenario) == {""} and museum[museum.speaker == "Leo"].speaker_description.eq("").all()


def test_csv_and_jsonl_give_the_same_turns_and_same_speaker_rows_merge(tmp_path):
    rows = conv("a", ["Ann", "Bo", "Bo", "Ann", "Bo"], ["hi", "hello", "how are\nyou?", "fine", "good"])
    rows += conv("b", ["Cy", "Di", "Cy"])
    rows[0]["speaker_description"] = "A baker."
    rows = list(reversed(rows))  # file order is not turn order
    from_jsonl = read_transcripts(jsonl(tmp_path, rows))
    csv_path = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(csv_path, index=False)
    from_csv = read_transcripts(csv_path)
    cols = ["conversation_id", "task_id", "turn", "speaker", "agent", "text", "speaker_description", "scenario"]
    pd.testing.assert_frame_equal(from_jsonl[cols], from_csv[cols])
    a = from_jsonl[from_jsonl.conversation_id == "b"]  # "b" appears first in the reversed file: task 0
    assert a.task_id.iloc[0] == 0
    merged = from_jsonl[from_jsonl.conversation_id == "a"]
    assert list(merged.text) == ["hi", "hello how are you?", "fine", "good"] and list(merged.agent) == [1, 2, 1, 2]
    assert set(merged[merged.speaker == "Ann"].speaker_description) == {"A baker."}


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r[1].pop("text"), r"t.jsonl, line 2: field 'text' is missing or empty"),
    (lambda r: r[2].update(turn="two"), r"t.jsonl, line 3: field 'turn' is 'two', not an integer"),
    (lambda r: r[2].update(turn=1), r"t.jsonl, line 3: field 'turn': conversation 'a' has turn 1 twice \(also on line 2\)"),
    (lambda r: r[2].update(speaker="Cy"), r"line 1: field 'speaker': conversation 'a' has 3 speaker\(s\) \(Ann, Bo, Cy\)"),
    (lambda r: (r[0].update(scenario="park"), r[2].update(scenario="shop")),
     r"line 3: field 'scenario' differs between rows of 'a'"),
])
def test_a_bad_row_is_named_by_file_line_and_field(tmp_path, mutate, message):
    rows = conv("a", ["Ann", "Bo", "Ann", "Bo"])
    mutate(rows)
    with pytest.raises(TranscriptError, match=message):
        read_transcripts(jsonl(tmp_path, rows))


def test_file_level_errors(tmp_path):
    with pytest.raises(TranscriptError, match="line 2: not a JSON object"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"conversation_id": "a"}\n{oops\n')
        read_transcripts(bad)
    with pytest.raises(TranscriptError, match=r"line 1: the header lacks field\(s\) speaker"):
        (tmp_path / "h.csv").write_text("conversation_id,turn,text\na,0,hi\n")
        read_transcripts(tmp_path / "h.csv")
    with pytest.raises(TranscriptError, match="must end in .csv or .jsonl"):
        (tmp_path / "t.txt").write_text("x")
        read_transcripts(tmp_path / "t.txt")
    with pytest.raises(TranscriptError, match="transcript file not found"):
        read_transcripts(tmp_path / "none.jsonl")
    with pytest.raises(TranscriptError, match=r"conversation 'b' has 1 speaker\(s\) \(Cy\); synchrony needs exactly two"):
        read_transcripts(jsonl(tmp_path, conv("a", ["Ann", "Bo"]) + conv("b", ["Cy", "Cy"])))


def test_prompts_are_the_speakers_simulated_prompts_and_the_passive_reader_reads_them():
    preset = PromptPreset.from_config(None)
    turns = read_transcripts(EXAMPLE)
    tasks = transcript_tasks_frame(turns, preset, reader_seed=0)
    episodes = transcript_episodes(turns, tasks, ("m1", "m2"), preset)
    assert len(episodes) == 72 and set(episodes.seed) == {0}
    for task in tasks.itertuples():
        names = [task.agent1_name, task.agent2_name]
        assert task.reader_name not in names and task.reader_name != DEFAULT_READER  # another conversation's speaker
        conv_turns = turns[turns.task_id == task.task_id].sort_values("turn")
        ep = episodes[episodes.task_id == task.task_id].sort_values("turn")
        history = []
        for r, e in zip(conv_turns.itertuples(), ep.itertuples()):  # brute force: the prompt, turn by turn
            intro = task.intro1 if r.agent == 1 else task.intro2
            assert e.prompt == preset.prompt(intro, history, r.speaker, r.turn)
            assert e.utterance == r.text and e.model_key == ("m1" if r.agent == 1 else "m2")
            history.append((r.speaker, r.text))
            reader = passive_prompt(e.prompt, e.speaker_name, task.reader_name, preset.templates)
            assert r.speaker not in reader.split("\n")[0] and task.reader_name in reader
        assert ep.end_reason.iloc[-1] == "end_of_transcript" and ep.end_reason.iloc[:-1].isna().all()
    bike = tasks[tasks.codename == "bike-repair"].iloc[0]
    assert "Maya's background: A nurse who cycles to her night shifts." in bike.intro1
    assert f"Maya's goal: {NO_GOAL}" in bike.intro1 and "Tom's goal: Unknown" in bike.intro1
    assert f"Tom's goal: {NO_GOAL}" in bike.intro2 and "Maya's goal: Unknown" in bike.intro2
    museum = tasks[tasks.codename == "museum-plan"].iloc[0]
    assert "Scenario: A recorded conversation between Leo and Sara." in museum.intro1
    assert "Leo's background: Not given." in museum.intro1
    assert transcript_intro(["A", "B"], ["", ""], "", 2, preset).startswith(
        preset.templates.preamble_first.format(agent="B"))
    lone = transcript_tasks_frame(turns[turns.task_id == 0], preset)
    assert lone.reader_name.iloc[0] == DEFAULT_READER  # no other conversation's speaker to draw from


def test_config_checks_of_a_transcript_study():
    cfg = yaml.safe_load((REPO / "config" / "transcripts.yaml").read_text())
    check_config(cfg, 6)
    cfg.update(seeds=[0, 1], tom={"pairs": [["smollm2", "smollm2"]]})
    cfg["analysis"]["sensitivity"]["analyses"] = ["top_k"]
    with pytest.raises(ConfigError) as err:
        check_config(cfg, 6)
    text = str(err.value)
    assert "seeds: a transcript is read once" in text and "tom.pairs: the ToM condition" in text
    assert "analysis.sensitivity.analyses: top_k correlate" in text


def test_the_example_transcript_end_to_end_with_real_snakemake(tmp_path):
    """config/transcripts.yaml, its models swapped for two tiny random checkpoints: the tasks, the reading,
    the passive reader, the R2 tables, SyncR2, the measures, the lag profile, the surrogate and the figures."""
    cfg = yaml.safe_load((REPO / "config" / "transcripts.yaml").read_text())
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["models"] = {m: smoke["models"][m] for m in ("tiny-llama", "tiny-mistral")}
    cfg["pairs"] = [["tiny-llama", "tiny-mistral"]]
    cfg["abilities"] = {"params_m": {"tiny-llama": 1.0, "tiny-mistral": 2.0}}
    cfg["analysis"]["model_order"] = ["tiny-llama", "tiny-mistral"]
    cfg["analysis"]["one_order_first_family"] = "Llama"
    cfg["analysis"]["surrogate"]["n_perm"] = 19
    cfg["tasks"]["path"] = str(EXAMPLE)
    for name in ("Snakefile", "workflow", "profiles", "config"):
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(tmp_path / "t.yaml")],
                          capture_output=True, text=True, cwd=tmp_path, env=os.environ | {"PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pair = "tiny-llama__tiny-mistral"
    episodes = pd.read_parquet(tmp_path / f"results/episodes/{pair}/seed0/block0.parquet")
    turns = read_transcripts(EXAMPLE)
    assert list(episodes.sort_values(["task_id", "turn"]).utterance) == list(turns.sort_values(["task_id", "turn"]).text)
    assert (episodes.n_prompt_tokens > 0).all() and (episodes.n_new_tokens == 0).all()
    summary = pd.read_parquet(tmp_path / "results/summary/synchrony.parquet")
    assert set(summary.condition) == {"experimental", "passive", "lag1", "lag2"}
    measures = pd.read_parquet(tmp_path / "results/summary/measures.parquet")
    assert set(measures.measure) == {"syncr2", "cka", "rsa", "procrustes"}
    profile = pd.read_parquet(tmp_path / "results/summary/lag_profile.parquet")
    assert sorted(profile.lag.unique()) == [-2, -1, 0, 1, 2]
    for stem in ("measures", f"lag_profile_{pair}", "surrogate_null", f"fig2_heatmap_{pair}_AtoB"):
        assert (tmp_path / "reports/figures" / f"{stem}.png").stat().st_size > 1000
    assert not (tmp_path / "results/eval").exists()  # no judge for a recorded conversation
