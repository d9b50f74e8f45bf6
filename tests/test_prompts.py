"""Prompts: golden full prompts of a real Sotopia task, the passive transform, the helpers."""

from pathlib import Path

import pytest

from syncr2.simulation.prompts import (
    SOTOPIA_PREAMBLE_EXTRA,
    PromptTemplates,
    clean_utterance,
    draw_reader_names,
    is_leave,
    passive_prompt,
    render_intro,
    speaker_prompt,
    template_hash,
)
from syncr2.simulation.tasks import load_sotopia_exports, tasks_frame

SOTOPIA = Path(__file__).resolve().parents[2] / "shared" / "sotopia"

# Task 0 of the Sotopia exports: "borrow_money" (hand-craft), friends, so each
# background shows its own secret only to its owner; the partner's goal is "Unknown".
GOLDEN_LEO_TURN0 = """\
Imagine you are Leo Williams, your task is to act/speak as Leo Williams would, keeping in mind Leo Williams's social goal.
You can find Leo Williams's goal (or background) in the 'Here is the context of the interaction' field.
Note that Leo Williams's goal is only visible to you.
Here is the context of this interaction:
Scenario: Conversation between two friends at a tea party
Participants: Leo Williams and Hendrick Heinz
Leo Williams's background: Leo Williams is a 37-year-old male dentist. He/him pronouns. Leo Williams often spends his time playing with his young daughter whom he cherishes dearly. Personality and values description: Leo Williams, despite being quiet, values security and care for others. He's a rational decision-maker focussing on best outcomes. Leo's secrets: He has a secret child from a previous relationship.
Hendrick Heinz's background: Hendrick Heinz is a 54-year-old male chef. He/him pronouns. Hendrick Heinz hosts monthly wine tasting nights with his peers. Personality and values description: Hendrick Heinz, though somewhat impulsive, values hedonism and conformity. He combines practicality with decisiveness in decision-making.
Leo Williams's goal: Borrow money (Extra information: you need $3000 to support life.)
Hendrick Heinz's goal: Unknown
If your goal as the agent has been achieved, you should leave the conversation by saying "LEAVE". If your goal has not been achieved, you should say something to interact with the other. Keep your words concise.
Turn 0: Leo Williams said:"""

GOLDEN_HENDRICK_TURN1 = """\
Imagine you are Hendrick Heinz, your task is to act/speak as Hendrick Heinz would, keeping in mind Hendrick Heinz's social goal.
You can find Hendrick Heinz's goal (or background) in the 'Here is the context of the interaction' field.
Note that Hendrick Heinz's goal is only visible to you.
Here is the context of this interaction:
Scenario: Conversation between two friends at a tea party
Participants: Leo Williams and Hendrick Heinz
Leo Williams's background: Leo Williams is a 37-year-old male dentist. He/him pronouns. Leo Williams often spends his time playing with his young daughter whom he cherishes dearly. Personality and values description: Leo Williams, despite being quiet, values security and care for others. He's a rational decision-maker focussing on best outcomes.
Hendrick Heinz's background: Hendrick Heinz is a 54-year-old male chef. He/him pronouns. Hendrick Heinz hosts monthly wine tasting nights with his peers. Personality and values description: Hendrick Heinz, though somewhat impulsive, values hedonism and conformity. He combines practicality with decisiveness in decision-making. Hendrick's secrets: Faked his culinary credentials to secure prestigious employment
Leo Williams's goal: Unknown
Hendrick Heinz's goal: Maintain financial stability while maintaining friendship (Extra information: you only have $2000 available right now. Hint: you can not lend all $2000 since you still need to maintain your financial stability.)
If your goal as the agent has been achieved, you should leave the conversation by saying "LEAVE". If your goal has not been achieved, you should say something to interact with the other. Keep your words concise.
Turn 0: Leo Williams said: Hi Hendrick, lovely tea.
Turn 1: Hendrick Heinz said:"""

GOLDEN_LEO_TURN2 = """\
Imagine you are Leo Williams, your task is to act/speak as Leo Williams would, keeping in mind Leo Williams's social goal.
You can find Leo Williams's goal (or background) in the 'Here is the context of the interaction' field.
Note that Leo Williams's goal is only visible to you.
Here is the context of this interaction:
Scenario: Conversation between two friends at a tea party
Participants: Leo Williams and Hendrick Heinz
Leo Williams's background: Leo Williams is a 37-year-old male dentist. He/him pronouns. Leo Williams often spends his time playing with his young daughter whom he cherishes dearly. Personality and values description: Leo Williams, despite being quiet, values security and care for others. He's a rational decision-maker focussing on best outcomes. Leo's secrets: He has a secret child from a previous relationship.
Hendrick Heinz's background: Hendrick Heinz is a 54-year-old male chef. He/him pronouns. Hendrick Heinz hosts monthly wine tasting nights with his peers. Personality and values description: Hendrick Heinz, though somewhat impulsive, values hedonism and conformity. He combines practicality with decisiveness in decision-making.
Leo Williams's goal: Borrow money (Extra information: you need $3000 to support life.)
Hendrick Heinz's goal: Unknown
If your goal as the agent has been achieved, you should leave the conversation by saying "LEAVE". If your goal has not been achieved, you should say something to interact with the other. Keep your words concise.
Turn 0: Leo Williams said: Hi Hendrick, lovely tea.
Turn 1: Hendrick Heinz said: Thanks Leo! How are you?
Turn 2: Leo Williams said:"""

GOLDEN_HENDRICK_TURN3 = """\
Imagine you are Hendrick Heinz, your task is to act/speak as Hendrick Heinz would, keeping in mind Hendrick Heinz's social goal.
You can find Hendrick Heinz's goal (or background) in the 'Here is the context of the interaction' field.
Note that Hendrick Heinz's goal is only visible to you.
Here is the context of this interaction:
Scenario: Conversation between two friends at a tea party
Participants: Leo Williams and Hendrick Heinz
Leo Williams's background: Leo Williams is a 37-year-old male dentist. He/him pronouns. Leo Williams often spends his time playing with his young daughter whom he cherishes dearly. Personality and values description: Leo Williams, despite being quiet, values security and care for others. He's a rational decision-maker focussing on best outcomes.
Hendrick Heinz's background: Hendrick Heinz is a 54-year-old male chef. He/him pronouns. Hendrick Heinz hosts monthly wine tasting nights with his peers. Personality and values description: Hendrick Heinz, though somewhat impulsive, values hedonism and conformity. He combines practicality with decisiveness in decision-making. Hendrick's secrets: Faked his culinary credentials to secure prestigious employment
Leo Williams's goal: Unknown
Hendrick Heinz's goal: Maintain financial stability while maintaining friendship (Extra information: you only have $2000 available right now. Hint: you can not lend all $2000 since you still need to maintain your financial stability.)
If your goal as the agent has been achieved, you should leave the conversation by saying "LEAVE". If your goal has not been achieved, you should say something to interact with the other. Keep your words concise.
Turn 0: Leo Williams said: Hi Hendrick, lovely tea.
Turn 1: Hendrick Heinz said: Thanks Leo! How are you?
Turn 2: Leo Williams said: Honestly, I need a favor.
Turn 3: Hendrick Heinz said:"""

# The passive transform (docs/protocol.md, "Passive reader") applied to GOLDEN_HENDRICK_TURN3 with reader Samuel Anderson.
GOLDEN_PASSIVE_TURN3 = """\
Imagine you are Samuel Anderson. You are reading an interaction between other two people.
Here is the context of this interaction:
Scenario: Conversation between two friends at a tea party
Participants: Leo Williams and Hendrick Heinz
Leo Williams's background: Leo Williams is a 37-year-old male dentist. He/him pronouns. Leo Williams often spends his time playing with his young daughter whom he cherishes dearly. Personality and values description: Leo Williams, despite being quiet, values security and care for others. He's a rational decision-maker focussing on best outcomes.
Hendrick Heinz's background: Hendrick Heinz is a 54-year-old male chef. He/him pronouns. Hendrick Heinz hosts monthly wine tasting nights with his peers. Personality and values description: Hendrick Heinz, though somewhat impulsive, values hedonism and conformity. He combines practicality with decisiveness in decision-making. Hendrick's secrets: Faked his culinary credentials to secure prestigious employment
Leo Williams's goal: Unknown
Hendrick Heinz's goal: Maintain financial stability while maintaining friendship (Extra information: you only have $2000 available right now. Hint: you can not lend all $2000 since you still need to maintain your financial stability.)
Turn 0: Leo Williams said: Hi Hendrick, lovely tea.
Turn 1: Hendrick Heinz said: Thanks Leo! How are you?
Turn 2: Leo Williams said: Honestly, I need a favor."""

HISTORY = [
    ("Leo Williams", "Hi Hendrick, lovely tea."),
    ("Hendrick Heinz", "Thanks Leo! How are you?"),
    ("Leo Williams", "Honestly, I need a favor."),
]
LEO_SECRET = "He has a secret child from a previous relationship."
HENDRICK_SECRET = "Faked his culinary credentials to secure prestigious employment"


@pytest.fixture(scope="module")
def real_tasks():
    return load_sotopia_exports(SOTOPIA)


@pytest.fixture(scope="module")
def real_frame(real_tasks):
    return tasks_frame(real_tasks).set_index("task_id", drop=False)


@pytest.fixture(scope="module")
def task0(real_frame):
    return real_frame.loc[0]


def test_golden_prompts_task0(task0):
    t = PromptTemplates()
    assert (task0.agent1_name, task0.agent2_name, task0.relationship_name) == ("Leo Williams", "Hendrick Heinz", "friend")
    assert speaker_prompt(task0.intro1, [], "Leo Williams", 0, t) == GOLDEN_LEO_TURN0
    assert speaker_prompt(task0.intro2, HISTORY[:1], "Hendrick Heinz", 1, t) == GOLDEN_HENDRICK_TURN1
    assert speaker_prompt(task0.intro1, HISTORY[:2], "Leo Williams", 2, t) == GOLDEN_LEO_TURN2
    assert speaker_prompt(task0.intro2, HISTORY, "Hendrick Heinz", 3, t) == GOLDEN_HENDRICK_TURN3


def test_golden_masking_facts(task0):
    """What the golden strings encode, stated once more as facts of docs/protocol.md, "The protocol preset"."""
    assert LEO_SECRET in task0.intro1 and HENDRICK_SECRET not in task0.intro1
    assert HENDRICK_SECRET in task0.intro2 and LEO_SECRET not in task0.intro2
    assert "Hendrick Heinz's goal: Unknown" in task0.intro1 and "Leo Williams's goal: Unknown" in task0.intro2
    assert "Maintain financial stability" not in task0.intro1 and "Borrow money" not in task0.intro2
    for text in (task0.intro1, task0.intro2, task0.judge_intro):
        assert "<" not in text and ">" not in text and "extra_info" not in text
    # the judge sees everything: both secrets and both goals
    assert LEO_SECRET in task0.judge_intro and HENDRICK_SECRET in task0.judge_intro
    assert "Borrow money" in task0.judge_intro and "Maintain financial stability" in task0.judge_intro
    assert task0.agent1_goal == "Borrow money (Extra information: you need $3000 to support life.)"


def test_every_real_intro_is_masked_and_tag_free(real_frame, real_tasks):
    for t in real_tasks:
        row = real_frame.loc[t.task_id]
        for agent, intro in ((1, row.intro1), (2, row.intro2)):
            partner = t.agents[2 - agent]
            assert "<" not in intro and ">" not in intro
            assert f"{t.agent_names[2 - agent]}'s goal: Unknown" in intro
            assert f"{partner.first_name}'s secrets:" not in intro
            assert f"{t.agents[agent - 1].first_name}'s secrets:" in intro
            assert intro.startswith(f"Imagine you are {t.agent_names[agent - 1]},")


def test_stranger_and_know_by_name_backgrounds(real_frame):
    # task 16 (mutual_friends, strangers): the partner's whole background is masked (Sotopia shows "Unknown"),
    # and the environment-only part of the scenario (the common friend) is only for the judge
    row = real_frame.loc[16]
    assert (row.agent1_name, row.agent2_name, row.relationship_name) == ("Giselle Rousseau", "Zane Bennett", "stranger")
    lines = row.intro1.split("\n")
    assert "Scenario: 2 strangers are meeting at a party." in lines
    assert "Zane Bennett's background: Unknown" in lines
    assert "Giselle Rousseau's background: Unknown" in row.intro2.split("\n")
    assert "common friends" not in row.intro1 + row.intro2
    assert "Scenario: 2 strangers are meeting at a party. They have 1 common friends: Micheline." in row.judge_intro
    # task 10 (know_by_name): the partner is known by name only
    row = real_frame.loc[10]
    assert (row.agent1_name, row.agent2_name, row.relationship_name) == ("Esmeralda Solis", "Noah Davis", "know_by_name")
    assert "Noah Davis's background: Noah Davis" in row.intro1.split("\n")
    assert "Esmeralda Solis's background: Esmeralda Solis" in row.intro2.split("\n")


def test_passive_transform_real_task(task0):
    t = PromptTemplates()
    got = passive_prompt(GOLDEN_HENDRICK_TURN3, "Hendrick Heinz", "Samuel Anderson", t)
    assert got == GOLDEN_PASSIVE_TURN3
    # turn 0: nothing said yet, the reader reads the context only
    got0 = passive_prompt(GOLDEN_LEO_TURN0, "Leo Williams", "Samuel Anderson", t)
    assert got0 == "\n".join(
        ["Imagine you are Samuel Anderson. You are reading an interaction between other two people."]
        + GOLDEN_LEO_TURN0.split("\n")[3:-2]
    )
    assert got0.endswith("Hendrick Heinz's goal: Unknown")


def test_passive_transform_refuses_what_it_cannot_transform(task0):
    t = PromptTemplates()
    with pytest.raises(ValueError, match="open turn line of 'Hendrick Heinz'"):
        passive_prompt(GOLDEN_HENDRICK_TURN3.rsplit("\n", 1)[0], "Hendrick Heinz", "X Y", t)
    with pytest.raises(ValueError, match="does not start with 'Imagine you are Leo Williams"):
        passive_prompt(GOLDEN_HENDRICK_TURN3, "Leo Williams", "X Y", t)  # not Leo's prompt
    with pytest.raises(ValueError, match="lacks 'If your goal as the agent"):
        passive_prompt(GOLDEN_HENDRICK_TURN3.replace("LEAVE", "QUIT"), "Hendrick Heinz", "X Y", t)
    with pytest.raises(ValueError, match="lacks .Note that Hendrick Heinz's goal"):
        passive_prompt(GOLDEN_HENDRICK_TURN3.replace("Note that", "Mind that"), "Hendrick Heinz", "X Y", t)
    # a prompt built with other templates is refused by the defaults
    other = PromptTemplates(instruction="Say LEAVE when done.")
    with pytest.raises(ValueError, match="lacks"):
        passive_prompt(speaker_prompt(render_intro_of_task0(other), [], "Leo Williams", 0, other), "Leo Williams", "X Y", t)
    with pytest.raises(ValueError, match="preamble_first is empty"):
        passive_prompt(GOLDEN_LEO_TURN0, "Leo Williams", "X Y", PromptTemplates(preamble_first=""))


def render_intro_of_task0(templates):
    return render_intro(load_sotopia_exports(SOTOPIA)[0], 1, templates)


def test_templates_are_data(real_tasks):
    # Sotopia's two further preamble sentences, as an override: they follow the authors' three
    t = PromptTemplates.from_dict({"preamble_extra": SOTOPIA_PREAMBLE_EXTRA})
    intro = render_intro(real_tasks[0], 1, t)
    assert intro.split("\n")[3:5] == [
        "You should try your best to achieve Leo Williams's goal in a way that align with their character traits.",
        "Additionally, maintaining the conversation's naturalness and realism is essential "
        "(e.g., do not repeat what other people has already said before).",
    ]
    assert intro.split("\n")[5] == "Here is the context of this interaction:"
    passive = passive_prompt(speaker_prompt(intro, [], "Leo Williams", 0, t), "Leo Williams", "Ann Lee", t)
    assert passive.split("\n")[:3] == [
        "Imagine you are Ann Lee. You are reading an interaction between other two people.",
        *intro.split("\n")[3:5],
    ]
    # the authors' own turn line had no space after "said:"
    t = PromptTemplates.from_dict({"turn_line": "Turn {turn}: {name} said:{utterance}", "open_line": "[{turn}] {name}:"})
    assert speaker_prompt("intro", [("Ann Lee", "Hi")], "Bo Kim", 1, t) == "intro\nTurn 0: Ann Lee said:Hi\n[1] Bo Kim:"
    assert template_hash(t) != template_hash(PromptTemplates())
    # the default wording is pinned: a change of it must be deliberate (it changes every shard's metadata)
    assert template_hash(PromptTemplates()) == "4941a66e06b1c0b1"
    assert template_hash(PromptTemplates.from_dict({})) == template_hash(PromptTemplates())


@pytest.mark.parametrize("data,message", [
    ({"opn_line": "x"}, "unknown template field"),
    ({"open_line": "Turn {turn}:"}, r"open_line: must contain placeholder\(s\) \['name'\]"),
    ({"preamble_first": "Imagine you are {speaker}."}, r"preamble_first: unknown placeholder\(s\) \['speaker'\]"),
    ({"instruction": "Say {LEAVE}"}, "instruction: unknown placeholder"),
    ({"passive_first": "Imagine {reader"}, "passive_first: bad template"),
    ({"hidden_goal": 3}, "hidden_goal: expected a string"),
])
def test_bad_templates(data, message):
    with pytest.raises(ValueError, match=message):
        PromptTemplates.from_dict(data)


def test_speaker_prompt_checks_history():
    t = PromptTemplates()
    with pytest.raises(ValueError, match="turn 2 but 1 past turns"):
        speaker_prompt("intro", [("A B", "hi")], "C D", 2, t)
    with pytest.raises(ValueError, match="utterance of turn 0 spans several lines"):
        speaker_prompt("intro", [("A B", "hi\nthere")], "C D", 1, t)
    # an empty utterance leaves no trailing space
    assert speaker_prompt("intro", [("A B", "")], "C D", 1, t) == "intro\nTurn 0: A B said:\nTurn 1: C D said:"


def test_reader_draw_is_seeded_per_task(real_frame, real_tasks):
    names = [f"P{i:02d}" for i in range(40)]
    a = draw_reader_names([3, 1, 2], names, seed=0)
    assert a == draw_reader_names([2, 3, 1], list(reversed(names)), seed=0)  # task order, persona order
    assert a == draw_reader_names([1, 2, 3], names, seed=0)
    whole = draw_reader_names(range(450), names, seed=0)
    assert {i: whole[i] for i in (1, 2, 3)} == a  # a selection draws what the full set draws
    assert whole != draw_reader_names(range(450), names, seed=1)
    assert len(set(whole.values())) == 40
    assert draw_reader_names([7], ["A", "B"], seed=0, exclude={7: ["A"]}) == {7: "B"}
    with pytest.raises(ValueError, match="task 7: no persona left"):
        draw_reader_names([7], ["A"], seed=0, exclude={7: ["A"]})
    # the real task table: one of the 40 Sotopia personas per task, pinned for seed 0
    assert real_frame.reader_name.isin(real_tasks[0].personas).all() and len(real_tasks[0].personas) == 40
    assert real_frame.loc[[0, 1, 2, 449], "reader_name"].tolist() == [
        "Samuel Anderson", "Jaxon Prentice", "Zane Bennett", "Benjamin Jackson",
    ]
    subset = tasks_frame([real_tasks[449], real_tasks[2]])
    assert subset.reader_name.tolist() == ["Benjamin Jackson", "Zane Bennett"]
    excluded = tasks_frame(real_tasks[:60], exclude_participants=True)
    assert ((excluded.reader_name != excluded.agent1_name) & (excluded.reader_name != excluded.agent2_name)).all()


@pytest.mark.parametrize("raw,clean", [
    ("Hello there!\nSecond line", "Hello there!"),
    ("\n  Leo Williams: I need $3000.\nmore", "I need $3000."),
    ("Leo: hi", "hi"),
    ("Turn 3: Hendrick Heinz said: Sure, why not?", "Sure, why not?"),
    ("Hendrick Heinz said: Fine.", "Fine."),
    ("Turn 4: hello", "hello"),
    ("**Leo Williams:** Hi there", "Hi there"),
    ("Dr. Smith: fine", "fine"),
    ('"Leo Williams: Hi"', "Hi"),
    ('Leo Williams: "Hi there"', "Hi there"),
    # genuine sentences with ": " are kept whole
    ("Well, here is my plan: we split it.", "Well, here is my plan: we split it."),
    ("I need this: money", "I need this: money"),
    ("Turn 2: Honestly, I need: cash", "Honestly, I need: cash"),
    ("At 10:30 we meet.", "At 10:30 we meet."),
    # quotes: a matching pair or a lone one at an end; inner quotes stay
    ('"Quoted reply"', "Quoted reply"),
    ("“Curly”", "Curly"),
    ('"Cut off by the token limit', "Cut off by the token limit"),
    ('He said "hi" to me', 'He said "hi" to me'),
    ("", ""),
    ("  \n\n ", ""),
])
def test_clean_utterance(raw, clean):
    assert clean_utterance(raw) == clean


def test_clean_utterance_options():
    assert clean_utterance("a\n\nb\nc", max_lines=2) == "a b"
    names = ["Leo Williams", "Hendrick Heinz"]
    assert clean_utterance("Note: bring cash") == "bring cash"  # the generic rule takes "Note" for a name
    assert clean_utterance("Note: bring cash", names=names) == "Note: bring cash"
    assert clean_utterance("Hendrick: ok", names=names) == "ok"
    assert clean_utterance("Turn 5: Leo Williams said: ok", names=names) == "ok"
    with pytest.raises(ValueError, match="max_lines"):
        clean_utterance("x", max_lines=0)


@pytest.mark.parametrize("text,leave", [
    ("LEAVE", True),
    ("(LEAVE)", True),
    ("I leave now, thanks for everything my friend", True),
    ("Thanks for the tea. Okay, I'll leave", True),
    ("Ok I left.", True),
    ("I will leave now, thanks for everything friend", False),  # "leave" only in the middle
    ("Please do not leave the dishes in the sink overnight again.", False),
    ("Goodbye! *Leaves the room*", False),  # the rule is literal: "leave" sits in neither 10-character end
    ("Hello", False),
    ("", False),
])
def test_is_leave(text, leave):
    assert is_leave(text) is leave


def test_judge_intros(real_frame, real_tasks):
    """Sotopia's environment context and the authors' judge intro: the same text, except for whitespace in
    mutual_friends, where the authors removed tags only after format_docstring and the final strip: the space
    after "<extra_info>" stays, and the intro ends in the spaces and newline before "</extra_info>"."""
    for t in real_tasks:
        row = real_frame.loc[t.task_id]
        if t.source != "mutual_friends":
            assert row.judge_intro == row.judge_intro_authors, t.task_id
        else:
            assert row.judge_intro.split() == row.judge_intro_authors.split()
            assert row.judge_intro_authors.endswith(" \n") and not row.judge_intro.endswith("\n")
            assert "\n You know the following friends:" in row.judge_intro_authors
            assert "\nYou know the following friends:" in row.judge_intro
