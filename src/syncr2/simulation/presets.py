"""Prompt presets: every rule that changes prompt tokens, as data.

A preset (``src/syncr2/data/presets/{name}.yaml``) holds the sentences we
write (:class:`~.prompts.PromptTemplates`) and the rules around them:

* ``intro``: ``sotopia`` (Sotopia's renderers; docs/protocol.md, "The protocol preset")
  or ``authors`` (the authors' copy of old Sotopia's layout; docs/protocol.md,
  "The authors preset");
* ``utterance``: ``labelled`` (:func:`~.prompts.clean_utterance`) or
  ``authors`` (:func:`~.authors_prompts.authors_utterance`);
* ``leave_test``: ``utterance`` or ``line`` (the whole dialogue line);
* ``special_tokens``: ``template`` (the chat template writes the BOS) or
  ``always`` (the tokenizer adds its BOS in front of the template's text);
* ``reader``: ``hashed`` (:func:`~.prompts.draw_reader_names`) or
  ``random_sample`` (:func:`~.authors_prompts.authors_reader_names`);
* ``passive``: ``protocol`` or ``authors`` (the passive transform);
* ``passive_seeds``: the seeds re-read passively (null: all);
* ``chat_templates``: (regex on the model path, Jinja template) rules, first
  match wins; a model with its own ``chat_template`` in the config keeps it,
  a model no rule matches uses its checkpoint's template.

Two presets ship: ``authors`` (config/paper.yaml) and ``protocol`` (the
default). The config's ``prompts`` section names one (``preset``) and may
override any template field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import cache
from importlib import resources
from typing import Any

import yaml

from .authors_prompts import (
    authors_passive_prompt,
    authors_reader_names,
    authors_utterance,
    render_intro_authors,
)
from .prompts import (
    PromptTemplates,
    clean_utterance,
    draw_reader_names,
    is_leave,
    passive_prompt,
    render_intro,
    speaker_prompt,
)

DEFAULT_PRESET = "protocol"
_CHOICES = {
    "intro": ("sotopia", "authors"),
    "utterance": ("labelled", "authors"),
    "leave_test": ("utterance", "line"),
    "special_tokens": ("template", "always"),
    "reader": ("hashed", "random_sample"),
    "passive": ("protocol", "authors"),
}


class PresetError(ValueError):
    """A prompt preset or a ``prompts`` config section is malformed; the message says what to change."""


def preset_names() -> list[str]:
    """The presets shipped with the package."""
    folder = resources.files("syncr2") / "data" / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


@cache
def _preset_data(name: str) -> dict[str, Any]:
    names = preset_names()
    if name not in names:
        raise PresetError(f"prompts.preset: unknown preset {name!r}; use one of {', '.join(names)}")
    text = (resources.files("syncr2") / "data" / "presets" / f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@dataclass(frozen=True)
class PromptPreset:
    """A resolved preset: templates (with the config's overrides) and the rules (module docstring)."""

    name: str
    templates: PromptTemplates
    intro: str
    utterance: str
    leave_test: str
    special_tokens: str
    reader: str
    passive: str
    passive_seeds: tuple[int, ...] | None
    chat_templates: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise PresetError(f"preset {self.name!r}: {key} must be one of {allowed}, got {getattr(self, key)!r}")
        for pattern, _ in self.chat_templates:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise PresetError(f"preset {self.name!r}: chat_templates match {pattern!r} is not a regex: {exc}") from exc

    @classmethod
    def from_config(cls, prompts: Mapping[str, Any] | None) -> PromptPreset:
        """The preset the config's ``prompts`` section names (default ``protocol``), with its template overrides."""
        section = dict(prompts or {})
        name = section.pop("preset", DEFAULT_PRESET)
        data = _preset_data(str(name))
        known = {f.name for f in fields(PromptTemplates)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise PresetError(
                f"prompts: unknown key(s) {', '.join(unknown)}; the section takes 'preset' and template fields "
                f"({', '.join(sorted(known))})"
            )
        try:
            templates = PromptTemplates.from_dict({**data["templates"], **section})
        except ValueError as exc:
            raise PresetError(str(exc)) from exc
        seeds = data.get("passive_seeds")
        return cls(
            name=str(name), templates=templates, intro=data["intro"], utterance=data["utterance"],
            leave_test=data["leave_test"], special_tokens=data["special_tokens"], reader=data["reader"],
            passive=data["passive"], passive_seeds=None if seeds is None else tuple(int(s) for s in seeds),
            chat_templates=tuple((r["match"], r["template"]) for r in data.get("chat_templates") or ()),
        )

    # ------------------------------------------------------------------ rules
    def chat_template_for(self, model_path: str) -> str | None:
        """The preset's chat template for a model path (first matching rule), or None (the checkpoint's own)."""
        for pattern, template in self.chat_templates:
            if re.search(pattern, str(model_path)):
                return template
        return None

    def check_model(self, key: str, path: str, own_template: str | None) -> None:
        """A preset with hand-written templates must have one for every model (or the config gives one)."""
        if self.chat_templates and own_template is None and self.chat_template_for(path) is None:
            raise PresetError(
                f"models.{key}: prompt preset {self.name!r} writes its own chat templates but none matches the "
                f"path {path!r} (rules: {', '.join(p for p, _ in self.chat_templates)}); set models.{key}.chat_template "
                "or use prompts.preset: protocol"
            )

    def render_intro(self, task: Any, agent: int) -> str:
        """Agent ``agent``'s intro (the prompt before the dialogue lines)."""
        if self.intro == "authors":
            return render_intro_authors(task, agent, self.templates)
        return render_intro(task, agent, self.templates)

    def prompt(self, intro: str, history: Sequence[tuple[str, str]], speaker_name: str, turn: int) -> str:
        """The speaker's user message at ``turn``: the intro, one line per past turn, the open line.

        The protocol's is :func:`~.prompts.speaker_prompt`. The authors' intro
        ends in its own newline (their LEAVE line), the dialogue lines follow it
        directly, and an utterance may hold a carriage return (their cut splits
        on "\\n" only).
        """
        if self.utterance != "authors":
            return speaker_prompt(intro, history, speaker_name, turn, self.templates)
        if turn != len(history):
            raise ValueError(f"prompt: turn {turn} but {len(history)} past turns")
        lines = []
        for i, (name, utterance) in enumerate(history):
            if "\n" in utterance:
                raise ValueError(f"prompt: the utterance of turn {i} spans several lines: {utterance!r}")
            lines.append(self.dialogue_line(i, name, utterance))
        lines.append(self.templates.open_line.format(turn=turn, name=speaker_name))
        return intro + "\n".join(lines)

    def dialogue_line(self, turn: int, name: str, utterance: str) -> str:
        """One finished turn's line of the dialogue."""
        line = self.templates.turn_line.format(turn=turn, name=name, utterance=utterance)
        return line if self.utterance == "authors" else line.rstrip()

    def clean(self, raw: str) -> str:
        """The utterance of a raw reply."""
        return authors_utterance(raw) if self.utterance == "authors" else clean_utterance(raw)

    def ends_episode(self, turn: int, name: str, utterance: str) -> bool:
        """The LEAVE test of the preset (on the utterance, or on the whole dialogue line)."""
        text = self.dialogue_line(turn, name, utterance) if self.leave_test == "line" else utterance
        return is_leave(text)

    def passive_prompt(self, prompt_text: str, speaker_name: str, reader_name: str) -> str:
        """The passive reader's version of a recorded speaker prompt."""
        if self.passive == "authors":
            return authors_passive_prompt(prompt_text, speaker_name, reader_name, self.templates)
        return passive_prompt(prompt_text, speaker_name, reader_name, self.templates)

    def reader_names(
        self, task_ids: Sequence[int], personas: Sequence[str], personas_in_file_order: Sequence[str],
        reader_seed: int, seed: int,
    ) -> dict[int, str]:
        """The passive reader of every task for simulation seed ``seed``."""
        if self.reader == "random_sample":
            return authors_reader_names(task_ids, personas_in_file_order, seed)
        return draw_reader_names(task_ids, personas, reader_seed)

    def reads_seed(self, seed: int) -> bool:
        """Whether the passive control re-reads the episodes of ``seed``."""
        return self.passive_seeds is None or int(seed) in self.passive_seeds

    def config_section(self) -> dict[str, str]:
        """The canonical ``prompts`` section of this preset: its name and only the template fields that differ.

        Workflow params use it, so ``prompts: {}`` and ``prompts: {preset:
        protocol}``, or an override equal to the preset's own value, are one
        rerun trigger, not three.
        """
        base = PromptPreset.from_config({"preset": self.name}).templates
        diff = {f.name: getattr(self.templates, f.name) for f in fields(PromptTemplates)
                if getattr(self.templates, f.name) != getattr(base, f.name)}
        return {"preset": self.name, **diff}

    def sha256(self) -> str:
        """Short sha256 of the resolved preset (templates and rules); recorded in every shard."""
        data = asdict(self)
        canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]



def check_prompt_config(cfg: Mapping[str, Any]) -> PromptPreset:
    """The config's preset, checked against its models and seeds before any job starts.

    Raises :class:`PresetError` listing every model the preset has no chat
    template for, and the case where the passive condition is configured but
    the preset re-reads none of the configured seeds.
    """
    preset = PromptPreset.from_config(cfg.get("prompts"))
    problems = []
    for key, spec in (cfg.get("models") or {}).items():
        path = f"results/models/{key}" if "build" in spec else str(spec.get("path"))
        try:
            preset.check_model(key, path, spec.get("chat_template"))
        except PresetError as exc:
            problems.append(str(exc))
    seeds = [int(s) for s in cfg.get("seeds") or []]
    if "passive" in (cfg.get("conditions") or []) and not any(preset.reads_seed(s) for s in seeds):
        problems.append(
            f"conditions: 'passive' is configured but prompt preset {preset.name!r} re-reads seeds "
            f"{list(preset.passive_seeds or [])} only and the config runs seeds {seeds}; add one of them or drop 'passive'"
        )
    if problems:
        raise PresetError("config problems:\n  - " + "\n  - ".join(problems))
    return preset
