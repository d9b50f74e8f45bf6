"""The ToM condition's turns: an emotion and a speech act before every reply, and their distributions.

docs/protocol.md, "The ToM condition". Every speaker is told to open its
turn with one of Plutchik's eight emotions and one of Searle's five speech
acts (:data:`TOM_INSTRUCTION`, the paper's words). At the position where the
emotion word starts, the model's scores of the first sub-token of each
emotion word are softmaxed into an 8-way distribution; at the position where
the act word starts, the same for the acts (5-way). The partner's dialogue
line holds the response only, so it never sees the two words.

Two modes:

* ``constrained``: a logits processor (transformers' extension point) lets
  only the candidates' first sub-tokens through at those two positions and
  forces the rest of the chosen word and its full stop, so every turn
  follows ``Emotion. Act. Response`` and yields both distributions;
* ``free``: the model writes freely; the distributions are read where the
  canonical tokens of ``Emotion.`` put the act, and a turn that does not
  follow the format is kept in the dialogue but has no targets (counted as
  not compliant).

A candidate is located by tokenising the model's real generation prompt with
and without the word (:func:`candidate_tokens`); a tokenizer that gives two
candidates one first sub-token, or that tokenises a word differently after
the prompt, is refused with the words named.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: Plutchik's eight primary emotions, in the paper's order.
EMOTIONS = ("Joy", "Trust", "Fear", "Surprise", "Sadness", "Disgust", "Anger", "Anticipation")
#: Searle's five speech-act types, in the paper's order.
ACTS = ("Assertive", "Directive", "Commissive", "Expressive", "Declaration")
MODES = ("constrained", "free")

#: The paper's "Additional Instruction" (Appendix J), word for word.
TOM_INSTRUCTION = (
    "Please be sure to indicate your emotion and action type both in a word at the beginning of your turn, "
    "in the format of: Emotion. Action type. Response. Emotion should be one of the following words: "
    "Joy. Trust. Fear. Surprise. Sadness. Disgust. Anger. Anticipation.; Action type should be one of the "
    "following words: Assertive. Directive. Commissive. Expressive. Declaration. Your output format should be: "
    "Emotion. Action type. Response."
)

_REPLY = re.compile(r"^\s*(?P<emotion>[A-Za-z]+)\s*\.\s*(?P<act>[A-Za-z]+)\s*\.\s*(?P<response>.*)$", re.DOTALL)


def tom_intro(intro: str) -> str:
    """The speaker's intro with the instruction after it (the turn's open line stays last in the prompt)."""
    tail = "\n" if intro.endswith("\n") else ""
    return f"{intro.rstrip(chr(10))}\n\n{TOM_INSTRUCTION}{tail}"


def split_reply(text: str) -> tuple[str | None, str | None, str]:
    """(emotion, act, response) of a reply; (None, None, text) when it does not open with a listed
    emotion and a listed act, each followed by a full stop (case-insensitive; canonical names returned)."""
    m = _REPLY.match(text)
    if m:
        emotion = next((e for e in EMOTIONS if e.lower() == m["emotion"].lower()), None)
        act = next((a for a in ACTS if a.lower() == m["act"].lower()), None)
        if emotion and act:
            return emotion, act, m["response"].strip()
    return None, None, text


@dataclass(frozen=True)
class WordTokens:
    """The candidates of one position: each word's token ids after the context (first: the scored one)."""

    words: tuple[str, ...]
    ids: tuple[tuple[int, ...], ...]  # per word: its tokens and its full stop's

    @property
    def first(self) -> list[int]:
        return [seq[0] for seq in self.ids]


def candidate_tokens(tokenizer: Any, context: str, words: Sequence[str], lead: str, model: str) -> WordTokens:
    """Each word's tokens (with its full stop) as the model would write them right after ``context``.

    Raises ``ValueError`` naming ``model`` and the words when the context's own
    tokens change with the word appended, or when two words share a first sub-token.
    """
    base = tokenizer(context, add_special_tokens=False)["input_ids"]
    seqs = []
    for w in words:
        ids = tokenizer(context + lead + w + ".", add_special_tokens=False)["input_ids"]
        if ids[: len(base)] != base or len(ids) == len(base):
            raise ValueError(f"model {model}: {w!r} merges with the text before it when tokenised, so its first "
                             "sub-token has no position of its own; this tokenizer cannot run the ToM condition")
        seqs.append(tuple(ids[len(base):]))
    firsts: dict[int, str] = {}
    for w, seq in zip(words, seqs):
        if seq[0] in firsts:
            raise ValueError(f"model {model}: {firsts[seq[0]]!r} and {w!r} start with the same sub-token "
                             f"({tokenizer.convert_ids_to_tokens(seq[0])!r}), so their scores cannot be told apart; "
                             "this tokenizer cannot run the ToM condition")
        firsts[seq[0]] = w
    return WordTokens(tuple(words), tuple(seqs))


@dataclass(frozen=True)
class ToMFormat:
    """Where a model writes the emotion and the act: the candidates of both positions."""

    emotions: WordTokens
    acts: WordTokens

    @classmethod
    def for_model(cls, tokenizer: Any, generation_prompt: str, model: str) -> ToMFormat:
        """Candidates after ``generation_prompt`` (a rendered prompt); the acts are checked after every emotion."""
        emotions = candidate_tokens(tokenizer, generation_prompt, EMOTIONS, "", model)
        acts = None
        for e in EMOTIONS:
            after = candidate_tokens(tokenizer, generation_prompt + e + ".", ACTS, " ", model)
            if acts is not None and after != acts:
                raise ValueError(f"model {model}: the act words tokenise differently after {e!r}; this tokenizer "
                                 "cannot run the ToM condition")
            acts = after
        assert acts is not None
        return cls(emotions, acts)


@dataclass
class _Row:
    phase: int = 0  # 0: emotion next, 1: forcing the emotion, 2: act next, 3: forcing the act, 4: free
    forced: list[int] = field(default_factory=list)


class ToMProcessor:
    """A transformers logits processor for one batch: records both distributions and, constrained, enforces
    ``Emotion. Act.`` (module docstring). Put it before the sampler; ``emotion_dist`` / ``act_dist``
    hold each row's distribution (NaN where the row never reached the position)."""

    def __init__(self, fmt: ToMFormat, prompt_len: int, n_rows: int, constrain: bool) -> None:
        self.fmt, self.prompt_len, self.constrain = fmt, int(prompt_len), bool(constrain)
        self.rows = [_Row() for _ in range(n_rows)]
        self.emotion_dist = np.full((n_rows, len(EMOTIONS)), np.nan)
        self.act_dist = np.full((n_rows, len(ACTS)), np.nan)
        self._emo = {seq[0]: seq for seq in fmt.emotions.ids}
        self._act = {seq[0]: seq for seq in fmt.acts.ids}

    @staticmethod
    def _softmax(scores: torch.Tensor, ids: list[int]) -> np.ndarray:
        picked = scores[ids].double()
        return torch.softmax(picked, 0).cpu().numpy() if torch.isfinite(picked).all() else np.full(len(ids), np.nan)

    def _only(self, scores: torch.Tensor, r: int, ids: list[int]) -> None:
        keep = scores[r, ids].clone()
        scores[r] = -math.inf
        scores[r, ids] = keep

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_len
        if all(row.phase == 4 for row in self.rows):
            return scores
        last = input_ids[:, -1].tolist() if step > 0 else []  # one device-to-host copy per step, not per row
        for r, row in enumerate(self.rows):
            if row.phase == 4:
                continue
            if step > 0:
                self._advance(row, last[r])
            if row.phase in (0, 2):
                cands = self.fmt.emotions.first if row.phase == 0 else self.fmt.acts.first
                (self.emotion_dist if row.phase == 0 else self.act_dist)[r] = self._softmax(scores[r], cands)
                if self.constrain:
                    self._only(scores, r, cands)
                elif row.phase == 2:
                    row.phase = 4  # free mode: the act is read, nothing more to watch
            elif row.phase in (1, 3) and self.constrain:
                self._only(scores, r, [row.forced[0]])
        return scores

    def _advance(self, row: _Row, last: int) -> None:
        """Move a row's state past the token it just wrote."""
        if row.phase == 0:
            seq = self._emo.get(last)
            if seq is None:  # free mode: not a listed emotion's first token
                row.phase = 4
                return
            row.forced, row.phase = list(seq[1:]), 1
        elif row.phase == 2:
            seq = self._act.get(last)
            row.forced, row.phase = (list(seq[1:]), 3) if seq is not None else ([], 4)
        elif row.phase in (1, 3):
            if row.forced and last == row.forced[0]:
                row.forced.pop(0)
            else:  # free mode: the model left the canonical tokens
                row.phase = 4
                return
        if row.phase in (1, 3) and not row.forced:
            row.phase += 1  # 1 -> 2: the act is next; 3 -> 4: free text


#: The ToM columns an episodes table of the ``tom`` condition adds to the episode columns.
TOM_COLUMNS = ("emotion", "act", "emotion_dist", "act_dist", "compliant")


class ToMCapture:
    """One ``generate`` call's ToM processors (one per batch) and, after it, each prompt's distributions."""

    def __init__(self, fmt: ToMFormat, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"tom.mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.fmt, self.mode = fmt, mode
        self.batches: list[tuple[list[int], ToMProcessor]] = []

    def __call__(self, rows: list[int], prompt_len: int) -> list[ToMProcessor]:
        proc = ToMProcessor(self.fmt, prompt_len, len(rows), constrain=self.mode == "constrained")
        self.batches.append((rows, proc))
        return [proc]

    def distributions(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(emotion (n, 8), act (n, 5)) distributions in prompt order; NaN rows never reached a position."""
        emotion, act = np.full((n, len(EMOTIONS)), np.nan), np.full((n, len(ACTS)), np.nan)
        for rows, proc in self.batches:
            emotion[rows], act[rows] = proc.emotion_dist, proc.act_dist
        return emotion, act


def tom_turn(raw: str, emotion_dist: np.ndarray, act_dist: np.ndarray,
             clean: Callable[[str], str]) -> tuple[str, dict[str, Any]]:
    """The partner-visible utterance of a raw reply, and its ToM columns.

    The format is read off the raw reply first, then the response alone goes
    through the preset's ``clean`` (so a cleaner never mistakes the two words
    for a speaker label). A turn is compliant when the reply opens with a
    listed emotion and act and both distributions were read; a non-compliant
    turn keeps its whole cleaned text as the utterance and has no targets.
    """
    emotion, act, response = split_reply(raw)
    compliant = emotion is not None and bool(np.isfinite(emotion_dist).all() and np.isfinite(act_dist).all())
    return clean(response if emotion is not None else raw), {
        "emotion": emotion, "act": act, "emotion_dist": emotion_dist.tolist(), "act_dist": act_dist.tolist(),
        "compliant": compliant}
