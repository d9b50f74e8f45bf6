"""Tasks: the real Sotopia exports, a Sotopia local-storage directory, the demo set, bad data, the task table."""

import collections
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syncr2.simulation.tasks import (
    TASK_COLUMNS,
    Task,
    TaskDataError,
    demo_dir,
    load_demo_tasks,
    load_sotopia_exports,
    load_sotopia_local_storage,
    load_tasks,
    read_tasks,
    select_tasks,
    sotopia_modules,
    tasks_frame,
    write_tasks,
)

SOTOPIA = Path(__file__).resolve().parents[2] / "shared" / "sotopia"
SOURCE_COUNTS = {
    "social_chemistry": 20, "social_iqa": 15, "deal-or-no-deal": 10, "mutual_friends": 10,
    "craigslist_bargains": 10, "persuation_for_good": 10, "normbank": 9, "hand-craft": 6,
}
PLAIN_FIELDS = (
    "task_id", "combo_pk", "env_pk", "codename", "source", "scenario", "relationship", "relationship_name",
    "agent_pks", "agent_names", "agent_goals", "personas",
)


def plain(task: Task) -> dict:
    """A task's comparable content: its plain fields and its sotopia objects' dumps."""
    return {
        **{f: getattr(task, f) for f in PLAIN_FIELDS},
        "env": task.env.model_dump(), "agents": [a.model_dump() for a in task.agents],
    }


@pytest.fixture(scope="module")
def real():
    return load_sotopia_exports(SOTOPIA)


def test_real_exports(real):
    assert len(real) == 450
    envs = {t.env_pk: t for t in real}
    assert len(envs) == 90
    assert len({pk for t in real for pk in t.agent_pks}) == 40 and len(real[0].personas) == 40
    assert collections.Counter(t.source for t in envs.values()) == SOURCE_COUNTS
    assert all(collections.Counter(t.env_pk for t in real)[pk] == 5 for pk in envs)  # 90 envs x 5 agent pairs
    assert {t.relationship_name for t in real} <= {
        "stranger", "know_by_name", "acquaintance", "friend", "romantic_relationship", "family_member",
    }
    combos = json.loads((SOTOPIA / "env_agent_combos.json").read_text())
    agents = json.loads((SOTOPIA / "agents.json").read_text())
    for i in (0, 17, 449):
        t = real[i]
        assert t.task_id == i and t.combo_pk == combos[i]["pk"] and t.env_pk == combos[i]["env_id"]
        assert t.agent_pks == tuple(combos[i]["agent_ids"])  # agent 1 = first of agent_ids
        first = agents[combos[i]["agent_ids"][0]]
        assert t.agent_names[0] == f"{first['first_name']} {first['last_name']}"
    t = real[0]
    assert (t.codename, t.source, t.relationship, t.relationship_name) == ("borrow_money", "hand-craft", 3, "friend")
    assert t.agent_names == ("Leo Williams", "Hendrick Heinz")
    assert t.agent_goals[0] == "Borrow money (<extra_info>Extra information: you need $3000 to support life.</extra_info>)"
    sot = sotopia_modules()
    assert isinstance(t.env, sot.EnvironmentProfile) and all(isinstance(a, sot.AgentProfile) for a in t.agents)
    assert isinstance(t.env.relationship, sot.RelationshipType)


def test_sotopia_is_imported_offline():
    assert os.environ["SOTOPIA_STORAGE_BACKEND"] == "local"
    from sotopia.database.storage_backend import is_local_backend

    assert is_local_backend()
    # an explicit Redis backend is refused with a clear message (its models cannot be built offline)
    env = {**os.environ, "SOTOPIA_STORAGE_BACKEND": "redis"}
    code = "from syncr2.simulation.tasks import load_demo_tasks; load_demo_tasks()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "needs the local backend" in proc.stderr


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    """A local-storage directory written by sotopia's own save path (model.save() -> LocalJSONBackend)."""
    from sotopia.database import storage_backend

    sot = sotopia_modules()
    root = tmp_path_factory.mktemp("sotopia_local")
    saved = storage_backend._storage_backend
    storage_backend._storage_backend = storage_backend.LocalJSONBackend(str(root))
    try:
        for d in json.loads((SOTOPIA / "envs.json").read_text()).values():
            sot.EnvironmentProfile(**d).save()
        for d in json.loads((SOTOPIA / "agents.json").read_text()).values():
            sot.AgentProfile(**d).save()
        for d in json.loads((SOTOPIA / "env_agent_combos.json").read_text()):
            sot.EnvAgentComboStorage(**d).save()
    finally:
        storage_backend._storage_backend = saved
    return root


def test_local_storage_layout(local_store):
    """The backend's layout, as our loader reads it: {root}/{ModelClassName}/{pk}.json."""
    counts = {p.name: len(list(p.glob("*.json"))) for p in local_store.iterdir()}
    assert counts == {"EnvironmentProfile": 90, "AgentProfile": 40, "EnvAgentComboStorage": 450}
    combo = json.loads((local_store / "EnvAgentComboStorage" / "01H7ZNDZF3RQXCTB5ZC78TJE8W.json").read_text())
    assert combo == {
        "pk": "01H7ZNDZF3RQXCTB5ZC78TJE8W", "env_id": "01H7VFHN1PK2FXY7TPWQK343BQ",
        "agent_ids": ["01H5TNE5PFT9HH0WRT6W1NY5GZ", "01H5TNE5PY896ASNX8XGQA6AE0"],
    }


def test_local_storage_equals_exports(local_store, real):
    combos = json.loads((SOTOPIA / "env_agent_combos.json").read_text())
    # by default the task ids follow the combos sorted by pk
    local = load_sotopia_local_storage(local_store)
    assert [t.combo_pk for t in local] == sorted(c["pk"] for c in combos)
    by_pk = {t.combo_pk: t for t in real}
    for t in local:
        assert {**plain(t), "task_id": None} == {**plain(by_pk[t.combo_pk]), "task_id": None}
    # with the export's order given, the same tasks with the same ids
    ordered = load_sotopia_local_storage(local_store, combo_pks=[c["pk"] for c in combos])
    assert [plain(t) for t in ordered] == [plain(t) for t in real]
    assert tasks_frame(ordered).equals(tasks_frame(real))
    assert [t.task_id for t in load_sotopia_local_storage(local_store, combo_pks=[combos[5]["pk"]])] == [0]
    with pytest.raises(TaskDataError, match="EnvAgentComboStorage: no combo with pk NOPE"):
        load_sotopia_local_storage(local_store, combo_pks=["NOPE"])
    assert load_tasks("sotopia_local", str(local_store), limit=3)[2].combo_pk == sorted(c["pk"] for c in combos)[2]


def test_local_storage_bad_records(local_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(local_store, store)
    agent = store / "AgentProfile" / "01H5TNE5PFT9HH0WRT6W1NY5GZ.json"
    agent.write_text("{not json")
    with pytest.raises(TaskDataError, match=r"AgentProfile/01H5TNE5PFT9HH0WRT6W1NY5GZ\.json: invalid JSON"):
        load_sotopia_local_storage(store)
    agent.write_text(json.dumps({**json.loads((local_store / agent.relative_to(store)).read_text()), "pk": "OTHER"}))
    with pytest.raises(TaskDataError, match="AgentProfile 01H5TNE5PFT9HH0WRT6W1NY5GZ: its 'pk' field says 'OTHER'"):
        load_sotopia_local_storage(store)
    agent.unlink()
    with pytest.raises(TaskDataError, match=r"combo .*: agent id 01H5TNE5PFT9HH0WRT6W1NY5GZ is not in .*AgentProfile"):
        load_sotopia_local_storage(store)
    with pytest.raises(TaskDataError, match=r"EnvironmentProfile: directory not found"):
        load_sotopia_local_storage(tmp_path / "empty")


def test_demo_tasks_cover_the_analyses():
    tasks = load_demo_tasks()
    assert len(tasks) == 12 and [t.task_id for t in tasks] == list(range(12))
    envs = {t.env_pk: t for t in tasks}
    assert len(envs) >= 6 and len(tasks[0].personas) >= 8
    sources = {t.source for t in envs.values()}
    assert {"social_iqa", "social_chemistry", "normbank"} <= sources and len(sources) >= 3
    assert len({t.relationship for t in tasks}) >= 4
    frame = tasks_frame(tasks)
    assert frame.intro1.str.len().max() < 1500  # a tiny model reads them
    assert not frame.intro1.str.contains("[<>]").any() and not frame.judge_intro.str.contains("[<>]").any()
    # our own writing: no Sotopia persona, scenario or goal
    real_envs = json.loads((SOTOPIA / "envs.json").read_text()).values()
    real_texts = {e["scenario"] for e in real_envs} | {g for e in real_envs for g in e["agent_goals"]}
    real_names = {f"{a['first_name']} {a['last_name']}" for a in json.loads((SOTOPIA / "agents.json").read_text()).values()}
    assert not real_names & set(tasks[0].personas)
    assert not real_texts & ({t.scenario for t in tasks} | {g for t in tasks for g in t.agent_goals})


def test_demo_files_have_sotopias_export_schema():
    """Same files, same record keys and JSON types as Sotopia's real exports."""
    for name in ("envs.json", "agents.json"):
        real = json.loads((SOTOPIA / name).read_text())
        demo = json.loads((demo_dir() / name).read_text())
        real_keys = {k for record in real.values() for k in record}
        for pk, record in demo.items():
            assert set(record) == real_keys and record["pk"] == pk, (name, pk)
    real_combos = json.loads((SOTOPIA / "env_agent_combos.json").read_text())
    demo_combos = json.loads((demo_dir() / "env_agent_combos.json").read_text())
    assert isinstance(demo_combos, list) and len(demo_combos) == 12
    assert all(set(c) == set(real_combos[0]) for c in demo_combos)


def test_task_table_round_trip_and_selection(tmp_path):
    frame = tasks_frame(load_tasks("demo", ids=[5, 2, 9], limit=2))
    assert list(frame.columns) == list(TASK_COLUMNS) and frame.task_id.tolist() == [2, 5]
    out = write_tasks(frame, tmp_path / "results" / "tasks.parquet")
    assert sorted(p.name for p in out.parent.iterdir()) == ["tasks.parquet"]  # no temporary left behind
    back = read_tasks(out)
    assert back.equals(frame) and str(back.task_id.dtype) == "int64" and str(back.relationship.dtype) == "int64"
    frame.drop(columns=["intro2"]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(TaskDataError, match=r"bad\.parquet: task table lacks column\(s\) intro2"):
        read_tasks(tmp_path / "bad.parquet")
    with pytest.raises(TaskDataError, match=r"missing\.parquet: not a readable task table"):
        read_tasks(tmp_path / "missing.parquet")
    tasks = load_demo_tasks()
    assert [t.task_id for t in select_tasks(tasks, limit=3)] == [0, 1, 2]
    assert select_tasks(tasks, ids=[11, 0, 11]) == [tasks[0], tasks[11]]
    with pytest.raises(TaskDataError, match=r"unknown task id\(s\) \[99\]; ids run 0..11"):
        select_tasks(tasks, ids=[99])
    with pytest.raises(TaskDataError, match="tasks.path is not set"):
        load_tasks("sotopia_exports")
    with pytest.raises(TaskDataError, match="tasks.source must be"):
        load_tasks("sotopia_redis")


def copy_exports(tmp_path: Path) -> Path:
    d = tmp_path / "exports"
    shutil.copytree(SOTOPIA, d)
    for f in d.iterdir():
        f.chmod(0o644)
    return d


def edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


LEO = "01H5TNE5PFT9HH0WRT6W1NY5GZ"
BORROW_MONEY = "01H7VFHN1PK2FXY7TPWQK343BQ"


def test_missing_field(tmp_path):
    d = copy_exports(tmp_path)
    edit(d / "agents.json", lambda a: a[LEO].pop("first_name"))
    with pytest.raises(TaskDataError, match=re.escape(f"{d / 'agents.json'}: AgentProfile {LEO}: missing field(s) first_name")):
        load_sotopia_exports(d)
    d = copy_exports(tmp_path / "2")
    edit(d / "envs.json", lambda e: e[BORROW_MONEY].pop("agent_goals"))
    with pytest.raises(TaskDataError, match=rf"envs\.json: EnvironmentProfile {BORROW_MONEY}: missing field\(s\) agent_goals"):
        load_sotopia_exports(d)
    d = copy_exports(tmp_path / "3")
    edit(d / "env_agent_combos.json", lambda c: c[3].pop("env_id"))
    with pytest.raises(TaskDataError, match=r"env_agent_combos\.json: EnvAgentComboStorage #3 \(pk \w+\): missing field\(s\) env_id"):
        load_sotopia_exports(d)


def test_dangling_agent_id(tmp_path):
    d = copy_exports(tmp_path)
    edit(d / "env_agent_combos.json", lambda c: c[3]["agent_ids"].__setitem__(1, "NO_SUCH_AGENT"))
    with pytest.raises(
        TaskDataError, match=re.escape(str(d / "env_agent_combos.json")) + r": combo #3 \(pk \w+\): agent id NO_SUCH_AGENT is not in .*agents\.json"
    ):
        load_sotopia_exports(d)


def test_dangling_env_id(tmp_path):
    d = copy_exports(tmp_path)
    edit(d / "env_agent_combos.json", lambda c: c[0].__setitem__("env_id", "NO_SUCH_ENV"))
    with pytest.raises(
        TaskDataError,
        match=r"env_agent_combos\.json: combo #0 \(pk 01H7ZNDZF3RQXCTB5ZC78TJE8W\): env_id NO_SUCH_ENV is not in .*envs\.json",
    ):
        load_sotopia_exports(d)


def test_invalid_json(tmp_path):
    d = copy_exports(tmp_path)
    (d / "envs.json").write_text('{"broken": ')
    with pytest.raises(TaskDataError, match=re.escape(f"{d / 'envs.json'}: invalid JSON (Expecting value: line 1")):
        load_sotopia_exports(d)
    (d / "envs.json").write_text("[]")
    with pytest.raises(TaskDataError, match=r"envs\.json: expected a JSON object \(pk -> profile\), got list"):
        load_sotopia_exports(d)
    (d / "envs.json").unlink()
    with pytest.raises(TaskDataError, match=r"envs\.json: file not found"):
        load_sotopia_exports(d)


def test_invalid_values_name_file_id_and_field(tmp_path):
    d = copy_exports(tmp_path)
    edit(d / "envs.json", lambda e: e[BORROW_MONEY].__setitem__("relationship", "enemies"))
    with pytest.raises(TaskDataError, match=rf"envs\.json: EnvironmentProfile {BORROW_MONEY}: field relationship: Input should be"):
        load_sotopia_exports(d)
    d = copy_exports(tmp_path / "2")
    edit(d / "agents.json", lambda a: a[LEO].__setitem__("age", "thirty"))
    with pytest.raises(TaskDataError, match=rf"agents\.json: AgentProfile {LEO}: field age: "):
        load_sotopia_exports(d)
    d = copy_exports(tmp_path / "3")
    edit(d / "envs.json", lambda e: e[BORROW_MONEY]["agent_goals"].pop())
    with pytest.raises(TaskDataError, match=rf"EnvironmentProfile {BORROW_MONEY}: field agent_goals must hold 2 goals, got 1"):
        load_sotopia_exports(d)
    d = copy_exports(tmp_path / "4")
    edit(d / "agents.json", lambda a: a[LEO].__setitem__("pk", "SOMEONE_ELSE"))
    with pytest.raises(TaskDataError, match=rf"AgentProfile {LEO}: its 'pk' field says 'SOMEONE_ELSE'"):
        load_sotopia_exports(d)
