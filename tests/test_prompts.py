"""Prompts: golden full prompts of a real Sotopia task, the passive transform, helpers."""

from pathlib import Path

import pytest

from syncr2.prompts import (
    PromptTemplates, clean_utterance, draw_reader_names, is_leave, passive_prompt, speaker_prompt, template_hash,
)
from syncr2.tasks import load_sotopia_exports, tasks_frame

SOTOPIA = Path(__file__).resolve().parents[2] / "shared" / "sotopia"

PREAMBLE_LEO = """\
Imagine you are Leo Williams, your task is to act/speak as Leo Williams would, keeping in mind Leo Williams's social goal.
You can find Leo Williams's goal (or background) in the 'Here is the context of the interaction' field.
Note that Leo Williams's goal is only visible to you.
You should try your best to achieve Leo Williams's goal in a way that align with their character traits.
Additionally, maintaining the conversation's naturalness and realism is essential (e.g., do not repeat what other people has already said before).
"""
PREAMBLE_HENDRICK = PREAMBLE_LEO.replace("Leo Williams", "Hendrick Heinz")
CONTEXT_HEAD = """\
Here is the context of this interaction:
Scenario: Conversation between two friends at a tea party
Participants: Leo Williams and Hendrick Heinz
"""
LEO_BIO_PUBLIC = (
    "Leo Williams's background: Leo Williams is a 37-year-old male dentist. He/him pronouns. Leo Williams often "
    "spends his time playing with his young daughter whom he cherishes dearly. Personality and values description: "
    "Leo Williams, despite being quiet, values security and care for others. He's a rational decision-maker "
    "focussing on best outcomes. "
)
HENDRICK_BIO_PUBLIC = (
    "Hendrick Heinz's background: Hendrick Heinz is a 54-year-old male chef. He/him pronouns. Hendrick Heinz hosts "
    "monthly wine tasting nights with his peers. Personality and values description: Hendrick Heinz, though somewhat "
    "impulsive, values hedonism and conformity. He combines practicality with decisiveness in decision-making. "
)
LEO_GOAL = "Leo Williams's goal: Borrow money (Extra information: you need $3000 to support life.)"
HENDRICK_GOAL = (
    "Hendrick Heinz's goal: Maintain financial stability while maintaining friendship (Extra information: you only "
    "have $2000 available right now. Hint: you can not lend all $2000 since you still need to maintain your "
    "financial stability.)"
)
INSTRUCTION = (
    'You can leave the conversation by saying "LEAVE" once your goal is achieved; otherwise, say something to '
    "interact with the other person. Keep your words concise."
)
INTRO_LEO = (
    PREAMBLE_LEO + CONTEXT_HEAD
    + LEO_BIO_PUBLIC + "Leo's secrets: He has a secret child from a previous relationship.\n"
    + HENDRICK_BIO_PUBLIC.rstrip() + "\n"  # the partner's secret is masked by the viewer tag
    + LEO_GOAL + "\nHendrick Heinz's goal: Unknown\n" + INSTRUCTION
)
INTRO_HENDRICK = (
    PREAMBLE_HENDRICK + CONTEXT_HEAD
    + LEO_BIO_PUBLIC + "\n"
    + HENDRICK_BIO_PUBLIC + "Hendrick's secrets: Faked his culinary credentials to secure prestigious employment\n"
    + "Leo Williams's goal: Unknown\n" + HENDRICK_GOAL + "\n" + INSTRUCTION
)
HISTORY = [("Leo Williams", "Hi Hendrick, lovely tea."), ("Hendrick Heinz", "Thanks Leo! How are you?"),
           ("Leo Williams", "Honestly, I need a favor.")]
TURNS_0_2 = (
    "Turn 0: Leo Williams said: Hi Hendrick, lovely tea.\n"
    "Turn 1: Hendrick Heinz said: Thanks Leo! How are you?\n"
    "Turn 2: Leo Williams said: Honestly, I need a favor.\n"
)


@pytest.fixture(scope="module")
def task0():
    tasks = load_sotopia_exports(SOTOPIA)
    return tasks_frame(tasks[:1]).iloc[0]


def test_golden_prompts_task0(task0):
    t = PromptTemplates()
    assert task0.relationship_name == "friend"
    assert speaker_prompt(task0.intro1, [], task0.agent1_name, 0, t) == INTRO_LEO + "\nTurn 0: Leo Williams said:"
    assert speaker_prompt(task0.intro2, HISTORY[:1], task0.agent2_name, 1, t) == (
        INTRO_HENDRICK + "\nTurn 0: Leo Williams said: Hi Hendrick, lovely tea.\nTurn 1: Hendrick Heinz said:"
    )
    assert speaker_prompt(task0.intro2, HISTORY, task0.agent2_name, 3, t) == (
        INTRO_HENDRICK + "\n" + TURNS_0_2 + "Turn 3: Hendrick Heinz said:"
    )
    assert speaker_prompt(task0.intro1, HISTORY + [("Hendrick Heinz", "Sure.")], task0.agent1_name, 4, t) == (
        INTRO_LEO + "\n" + TURNS_0_2 + "Turn 3: Hendrick Heinz said: Sure.\nTurn 4: Leo Williams said:"
    )
    for intro in (task0.intro1, task0.intro2):
        assert "<" not in intro and ">" not in intro


def test_passive_transform_real_task(task0):
    t = PromptTemplates()
    prompt = speaker_prompt(task0.intro2, HISTORY, task0.agent2_name, 3, t)
    got = passive_prompt(prompt, "Hendrick Heinz", "Samuel Anderson", t)
    expected = (
        "Imagine you are Samuel Anderson. You are reading an interaction between other two people.\n"
        + "\n".join(PREAMBLE_HENDRICK.splitlines()[3:]) + "\n" + CONTEXT_HEAD
        + LEO_BIO_PUBLIC + "\n"
        + HENDRICK_BIO_PUBLIC + "Hendrick's secrets: Faked his culinary credentials to secure prestigious employment\n"
        + "Leo Williams's goal: Unknown\n" + HENDRICK_GOAL + "\n" + TURNS_0_2.rstrip("\n")
    )
    assert got == expected
    assert "LEAVE" not in got and "said:\n" not in got + "\n" and not got.endswith("said:")
    with pytest.raises(ValueError, match="open turn line of 'Hendrick Heinz'"):
        passive_prompt(prompt.rsplit("\n", 1)[0], "Hendrick Heinz", "X Y", t)
    with pytest.raises(ValueError, match="lacks 'Imagine you are Leo Williams"):
        passive_prompt(prompt, "Leo Williams", "X Y", t)  # not Leo's prompt
    with pytest.raises(ValueError, match="lacks"):
        passive_prompt(prompt.replace("LEAVE", "QUIT"), "Hendrick Heinz", "X Y", t)


def test_templates_are_data():
    t = PromptTemplates.from_dict({"open_line": "[{turn}] {name}:"})
    assert speaker_prompt("intro", [], "Ann Lee", 0, t) == "intro\n[0] Ann Lee:"
    assert template_hash(t) != template_hash(PromptTemplates())
    with pytest.raises(ValueError, match="unknown template field"):
        PromptTemplates.from_dict({"opn_line": "x"})


def test_reader_draw_is_seeded_per_task_and_excludes_participants():
    names = [f"P{i}" for i in range(40)]
    a = draw_reader_names([3, 1, 2], names, seed=0, exclude={1: ["P5"]})
    b = draw_reader_names([2, 3, 1], list(reversed(names)), seed=0, exclude={1: ["P5"]})
    assert a == b  # independent of task order and of the persona list's order
    assert draw_reader_names(range(50), names, seed=1) != draw_reader_names(range(50), names, seed=0)
    only = draw_reader_names([7], ["A", "B"], seed=0, exclude={7: ["A"]})
    assert only == {7: "B"}


@pytest.mark.parametrize("raw,clean", [
    ("Hello there!\nSecond line", "Hello there!"),
    ("\n  Leo Williams: I need $3000.\nmore", "I need $3000."),
    ("Turn 3: Hendrick Heinz said: Sure, why not?", "Sure, why not?"),
    ("Well, here is my plan: we split it.", "Well, here is my plan: we split it."),
    ('"Quoted reply"', "Quoted reply"),
    ("", ""),
])
def test_clean_utterance(raw, clean):
    assert clean_utterance(raw) == clean


@pytest.mark.parametrize("text,leave", [
    ("LEAVE", True), ("I leave now, thanks for everything my friend", True), ("I will leave now, thanks for everything friend", False),
    ("Thanks for the tea. Okay, I'll leave", True), ("Ok I left.", True),
    ("Please do not leave the dishes in the sink overnight again.", False), ("Hello", False),
])
def test_is_leave(text, leave):
    assert is_leave(text) is leave
