"""Tasks: the real Sotopia exports, a Sotopia local-storage directory, the demo set, bad data."""

import collections
import json
import shutil
from pathlib import Path

import pytest

from syncr2.tasks import (
    TaskDataError, load_demo_tasks, load_sotopia_exports, load_sotopia_local_storage, load_tasks, read_tasks,
    sotopia_modules, tasks_frame, write_tasks,
)

SOTOPIA = Path(__file__).resolve().parents[2] / "shared" / "sotopia"


@pytest.fixture(scope="module")
def real():
    return load_sotopia_exports(SOTOPIA)


def test_real_exports(real):
    assert len(real) == 450
    envs = {t.env_pk: t.env for t in real}
    assert len(envs) == 90 and len(real[0].personas) == 40
    assert collections.Counter(e.source for e in envs.values()) == {
        "social_chemistry": 20, "social_iqa": 15, "deal-or-no-deal": 10, "mutual_friends": 10,
        "craigslist_bargains": 10, "persuation_for_good": 10, "normbank": 9, "hand-craft": 6,
    }
    combos = json.loads((SOTOPIA / "env_agent_combos.json").read_text())
    for i in (0, 17, 449):
        assert real[i].task_id == i
        assert real[i].env_pk == combos[i]["env_id"]
        assert real[i].agent_pks == tuple(combos[i]["agent_ids"])  # agent 1 = first of agent_ids
    sot = sotopia_modules()
    assert isinstance(real[0].env, sot.EnvironmentProfile) and isinstance(real[0].agents[0], sot.AgentProfile)


def test_local_storage_equals_exports(real, tmp_path):
    """Write a local-storage directory with Sotopia's own LocalJSONBackend, then load it."""
    from sotopia.database.storage_backend import LocalJSONBackend

    sot = sotopia_modules()
    backend = LocalJSONBackend(str(tmp_path))
    for t in real[:25]:
        backend.save(sot.EnvironmentProfile, t.env_pk, t.env.model_dump())
        for a in t.agents:
            backend.save(sot.AgentProfile, a.pk, a.model_dump())
    combos = json.loads((SOTOPIA / "env_agent_combos.json").read_text())[:25]
    for c in combos:
        backend.save(sot.EnvAgentComboStorage, c["pk"], c)
    local = load_sotopia_local_storage(tmp_path)
    by_pk = sorted(zip((c["pk"] for c in combos), real[:25]))  # local ids follow combo pk order
    assert len(local) == 25
    for loaded, (_, original) in zip(local, by_pk):
        assert loaded.env.model_dump() == original.env.model_dump()
        assert loaded.agent_pks == original.agent_pks
    assert tasks_frame(local[:2]).intro1.tolist() == tasks_frame([by_pk[0][1], by_pk[1][1]]).intro1.tolist()


def test_demo_tasks_cover_the_analyses():
    tasks = load_demo_tasks()
    assert len(tasks) == 12
    assert {"social_iqa", "social_chemistry", "normbank"} <= {t.env.source for t in tasks}
    assert len({t.relationship for t in tasks}) >= 4
    frame = tasks_frame(tasks)
    assert (frame.reader_name != frame.agent1_name).all() and (frame.reader_name != frame.agent2_name).all()


def test_task_table_round_trip_and_selection(tmp_path):
    frame = tasks_frame(load_tasks("demo", ids=[5, 2, 9], limit=2))
    assert frame.task_id.tolist() == [2, 5]
    write_tasks(frame, tmp_path / "t.parquet")
    assert read_tasks(tmp_path / "t.parquet").equals(frame)
    frame.drop(columns=["intro2"]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(TaskDataError, match=r"bad\.parquet: task table lacks column\(s\) intro2"):
        read_tasks(tmp_path / "bad.parquet")
    with pytest.raises(TaskDataError, match=r"unknown task id\(s\) \[99\]"):
        load_tasks("demo", ids=[99])
    with pytest.raises(TaskDataError, match="tasks.path is required"):
        load_tasks("sotopia_exports")


def copy_exports(tmp_path):
    d = tmp_path / "exports"
    shutil.copytree(SOTOPIA, d)
    for f in d.iterdir():
        f.chmod(0o644)
    return d


def edit(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_bad_task_files_name_file_and_id(tmp_path):
    d = copy_exports(tmp_path)
    edit(d / "agents.json", lambda a: a["01H5TNE5PY896ASNX8XGQA6AE0"].pop("first_name"))
    with pytest.raises(TaskDataError, match=r"agents\.json: AgentProfile 01H5TNE5PY896ASNX8XGQA6AE0: missing field\(s\) first_name"):
        load_sotopia_exports(d)

    d = copy_exports(tmp_path / "2")
    edit(d / "env_agent_combos.json", lambda c: c[3]["agent_ids"].__setitem__(1, "NO_SUCH_AGENT"))
    with pytest.raises(TaskDataError, match=r"env_agent_combos\.json: combo .*: agent id NO_SUCH_AGENT is not in the agent profiles"):
        load_sotopia_exports(d)

    d = copy_exports(tmp_path / "3")
    edit(d / "env_agent_combos.json", lambda c: c[0].__setitem__("env_id", "NO_SUCH_ENV"))
    with pytest.raises(TaskDataError, match="env_id NO_SUCH_ENV is not in the environments"):
        load_sotopia_exports(d)

    d = copy_exports(tmp_path / "4")
    edit(d / "envs.json", lambda e: e["01H7VFHP8AN5643B0NR0NP00VE"].__setitem__("relationship", "enemies"))
    with pytest.raises(TaskDataError, match=r"envs\.json: EnvironmentProfile 01H7VFHP8AN5643B0NR0NP00VE: (?s:.*)relationship"):
        load_sotopia_exports(d)

    d = copy_exports(tmp_path / "5")
    (d / "envs.json").write_text('{"broken": ')
    with pytest.raises(TaskDataError, match=r"envs\.json: invalid JSON"):
        load_sotopia_exports(d)
