"""The two prompt presets, pinned by golden files on real Sotopia tasks.

Golden files (tests/golden/presets/) hold the exact prompt text of both agents
at turn 0 and turn 3 of Sotopia task 0 (friends) and task 16
(mutual_friends, strangers), genuine and passive, for the ``authors`` preset
(docs/protocol.md, "The authors preset") and the ``protocol`` preset
(docs/protocol.md, "The protocol preset"). They were written by
``python tests/test_presets.py --write`` and read line by line against the
authors' rules; the assertions below check the section's facts one by one
so a wrong golden file cannot pass unnoticed.
"""

import random
import sys
from pathlib import Path

import pytest

from syncr2.simulation.authors_prompts import authors_reader_names, authors_utterance
from syncr2.simulation.presets import PresetError, PromptPreset, preset_names
from syncr2.simulation.tasks import load_tasks

SOTOPIA = Path(__file__).resolve().parents[2] / "shared" / "sotopia"
GOLDEN = Path(__file__).parent / "golden" / "presets"
TASKS = (0, 16)
# Raw replies of turns 0-2: a label plus a later ": ", quotes, a carriage return.
RAW = [
    "  Leo Williams: Hey Hendrick: could you lend me some money?\nA second line nobody sees.",
    '"Of course, Leo. How much do you need?"',
    "About $3000.\rIt is for my family.",
]


@pytest.fixture(scope="module")
def tasks():
    loaded = load_tasks("sotopia_exports", SOTOPIA)
    return {t.task_id: t for t in loaded}, [t for t in loaded]


def prompts_of(preset: PromptPreset, task, seed: int = 0) -> dict[str, str]:
    """Every golden text of one task: both agents at turns 0 and 3, genuine and passive."""
    names = task.agent_names
    history = [(names[i % 2], preset.clean(raw)) for i, raw in enumerate(RAW)]
    all_names = list(task.personas_in_file_order)
    reader = preset.reader_names([task.task_id], list(task.personas), all_names, 0, seed)[task.task_id]
    out = {}
    for agent in (1, 2):
        intro = preset.render_intro(task, agent)
        for turn in (0, 3):
            text = preset.prompt(intro, history[:turn], names[agent - 1], turn)
            out[f"agent{agent}_turn{turn}"] = text
            out[f"agent{agent}_turn{turn}_passive"] = preset.passive_prompt(text, names[agent - 1], reader)
    return out


def golden_path(preset: str, task_id: int, key: str) -> Path:
    return GOLDEN / f"{preset}_task{task_id}_{key}.txt"


@pytest.mark.parametrize("name", ["authors", "protocol"])
@pytest.mark.parametrize("task_id", TASKS)
def test_golden_prompts(tasks, name, task_id):
    texts = prompts_of(PromptPreset.from_config({"preset": name}), tasks[0][task_id])
    assert len(texts) == 8
    for key, text in texts.items():
        want = golden_path(name, task_id, key).read_bytes().decode("utf-8")
        assert text == want, f"{name} task {task_id} {key} differs from its golden file"


def test_authors_facts(tasks):
    """The authors preset (docs/protocol.md, "The authors preset"), fact by fact, on their prompts."""
    a = PromptPreset.from_config({"preset": "authors"})
    t0, t16 = tasks[0][0], tasks[0][16]
    g = prompts_of(a, t0)
    # "said:" with no space; the utterance cut keeps text after the first ": " and drops later ": "
    assert "\nTurn 0: Leo Williams said:Hey Hendrickcould you lend me some money?\n" in g["agent2_turn3"]
    assert '\nTurn 1: Hendrick Heinz said:"Of course, Leo. How much do you need?"\n' in g["agent2_turn3"]
    # a carriage return is no line break for the cut, but became one in the passive prompts (CSV round trip)
    assert "said:About $3000.\rIt is for my family.\nTurn 3: Hendrick Heinz said:" in g["agent2_turn3"]
    assert "said:About $3000.\nIt is for my family." in g["agent2_turn3_passive"]
    # intros end with the LEAVE line and its newline; dialogue lines follow directly
    assert g["agent1_turn0"].endswith("Keep your words concise.\nTurn 0: Leo Williams said:")
    # agent 2's own goal runs into the LEAVE line; agent 1 sees the partner's goal as "Unknown" + newline
    assert "to maintain your financial stability.)If your goal as the agent" in g["agent2_turn0"]
    assert "Hendrick Heinz's goal: Unknown\nIf your goal" in g["agent1_turn0"]
    # friends: only the partner's secret (the viewer-tagged part) is gone, its space stays
    assert "decision-making. \nLeo Williams's goal" in g["agent1_turn0"]
    assert "Hendrick's secrets" not in g["agent1_turn0"] and "Leo's secrets" in g["agent1_turn0"]
    # the passive transform: reader's first line, no goal sentences, no LEAVE line, no open line
    p = g["agent2_turn3_passive"]
    assert p.startswith("Imagine you are ") and ". You are reading an interaction between other two people.\n" in p
    assert "only visible to you" not in p and "You can find" not in p and "LEAVE" not in p
    assert p.endswith("It is for my family.")
    assert "financial stability.)Turn 0: Leo Williams said:" in p  # own goal glued to the first turn
    # mutual_friends (strangers): the partner's background keeps "Name's background: " (trailing space)
    m = prompts_of(a, t16)
    partner = t16.agent_names[1]
    assert f"\n{partner}'s background: \n" in m["agent1_turn0"]
    # agent 2's goal ends in a cleaned </extra_info> line, so the LEAVE line starts a new line
    assert "  \nIf your goal as the agent" in m["agent2_turn0"]
    # agent 1's own goal leaves an empty line; the passive transform removes only that first empty line
    assert "\n\n" in m["agent1_turn0"] and "\n\n" not in m["agent1_turn0_passive"]
    # the environment-only scenario text is masked
    assert "common friends" not in m["agent1_turn0"] and "common friends" not in m["agent2_turn0"]


def test_protocol_facts(tasks):
    p = PromptPreset.from_config(None)
    assert p.name == "protocol"
    g = prompts_of(p, tasks[0][0])
    assert "\nTurn 0: Leo Williams said: Hey Hendrick: could you lend me some money?\n" in g["agent2_turn3"]
    assert "\nTurn 1: Hendrick Heinz said: Of course, Leo. How much do you need?\n" in g["agent2_turn3"]
    assert "\nTurn 2: Leo Williams said: About $3000.\nTurn 3:" in g["agent2_turn3"]
    assert "Keep your words concise.\nTurn 0: Leo Williams said:" in g["agent1_turn0"]
    assert not p.chat_templates and p.passive_seeds is None and p.special_tokens == "template"


def test_authors_utterance_rule():
    assert authors_utterance("  Sure: a: b\nnext") == "ab"
    assert authors_utterance("Hello there</s>") == "Hello there"
    assert authors_utterance("\n\n  Hi<|eot_id|>") == "Hi"
    assert authors_utterance("I need this:money") == "I need this:money"
    assert authors_utterance("Well, here is my plan: we split it.") == "we split it."


def test_leave_tests_differ_as_documented():
    a, p = PromptPreset.from_config({"preset": "authors"}), PromptPreset.from_config(None)
    early = "Leave it to me, I will handle the rest of it"
    # the line test sees "Turn 4: An" in the first 10 characters: only the end of the line can match
    assert p.ends_episode(4, "Ann Lee", early) and not a.ends_episode(4, "Ann Lee", early)
    for preset in (a, p):
        assert preset.ends_episode(4, "Ann Lee", "Bye now. LEAVE")
        assert not preset.ends_episode(4, "Ann Lee", "Let us talk about the money again, shall we")


def test_authors_reader_is_their_random_sample(tasks):
    by_id, loaded = tasks
    pool = list(loaded[0].personas_in_file_order)
    assert len(pool) == 40 and len(set(pool)) == 40
    import json
    keys = list(json.loads((SOTOPIA / "agents.json").read_text()))
    agents = json.loads((SOTOPIA / "agents.json").read_text())
    for seed in (0, 1, 2):
        rng = random.Random(seed)  # what set_seed(seed) does to Python's random module
        first = [rng.sample(keys, 2)[0] for _ in range(450)]
        want = {i: f"{agents[k]['first_name']} {agents[k]['last_name']}" for i, k in enumerate(first)}
        got = authors_reader_names([449, 3, 0], pool, seed)
        assert got == {i: want[i] for i in (449, 3, 0)}
    # the draw depends on the seed, not on which tasks are asked for
    assert authors_reader_names([5], pool, 1)[5] == authors_reader_names(range(10), pool, 1)[5]
    assert authors_reader_names(range(40), pool, 0) != authors_reader_names(range(40), pool, 1)


def test_chat_template_rules():
    a = PromptPreset.from_config({"preset": "authors"})
    inst = "[INST]{{ messages[0]['content'] }}[/INST]"
    for path in ("mistralai/Mistral-7B-Instruct-v0.1", "mistralai/Mistral-7B-Instruct-v0.3",
                 "/models/Llama-2-7b-chat-hf"):
        assert a.chat_template_for(path) == inst
    for path in ("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Llama-3.2-3B-Instruct"):
        assert a.chat_template_for(path).startswith("<|begin_of_text|><|start_header_id|>system")
    with pytest.raises(PresetError, match="models.X: prompt preset 'authors'.*chat_template"):
        a.check_model("X", "results/models/tiny-llama", None)
    a.check_model("X", "results/models/tiny-llama", "{{ messages[0]['content'] }}")  # its own template: fine
    PromptPreset.from_config(None).check_model("X", "results/models/tiny-llama", None)


def test_config_errors():
    assert preset_names() == ["authors", "protocol"]
    with pytest.raises(PresetError, match="unknown preset 'paper'; use one of authors, protocol"):
        PromptPreset.from_config({"preset": "paper"})
    with pytest.raises(PresetError, match="unknown key.*turnline"):
        PromptPreset.from_config({"preset": "authors", "turnline": "x"})
    over = PromptPreset.from_config({"preset": "authors", "hidden_goal": "Hidden"})
    assert over.templates.hidden_goal == "Hidden" and over.sha256() != PromptPreset.from_config({"preset": "authors"}).sha256()


def test_authors_tokenization_adds_a_second_bos(tmp_path):
    """special_tokens: always puts the tokenizer's BOS before a template that writes its own."""
    from syncr2.simulation.lm import LMConfig, ChatLM
    from syncr2.simulation.tiny_models import build_from_spec

    path = build_from_spec({"arch": "llama", "n_layers": 1, "hidden_size": 16, "n_heads": 2, "n_kv_heads": 1,
                            "intermediate_size": 32, "seed": 1}, tmp_path / "m")
    template = "<s>[INST]{{ messages[0]['content'] }}[/INST]"
    once = ChatLM.load(LMConfig(path=str(path), chat_template=template))
    always = ChatLM.load(LMConfig(path=str(path), chat_template=template, special_tokens="always"))
    text = once.render("Hi there")
    assert text == "<s>[INST]Hi there[/INST]"
    bos = once.tokenizer.bos_token_id
    ids_once, ids_always = once.tokenize([text])[0], always.tokenize([text])[0]
    assert ids_once[0] == bos and ids_once[1] != bos
    assert ids_always[:2] == [bos, bos] and ids_always[1:] == ids_once


def _write_golden() -> None:
    loaded = {t.task_id: t for t in load_tasks("sotopia_exports", SOTOPIA)}
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in ("authors", "protocol"):
        for task_id in TASKS:
            for key, text in prompts_of(PromptPreset.from_config({"preset": name}), loaded[task_id]).items():
                golden_path(name, task_id, key).write_bytes(text.encode("utf-8"))


if __name__ == "__main__" and "--write" in sys.argv:
    _write_golden()
