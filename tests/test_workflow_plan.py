"""The workflow's plan (syncr2.workflow_plan) and the step table's folders, against brute-force listings."""

from __future__ import annotations

import itertools
from pathlib import Path

import yaml

from snakemake.utils import validate

from syncr2.cli import STEPS, shell_command
from syncr2.workflow_plan import WorkflowPlan

REPO = Path(__file__).resolve().parents[1]


def load_config(path: Path) -> dict:
    """A shipped config with the schema's defaults filled in, as the Snakefile sees it."""
    cfg = yaml.safe_load(path.read_text())
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return cfg


def _plan(name: str) -> WorkflowPlan:
    return WorkflowPlan.from_config(load_config(REPO / "config" / name))


def test_plan_lists_every_shard_and_table_once():
    plan = _plan("smoke.yaml")
    pair = next(iter(plan.pairs))
    genuine = plan.rep_shards(pair, "genuine")
    want = [f"results/reps/{pair}/seed{s}/genuine/block{b}_agent{a}.parquet"
            for s, b, a in itertools.product(plan.seeds, plan.blocks, (1, 2))]
    assert genuine == want
    assert len(plan.rep_shards(pair, "passive")) == len(plan.passive_seeds) * len(plan.blocks) * 2
    assert plan.condition_shards(pair, "passive", "experimental") == []
    assert plan.condition_shards(pair, "passive", "passive") == plan.rep_shards(pair, "passive")
    tables = plan.r2_tables(conditions=plan.conditions)
    assert len(tables) == len(set(tables)) == len(plan.pairs) * len(plan.conditions) * len(plan.directions)
    assert len(plan.episodes()) == len(plan.pairs) * len(plan.seeds) * len(plan.blocks)
    assert all(e.replace("/eval/", "/episodes/") in plan.episodes() for e in plan.evals())


def test_sensitivity_inputs_name_exactly_the_steps_inputs():
    plan = _plan("smoke.yaml")
    for analysis in plan.config["analysis"]["sensitivity"]["analyses"]:
        assert set(plan.sensitivity_inputs(analysis)) == set(STEPS["sensitivity"].inputs), analysis
    sizes = plan.config["analysis"]["sensitivity"]["sizes"]
    assert len(plan.sensitivity_inputs("sample_size")["tables"]) == len(sizes) * len(plan.r2_tables())


def test_local_judge_and_made_models():
    plan = _plan("config.yaml")  # the default: GGUF models, one of them the judge
    judge = plan.config["judge"]["hf_local"]["model"]
    assert plan.judge_model == f"results/models/{judge}" == plan.study.context["judge_model"]
    assert plan.judge_inputs == [plan.judge_model]
    assert plan.models_made_by("build") == "(?!)"
    smoke = _plan("smoke.yaml")
    assert smoke.judge_model == "results/judge/model"
    assert set(smoke.models_made_by("build").split("|")) == {m.replace("-", r"\-") for m in smoke.config["models"]}


def test_plan_checks_the_config_against_the_data():
    cfg = load_config(REPO / "config" / "smoke.yaml")
    cfg["r2"]["size"] = 10**6
    try:
        WorkflowPlan.from_config(cfg)
    except ValueError as exc:
        assert "r2.size" in str(exc)
    else:
        raise AssertionError("an unfillable r2.size passed")


def test_folders_of_the_layout_fill_the_rules_commands():
    cmd = shell_command("social-figures")
    assert "--in summaries results/summary --out figures reports/figures --out tables reports/tables" in cmd
    assert "--out cache results/judge_cache" in shell_command("judge")
    assert STEPS["judge"].required == ("eval",)  # the cache stays optional outside the workflow
    assert "{output.summary:q}" in shell_command("nonlinear-summary")
    assert "--in genuine {input.genuine:q} --out" in shell_command("r2", inputs=["genuine"])
