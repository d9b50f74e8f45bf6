"""Sotopia tasks through the ``sotopia`` package's own pydantic models.

A task is one Sotopia ``EnvAgentComboStorage``: an ``EnvironmentProfile``
(scenario, goals, relationship) and two ``AgentProfile``s; agent 1 is the
first of ``agent_ids``. Three sources:

* Sotopia's JSON exports (:func:`load_sotopia_exports`): ``envs.json``
  (pk -> profile), ``agents.json`` (pk -> profile) and
  ``env_agent_combos.json`` (a list whose index is the task id);
* a Sotopia local-storage directory (:func:`load_sotopia_local_storage`),
  the layout of sotopia's ``LocalJSONBackend``
  (``SOTOPIA_STORAGE_BACKEND=local``): ``{ModelClassName}/{pk}.json``;
* our own small demo set in Sotopia's export schema, shipped with the package
  (:func:`load_demo_tasks`), for the default config.

The profiles are built directly from JSON (``Model(**data)``), never through
Sotopia's database: with sotopia 0.1.5's default Redis backend even
constructing a profile needs a Redis server, so this module sets
``SOTOPIA_STORAGE_BACKEND=local`` before sotopia is imported. Everything is
normalized to the task table ``results/tasks.parquet`` (:func:`tasks_frame`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..core.atomic import read_table, write_table
from .presets import PromptPreset
from .prompts import (
    draw_reader_names,
    render_goal,
    render_judge_intro,
    render_judge_intro_authors,
)
from .sotopia_api import Task, TaskDataError, full_name, sotopia_modules

if TYPE_CHECKING:
    from sotopia.database import AgentProfile, EnvironmentProfile

log = logging.getLogger(__name__)

TASK_COLUMNS = (
    "task_id", "env_pk", "codename", "source", "relationship", "relationship_name",
    "agent1_pk", "agent2_pk", "agent1_name", "agent2_name", "agent1_goal", "agent2_goal",
    "scenario", "intro1", "intro2", "judge_intro", "judge_intro_authors", "reader_name",
)
EXPORT_FILES = ("envs.json", "agents.json", "env_agent_combos.json")
# Fields a task record must have (Sotopia defaults most of them, which would
# silently render e.g. "a 0-year-old" into the prompts).
REQUIRED_FIELDS = {
    "EnvironmentProfile": ("codename", "source", "scenario", "agent_goals", "relationship"),
    "AgentProfile": (
        "first_name", "last_name", "age", "occupation", "gender", "gender_pronoun",
        "public_info", "personality_and_values", "secret",
    ),
    "EnvAgentComboStorage": ("env_id", "agent_ids"),
}


def _read_json(path: Path) -> Any:
    """The parsed JSON of ``path``; a missing or unparsable file is a TaskDataError naming it."""
    if not path.is_file():
        raise TaskDataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TaskDataError(f"{path}: invalid JSON ({exc})") from exc


def _model(kind: str, data: Any, file: Path | str, pk: str) -> Any:
    """A sotopia model of class ``kind`` from one JSON record; errors name the file, the pk and the field."""
    from pydantic import ValidationError

    where = f"{file}: {kind} {pk}"
    if not isinstance(data, dict):
        raise TaskDataError(f"{where}: expected a JSON object, got {type(data).__name__}")
    missing = [f for f in REQUIRED_FIELDS[kind] if f not in data]
    if missing:
        raise TaskDataError(f"{where}: missing field(s) {', '.join(missing)}")
    if kind != "EnvAgentComboStorage" and data.get("pk") not in (None, "", pk):
        raise TaskDataError(f"{where}: its 'pk' field says {data['pk']!r}")
    cls = getattr(sotopia_modules(), kind)
    try:
        # A combo without a pk keeps "" (``pk`` is only a label here); a profile takes its key.
        obj = cls(**{**data, "pk": data.get("pk") or ("" if kind == "EnvAgentComboStorage" else pk)})
    except ValidationError as exc:
        problems = "; ".join(f"field {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise TaskDataError(f"{where}: {problems}") from exc
    if kind == "EnvironmentProfile" and len(obj.agent_goals) != 2:
        raise TaskDataError(f"{where}: field agent_goals must hold 2 goals, got {len(obj.agent_goals)}")
    if kind == "EnvAgentComboStorage" and len(obj.agent_ids) != 2:
        raise TaskDataError(f"{where}: field agent_ids must hold 2 ids, got {len(obj.agent_ids)}")
    return obj


def _assemble(
    envs: Mapping[str, EnvironmentProfile],
    agents: Mapping[str, AgentProfile],
    combos: Sequence[tuple[str, Any]],
    where: Mapping[str, str],
) -> list[Task]:
    """Tasks in the order of ``combos`` ((label, combo) pairs); ``where`` names the files for messages."""
    sot = sotopia_modules()
    personas = tuple(sorted(full_name(a) for a in agents.values()))
    in_file_order = tuple(full_name(a) for a in agents.values())
    tasks = []
    for task_id, (label, combo) in enumerate(combos):
        if combo.env_id not in envs:
            raise TaskDataError(
                f"{where['combos']}: combo {label}: env_id {combo.env_id} is not in {where['envs']}"
            )
        for aid in combo.agent_ids:
            if aid not in agents:
                raise TaskDataError(f"{where['combos']}: combo {label}: agent id {aid} is not in {where['agents']}")
        env = envs[combo.env_id]
        profiles = (agents[combo.agent_ids[0]], agents[combo.agent_ids[1]])
        relationship = sot.RelationshipType(int(env.relationship))
        tasks.append(Task(
            task_id=task_id, combo_pk=str(combo.pk or label), env_pk=str(env.pk), codename=env.codename,
            source=env.source, scenario=env.scenario, relationship=int(relationship),
            relationship_name=relationship.name, agent_pks=(str(profiles[0].pk), str(profiles[1].pk)),
            agent_names=(full_name(profiles[0]), full_name(profiles[1])),
            agent_goals=(env.agent_goals[0], env.agent_goals[1]), env=env, agents=profiles, personas=personas,
            personas_in_file_order=in_file_order,
        ))
    return tasks


def load_sotopia_exports(directory: str | os.PathLike[str]) -> list[Task]:
    """Tasks from Sotopia's JSON exports in ``directory``; the combos' list index is the task id."""
    d = Path(directory)
    env_file, agent_file, combo_file = (d / name for name in EXPORT_FILES)
    raw = {path: _read_json(path) for path in (env_file, agent_file, combo_file)}
    for path, want in ((env_file, dict), (agent_file, dict), (combo_file, list)):
        if not isinstance(raw[path], want):
            kind = "object (pk -> profile)" if want is dict else "list"
            raise TaskDataError(f"{path}: expected a JSON {kind}, got {type(raw[path]).__name__}")
    envs = {pk: _model("EnvironmentProfile", v, env_file, pk) for pk, v in raw[env_file].items()}
    agents = {pk: _model("AgentProfile", v, agent_file, pk) for pk, v in raw[agent_file].items()}
    combos = []
    for i, c in enumerate(raw[combo_file]):
        label = f"#{i} (pk {c.get('pk')})" if isinstance(c, dict) and c.get("pk") else f"#{i}"
        combos.append((label, _model("EnvAgentComboStorage", c, combo_file, label)))
    return _assemble(envs, agents, combos, {"combos": str(combo_file), "envs": str(env_file), "agents": str(agent_file)})


def load_sotopia_local_storage(
    directory: str | os.PathLike[str], combo_pks: Sequence[str] | None = None
) -> list[Task]:
    """Tasks from a Sotopia local-storage directory (sotopia's ``LocalJSONBackend`` layout).

    The backend keeps one JSON file per record, ``{directory}/{ModelClassName}/{pk}.json``
    (``EnvironmentProfile/``, ``AgentProfile/``, ``EnvAgentComboStorage/``),
    each holding the model's ``model_dump(mode="json")``; sotopia's default
    ``directory`` is ``~/.sotopia/data``. The store has no order, so task ids
    follow the combos sorted by pk, unless ``combo_pks`` gives the combo pks in
    task-id order (then only those combos, in that order: e.g. the pks of an
    ``env_agent_combos.json`` export to reproduce its task ids).
    """
    d = Path(directory)

    def read_kind(kind: str) -> dict[str, Any]:
        folder = d / kind
        if not folder.is_dir():
            raise TaskDataError(f"{folder}: directory not found (is {d} a Sotopia local-storage directory?)")
        return {p.stem: _model(kind, _read_json(p), p, p.stem) for p in sorted(folder.glob("*.json"))}

    envs, agents = read_kind("EnvironmentProfile"), read_kind("AgentProfile")
    stored = read_kind("EnvAgentComboStorage")
    for pk, combo in stored.items():
        if combo.pk and combo.pk != pk:
            raise TaskDataError(f"{d / 'EnvAgentComboStorage' / (pk + '.json')}: its 'pk' field says {combo.pk!r}")
    if combo_pks is None:
        order = sorted(stored)
    else:
        unknown = [pk for pk in combo_pks if pk not in stored]
        if unknown:
            raise TaskDataError(f"{d / 'EnvAgentComboStorage'}: no combo with pk {unknown[0]} ({len(unknown)} missing)")
        order = list(combo_pks)
    combos = [(pk, stored[pk]) for pk in order]
    return _assemble(envs, agents, combos, {
        "combos": str(d / "EnvAgentComboStorage"), "envs": str(d / "EnvironmentProfile"),
        "agents": str(d / "AgentProfile"),
    })


def demo_dir() -> Path:
    """The bundled demo task set (package data, Sotopia's export schema)."""
    return Path(str(resources.files("syncr2") / "data" / "demo_sotopia"))


def load_demo_tasks() -> list[Task]:
    """The demo tasks of the default config: our own scenarios and personas, not Sotopia's."""
    return load_sotopia_exports(demo_dir())


def select_ids(known: Sequence[int], ids: Sequence[int] | None = None, limit: int | None = None) -> list[int]:
    """The task ids ``tasks.ids`` and ``tasks.limit`` select among ``known``: the given ids (all when None) in
    id order, then the first ``limit`` of them. Errors name the key and the ids that exist."""
    known = sorted(int(i) for i in known)
    chosen = known
    if ids is not None:
        unknown = sorted({int(i) for i in ids} - set(known))
        if unknown:
            top = known[-1] if known else -1
            raise TaskDataError(f"tasks.ids: unknown task id(s) {unknown[:10]}; ids run 0..{top}")
        chosen = sorted({int(i) for i in ids})
    if limit is not None:
        if limit < 0:
            raise TaskDataError(f"tasks.limit must be >= 0, got {limit}")
        chosen = chosen[:limit]
    return chosen


def select_tasks(tasks: Sequence[Task], ids: Sequence[int] | None = None, limit: int | None = None) -> list[Task]:
    """The tasks with the given ids (all when None) in id order, then the first ``limit`` of them."""
    by_id = {t.task_id: t for t in tasks}
    return [by_id[i] for i in select_ids(list(by_id), ids, limit)]


def load_tasks(
    source: str, path: str | os.PathLike[str] | None = None, ids: Sequence[int] | None = None,
    limit: int | None = None,
) -> list[Task]:
    """Tasks of a configured source ("demo", "sotopia_exports", "sotopia_local"), selected by ids and limit."""
    if source == "demo":
        tasks = load_demo_tasks()
    elif source in ("sotopia_exports", "sotopia_local"):
        path = _required_path(source, path)
        tasks = load_sotopia_exports(path) if source == "sotopia_exports" else load_sotopia_local_storage(path)
    else:
        raise TaskDataError(f"tasks.source must be demo, sotopia_exports or sotopia_local, got {source!r}")
    return select_tasks(tasks, ids, limit)


def count_selected_tasks(
    source: str, path: str | os.PathLike[str] | None = None, ids: Sequence[int] | None = None,
    limit: int | None = None,
) -> int:
    """How many tasks a config selects (the workflow's block count depends on it).

    Cheap and without importing sotopia: it runs every time Snakemake reads the
    workflow. It counts the combos (the export's list, or the local store's
    files) and applies ``ids`` and ``limit``; the ``tasks`` job then loads and
    validates every record through sotopia's models.
    """
    if source in ("demo", "sotopia_exports"):
        d = demo_dir() if source == "demo" else Path(_required_path(source, path))
        missing = [f for f in EXPORT_FILES if not (d / f).is_file()]
        if missing:
            raise TaskDataError(
                f"{d}: missing {', '.join(missing)}; tasks.path must be a directory holding Sotopia's JSON exports "
                f"({', '.join(EXPORT_FILES)})"
            )
        combos = _read_json(d / "env_agent_combos.json")
        if not isinstance(combos, list):
            raise TaskDataError(f"{d / 'env_agent_combos.json'}: expected a JSON list of combos, got {type(combos).__name__}")
        n = len(combos)
    elif source == "transcripts":
        from .transcripts import count_conversations

        return count_conversations(_required_path(source, path), ids, limit)
    elif source == "sotopia_local":
        folder = Path(_required_path(source, path)) / "EnvAgentComboStorage"
        if not folder.is_dir():
            raise TaskDataError(f"{folder}: directory not found (is {path} a Sotopia local-storage directory?)")
        n = len(list(folder.glob("*.json")))
    else:
        raise TaskDataError(f"tasks.source must be demo, sotopia_exports, sotopia_local or transcripts, "
                            f"got {source!r}")
    return len(select_ids(range(n), ids, limit))


def _required_path(source: str, path: str | os.PathLike[str] | None) -> str | os.PathLike[str]:
    """``path``, or an error saying how to set it."""
    if not path:
        raise TaskDataError(
            f"tasks.path is not set but tasks.source is {source!r}: give the directory of your Sotopia data "
            f"(or your transcript file), "
            f"e.g. --config 'tasks={{\"source\": \"{source}\", \"path\": \"/data/sotopia\"}}', "
            "or set tasks.path in your config file"
        )
    return path


#: ``tasks.parquet`` attrs key: every persona's name in the order of the task source's
#: agent file (the authors' passive-reader draw picks positions in that order).
PERSONAS_ATTR = "personas_in_file_order"


def tasks_frame(
    tasks: Sequence[Task],
    preset: PromptPreset | None = None,
    reader_seed: int = 0,
    personas: Sequence[str] | None = None,
    exclude_participants: bool = False,
) -> pd.DataFrame:
    """The normalized task table (``results/tasks.parquet``), with rendered intros and the passive reader.

    ``agent{1,2}_goal`` are each agent's own goal as it sees it, ``intro{1,2}``
    the full agent-facing intros of the prompt ``preset`` (default: ``protocol``), ``judge_intro``
    the unmasked context with both goals (Sotopia's rendering, tidied), and
    ``judge_intro_authors`` the same context byte for byte as the authors'
    judge saw it (docs/analyses.md, "Prompt styles"). The reader of each task is drawn
    with ``reader_seed`` from ``personas`` (default: every persona of the
    tasks' source, 40 for Sotopia), optionally never one of the task's own
    agents (the authors did not exclude them). The frame's ``attrs`` (kept in
    the Parquet file) hold the personas in agent-file order (``PERSONAS_ATTR``)
    for presets that draw the reader per seed (:meth:`PromptPreset.reader_names`).
    """

    sot = sotopia_modules()
    preset = preset or PromptPreset.from_config(None)
    pool = list(personas) if personas is not None else sorted({n for t in tasks for n in t.personas})
    readers = draw_reader_names(
        [t.task_id for t in tasks], pool, reader_seed,
        exclude={t.task_id: t.agent_names for t in tasks} if exclude_participants else None,
    )
    rows = [{
        "task_id": t.task_id, "env_pk": t.env_pk, "codename": t.codename, "source": t.source,
        "relationship": t.relationship, "relationship_name": t.relationship_name,
        "agent1_pk": t.agent_pks[0], "agent2_pk": t.agent_pks[1],
        "agent1_name": t.agent_names[0], "agent2_name": t.agent_names[1],
        "agent1_goal": render_goal(t, 1), "agent2_goal": render_goal(t, 2),
        "scenario": sot.render_text_for_environment(t.scenario).strip(),
        "intro1": preset.render_intro(t, 1), "intro2": preset.render_intro(t, 2),
        "judge_intro": render_judge_intro(t), "judge_intro_authors": render_judge_intro_authors(t),
        "reader_name": readers[t.task_id],
    } for t in tasks]
    frame = pd.DataFrame(rows, columns=list(TASK_COLUMNS))
    frame = frame.astype({"task_id": "int64", "relationship": "int64"})
    orders = {t.personas_in_file_order for t in tasks}
    frame.attrs[PERSONAS_ATTR] = list(orders.pop()) if len(orders) == 1 else []
    return frame


def write_tasks(tasks_df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the task table as Parquet, atomically (no half-written file under the final name)."""
    return write_table(tasks_df, path, TASK_COLUMNS, "task table", TaskDataError)


def read_tasks(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The task table written by :func:`write_tasks`; errors name the file and the missing column."""
    frame = read_table(path, TASK_COLUMNS, "task table", TaskDataError)
    if frame["task_id"].duplicated().any():
        dup = int(frame.loc[frame["task_id"].duplicated(), "task_id"].iloc[0])
        raise TaskDataError(f"{path}: task id {dup} appears more than once")
    return frame
