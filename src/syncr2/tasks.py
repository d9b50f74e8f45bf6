"""Sotopia tasks through the ``sotopia`` package's own models.

A task is one Sotopia ``EnvAgentComboStorage``: an ``EnvironmentProfile``
(scenario, goals, relationship) and two ``AgentProfile``s; agent 1 is the
first of ``agent_ids``. Three sources:

* ``sotopia_exports``: a directory with Sotopia's JSON exports
  ``envs.json`` (pk -> profile), ``agents.json`` (pk -> profile) and
  ``env_agent_combos.json`` (a list whose index is the task id);
* ``sotopia_local``: a Sotopia local-storage directory
  (``SOTOPIA_STORAGE_BACKEND=local``: ``{ModelClass}/{pk}.json``); task ids
  follow the combos sorted by pk;
* ``demo``: our own small task set in Sotopia's export schema, shipped with
  the package for the default config.

Everything is normalized to the task table ``results/tasks.parquet``.
"""

from __future__ import annotations

import json
import os
import types
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import atomic_path

TASK_COLUMNS = (
    "task_id", "env_pk", "codename", "source", "relationship", "relationship_name",
    "agent1_pk", "agent2_pk", "agent1_name", "agent2_name", "agent1_goal", "agent2_goal",
    "scenario", "intro1", "intro2", "judge_intro", "reader_name",
)
EXPORT_FILES = ("envs.json", "agents.json", "env_agent_combos.json")
_REQUIRED = {
    "EnvironmentProfile": ("scenario", "agent_goals", "relationship"),
    "AgentProfile": ("first_name", "last_name"),
    "EnvAgentComboStorage": ("env_id", "agent_ids"),
}


class TaskDataError(ValueError):
    """Sotopia task data is malformed; the message names the file and the id."""


@cache
def sotopia_modules() -> types.SimpleNamespace:
    """Import sotopia offline: the local JSON backend, so nothing talks to Redis."""
    os.environ.setdefault("SOTOPIA_STORAGE_BACKEND", "local")
    from sotopia.database import AgentProfile, EnvAgentComboStorage, EnvironmentProfile, RelationshipType
    from sotopia.envs.parallel import get_bio, render_text_for_agent, render_text_for_environment
    from sotopia.messages import ScriptBackground

    return types.SimpleNamespace(
        AgentProfile=AgentProfile, EnvironmentProfile=EnvironmentProfile,
        EnvAgentComboStorage=EnvAgentComboStorage, RelationshipType=RelationshipType,
        get_bio=get_bio, render_text_for_agent=render_text_for_agent,
        render_text_for_environment=render_text_for_environment, ScriptBackground=ScriptBackground,
    )


@dataclass
class Task:
    """One Sotopia task with its profiles (sotopia pydantic objects)."""

    task_id: int
    env: Any  # sotopia EnvironmentProfile
    agents: tuple[Any, Any]  # sotopia AgentProfile x 2
    personas: tuple[str, ...] = ()  # full names of every persona of the source (passive readers)

    @property
    def env_pk(self) -> str:
        return self.env.pk

    @property
    def scenario(self) -> str:
        return self.env.scenario

    @property
    def relationship(self) -> int:
        return int(self.env.relationship)

    @property
    def agent_profiles(self) -> tuple[Any, Any]:
        return self.agents

    @property
    def agent_pks(self) -> tuple[str, str]:
        return self.agents[0].pk, self.agents[1].pk

    @property
    def agent_names(self) -> tuple[str, str]:
        return tuple(f"{a.first_name} {a.last_name}" for a in self.agents)  # type: ignore[return-value]

    @property
    def agent_goals(self) -> tuple[str, str]:
        goals = list(self.env.agent_goals)
        return goals[0], goals[1]


def _model(kind: str, data: Any, source: str, pk: str) -> Any:
    from pydantic import ValidationError

    if not isinstance(data, dict):
        raise TaskDataError(f"{source}: {kind} {pk}: expected a JSON object, got {type(data).__name__}")
    missing = [f for f in _REQUIRED[kind] if f not in data]
    if missing:
        raise TaskDataError(f"{source}: {kind} {pk}: missing field(s) {', '.join(missing)}")
    cls = getattr(sotopia_modules(), kind)
    try:
        return cls(**{**data, "pk": data.get("pk") or pk})
    except ValidationError as exc:
        raise TaskDataError(f"{source}: {kind} {pk}: {exc}") from exc


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise TaskDataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TaskDataError(f"{path}: invalid JSON ({exc})") from exc


def _assemble(envs: dict[str, Any], agents: dict[str, Any], combos: list[tuple[str, Any]], combos_src: str) -> list[Task]:
    tasks = []
    personas = tuple(sorted(f"{a.first_name} {a.last_name}" for a in agents.values()))
    for task_id, (label, combo) in enumerate(combos):
        if combo.env_id not in envs:
            raise TaskDataError(f"{combos_src}: combo {label}: env_id {combo.env_id} is not in the environments")
        if len(combo.agent_ids) != 2:
            raise TaskDataError(f"{combos_src}: combo {label}: agent_ids must hold 2 ids, got {len(combo.agent_ids)}")
        for aid in combo.agent_ids:
            if aid not in agents:
                raise TaskDataError(f"{combos_src}: combo {label}: agent id {aid} is not in the agent profiles")
        env = envs[combo.env_id]
        if len(env.agent_goals) < 2:
            raise TaskDataError(f"{combos_src}: combo {label}: environment {env.pk} has fewer than 2 agent_goals")
        tasks.append(Task(task_id, env, (agents[combo.agent_ids[0]], agents[combo.agent_ids[1]]), personas))
    return tasks


def load_sotopia_exports(directory: str | os.PathLike[str]) -> list[Task]:
    """Tasks from Sotopia's JSON exports; the combos' list index is the task id."""
    d = Path(directory)
    env_file, agent_file, combo_file = (d / f for f in EXPORT_FILES)
    envs_raw, agents_raw, combos_raw = _read_json(env_file), _read_json(agent_file), _read_json(combo_file)
    for path, raw, want in ((env_file, envs_raw, dict), (agent_file, agents_raw, dict), (combo_file, combos_raw, list)):
        if not isinstance(raw, want):
            raise TaskDataError(f"{path}: expected a JSON {want.__name__}, got {type(raw).__name__}")
    envs = {pk: _model("EnvironmentProfile", v, str(env_file), pk) for pk, v in envs_raw.items()}
    agents = {pk: _model("AgentProfile", v, str(agent_file), pk) for pk, v in agents_raw.items()}
    combos = [
        (str(c.get("pk", i)) if isinstance(c, dict) else str(i), _model("EnvAgentComboStorage", c, str(combo_file), f"#{i}"))
        for i, c in enumerate(combos_raw)
    ]
    return _assemble(envs, agents, combos, str(combo_file))


def load_sotopia_local_storage(directory: str | os.PathLike[str]) -> list[Task]:
    """Tasks from a Sotopia local-storage directory (``{ModelClass}/{pk}.json``), ids by combo pk order."""
    d = Path(directory)

    def read_kind(kind: str) -> dict[str, Any]:
        folder = d / kind
        if not folder.is_dir():
            raise TaskDataError(f"{folder}: directory not found (is {d} a Sotopia local-storage directory?)")
        return {p.stem: _model(kind, _read_json(p), str(p), p.stem) for p in sorted(folder.glob("*.json"))}

    envs, agents = read_kind("EnvironmentProfile"), read_kind("AgentProfile")
    combos = sorted(read_kind("EnvAgentComboStorage").items())
    return _assemble(envs, agents, combos, str(d / "EnvAgentComboStorage"))


def demo_dir() -> Path:
    return Path(str(resources.files("syncr2") / "data" / "demo_sotopia"))


def load_demo_tasks() -> list[Task]:
    """The bundled demo tasks (our own writing, Sotopia's export schema)."""
    return load_sotopia_exports(demo_dir())


def select_tasks(tasks: list[Task], ids: list[int] | None = None, limit: int | None = None) -> list[Task]:
    """Tasks with the given ids (all when None), then the first ``limit`` of them."""
    if ids is not None:
        by_id = {t.task_id: t for t in tasks}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise TaskDataError(f"tasks.ids: unknown task id(s) {unknown[:10]}; ids run 0..{len(tasks) - 1}")
        tasks = [by_id[i] for i in sorted(set(ids))]
    return tasks[:limit] if limit else tasks


def load_tasks(source: str, path: str | None = None, ids: list[int] | None = None, limit: int | None = None) -> list[Task]:
    """Tasks of a configured source, selected by ids and limit."""
    if source == "demo":
        tasks = load_demo_tasks()
    elif source in ("sotopia_exports", "sotopia_local"):
        if not path:
            raise TaskDataError(f"tasks.path is required for tasks.source={source}")
        loader = load_sotopia_exports if source == "sotopia_exports" else load_sotopia_local_storage
        tasks = loader(path)
    else:
        raise TaskDataError(f"tasks.source must be demo, sotopia_exports or sotopia_local, got {source!r}")
    return select_tasks(tasks, ids, limit)


def count_selected_tasks(source: str, path: str | None = None, ids: list[int] | None = None, limit: int | None = None) -> int:
    """How many tasks a config selects (the workflow's block count depends on it)."""
    return len(load_tasks(source, path, ids, limit))


def tasks_frame(tasks: list[Task], templates: Any = None, reader_seed: int = 0, personas: list[str] | None = None) -> pd.DataFrame:
    """The normalized task table, with rendered intros and the passive reader's persona.

    The reader of each task is drawn from ``personas`` (default: every persona
    of the tasks' source) with ``reader_seed``, never one of the task's agents.
    """
    from .prompts import PromptTemplates, draw_reader_names, render_intro, render_judge_intro, strip_tags

    sot = sotopia_modules()
    templates = templates or PromptTemplates()
    if personas is None:
        personas = sorted({name for t in tasks for name in t.personas})
    readers = draw_reader_names(
        [t.task_id for t in tasks], personas, reader_seed, exclude={t.task_id: t.agent_names for t in tasks}
    )
    rows = []
    for t in tasks:
        goals = [strip_tags(sot.render_text_for_agent(f"<root viewer='agent_{i}'>{g}</root>", i)) for i, g in enumerate(t.agent_goals)]
        rows.append({
            "task_id": t.task_id, "env_pk": t.env_pk, "codename": t.env.codename, "source": t.env.source,
            "relationship": t.relationship, "relationship_name": sot.RelationshipType(t.relationship).name,
            "agent1_pk": t.agent_pks[0], "agent2_pk": t.agent_pks[1],
            "agent1_name": t.agent_names[0], "agent2_name": t.agent_names[1],
            "agent1_goal": goals[0], "agent2_goal": goals[1], "scenario": strip_tags(t.scenario),
            "intro1": render_intro(t, 1, templates), "intro2": render_intro(t, 2, templates),
            "judge_intro": render_judge_intro(t), "reader_name": readers[t.task_id],
        })
    return pd.DataFrame(rows, columns=list(TASK_COLUMNS))


def write_tasks(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def read_tasks(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The task table; errors name the file and the missing column."""
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for truncated files
        raise TaskDataError(f"{path}: not a readable task table: {exc}") from exc
    missing = [c for c in TASK_COLUMNS if c not in frame.columns]
    if missing:
        raise TaskDataError(f"{path}: task table lacks column(s) {', '.join(missing)}")
    return frame
