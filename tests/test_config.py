"""Config checks: schema, undefined models, lags vs the turn cap, sample sizes."""

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from syncr2.core.config import (
    ConfigError,
    check_config,
    ordered_pairs,
    samples_per_episode,
)
from syncr2.synchrony.datasets import pair_turns

REPO = Path(__file__).resolve().parents[1]


def smoke_config():
    """The smoke config (config/smoke.yaml): four tiny random models, the 12 demo tasks."""
    return yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())


def test_smoke_and_paper_configs_pass_schema_and_checks():
    from snakemake.utils import validate

    for name, n_tasks in (("smoke.yaml", 12), ("paper.yaml", 450)):
        cfg = yaml.safe_load((REPO / "config" / name).read_text())
        validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
        if name == "paper.yaml":  # the user's server (test_paper_judge_needs_the_users_server)
            cfg["judge"]["openai_http"]["base_url"] = "http://127.0.0.1:8000/v1"
        check_config(cfg, n_tasks)
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert len(ordered_pairs(paper)) == 36


def test_embedded_default_config_loads_and_passes_the_schema():
    """config/config.yaml, the Snakefile's embedded default: whatever its models, it is a valid config."""
    from snakemake.utils import validate

    from syncr2.simulation.tasks import count_selected_tasks

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert isinstance(cfg, dict) and cfg.get("models")
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    tasks = cfg["tasks"]
    if tasks["source"] == "demo":  # its task count, as the workflow counts it (other sources need data)
        n_tasks = count_selected_tasks(tasks["source"], tasks.get("path"), tasks.get("ids"), tasks.get("limit"))
        check_config(cfg, n_tasks)


def test_schema_rejects_unknown_keys_and_bad_conditions():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
    cfg = smoke_config()
    cfg["r2"]["sise"] = 5
    with pytest.raises(WorkflowError, match="sise"):
        validate(cfg, schema)
    cfg = smoke_config()
    cfg["conditions"] = ["experimental", "lag0"]
    with pytest.raises(WorkflowError, match="lag0"):
        validate(cfg, schema)


def test_undefined_model_key():
    cfg = smoke_config()
    cfg["pairs"] = [["tiny-llama", "tiny-gpt"]]
    with pytest.raises(ConfigError, match="model key 'tiny-gpt' is not defined under 'models'"):
        check_config(cfg, 12)


def test_lag_too_long_for_turn_cap():
    cfg = smoke_config()
    cfg["generation"]["max_turns"] = 6
    with pytest.raises(ConfigError, match="lag2 with direction BtoA needs episodes of at least 7 turns") as err:
        check_config(cfg, 12)
    assert "lag2 with direction AtoB" not in str(err.value)  # 6 turns give one AtoB lag-2 pair


def test_lag_profile_too_long_for_the_size_names_the_key():
    cfg = smoke_config()  # 16 turns, r2.size 20, 12 tasks x 1 seed
    cfg["analysis"]["lag_profile"]["max_lag"] = 7
    with pytest.raises(ConfigError, match=r"analysis.lag_profile.max_lag is 7 but lag -7 AtoB can give at most 12 "
                                          r"samples of the r2.size 20"):
        check_config(cfg, 12)
    cfg["analysis"]["lag_profile"]["max_lag"] = 6  # lag +6 B->A: only turn 1 has a target (turn 14)
    with pytest.raises(ConfigError, match=r"lag \+6 BtoA can give at most 12 samples") as err:
        check_config(cfg, 12)
    assert "lag -6" not in str(err.value)  # -6 A->B gives 2 per episode and B->A 3: both fill 20
    cfg["analysis"]["lag_profile"]["max_lag"] = 5
    check_config(cfg, 12)


def test_sample_size_too_large_says_what_fits():
    cfg = smoke_config()
    cfg["seeds"] = [0, 1]
    cfg["r2"]["size"] = 500
    with pytest.raises(ConfigError, match=r"r2.size is 500 but lag2 BtoA can give at most 120 samples \(12 tasks x 2 seeds x 5"):
        check_config(cfg, 12)
    bad = copy.deepcopy(cfg)
    bad["r2"]["size"] = 100
    check_config(bad, 12)


@pytest.mark.parametrize("max_turns", [2, 3, 5, 8, 16])
@pytest.mark.parametrize("lag", [-3, -2, -1, 0, 1, 2])  # negative: the lag profile's partner's earlier turns
@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_samples_per_episode_counts_the_real_pairs(max_turns, lag, direction):
    turns = pd.DataFrame({"task_id": 0, "seed": 0, "turn": range(max_turns)})
    turns["speaker"] = turns.turn % 2 + 1
    assert samples_per_episode(max_turns, direction, lag) == len(pair_turns(turns, turns, direction, lag))


def test_cli_is_a_table_of_steps_with_named_files():
    """Every subcommand comes from STEPS, documents its files, and takes the same four options."""
    import argparse

    from syncr2.cli import STEPS, build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == set(STEPS)
    for name, sub in subs.choices.items():
        text = " ".join(sub.format_help().split())
        assert STEPS[name].help.split()[0] in text
        for file in (*STEPS[name].inputs, *STEPS[name].outputs):
            assert file in text, (name, file)
        options = {o for a in sub._actions for o in a.option_strings if not isinstance(a, argparse._HelpAction)}
        assert options == {"--settings", "--runtime", "--in", "--out", "--no-progress"}, (name, options)
        assert all(a.help for a in sub._actions), name


def test_cli_names_a_missing_or_unknown_file(tmp_path, caplog):
    from syncr2.cli import main

    assert main(["sync", "--settings", '{"sync": {"top_k": 1, "clip": true}}', "--in", "tables", "x.parquet"]) == 2
    assert "sync: --out summary needs exactly one path" in caplog.text
    assert main(["sync", "--in", "table", "x.parquet"]) == 2
    assert "sync: --in table is not one of its files (tables)" in caplog.text


def test_canonical_json_is_one_text_per_meaning():
    from syncr2.core.config import canonical_json

    assert canonical_json({"b": 1.0, "a": [0.70, {"z": 1, "y": 2}]}) == '{"a":[0.7,{"y":2,"z":1}],"b":1}'
    assert canonical_json({"x": 1}) == canonical_json({"x": 1.0})
    assert canonical_json({"x": 0.1}) != canonical_json({"x": 0.2})
    assert canonical_json({"t": True}) == '{"t":true}'


def test_cli_strings_are_typed_by_the_schema():
    from syncr2.core.config import coerce_cli_strings

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    cfg = {"seeds": ["0", "2"], "r2": {"size": "30", "alpha": "0.5", "device": "cpu"},
           "tasks": {"source": "demo", "ids": ["1"], "limit": "null", "path": "123"},
           "generation": {"stop_at_newline": "true"}, "pairs": [["1", "2"]],
           "models": {"m": {"build": {"n_layers": "4"}, "batch_size": "3", "device": "0"}}}
    out = coerce_cli_strings(cfg, schema)
    assert out["seeds"] == [0, 2] and out["r2"] == {"size": 30, "alpha": 0.5, "device": "cpu"}
    assert out["tasks"] == {"source": "demo", "ids": [1], "limit": None, "path": "123"}
    assert out["generation"]["stop_at_newline"] is True
    assert out["pairs"] == [["1", "2"]]  # model keys stay strings
    assert out["models"]["m"] == {"build": {"n_layers": 4}, "batch_size": 3, "device": "0"}
    assert coerce_cli_strings({"seeds": ["zero"]}, schema) == {"seeds": ["zero"]}  # left for the validator


def test_demo_ability_scores_are_the_models_true_parameter_counts(tmp_path):
    """The smoke config's Table 1 control is each tiny model's parameter count in millions, not a made-up number."""
    from transformers import AutoModelForCausalLM

    from syncr2.simulation.tiny_models import build_from_spec

    cfg = smoke_config()
    for key, spec in cfg["models"].items():
        model = AutoModelForCausalLM.from_pretrained(build_from_spec(spec["build"], tmp_path / key))
        assert cfg["abilities"]["params_m"][key] == sum(p.numel() for p in model.parameters()) / 1e6, key


def test_paper_judge_needs_the_users_server():
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert cfg["judge"]["openai_http"]["base_url"] is None
    with pytest.raises(ConfigError, match=r"judge.openai_http.base_url is not set"):
        check_config(cfg, 450)
    cfg["judge"]["openai_http"]["base_url"] = "http://127.0.0.1:8000/v1"
    check_config(cfg, 450)
    http = cfg["judge"]["openai_http"]
    assert (http["model"], http["temperature"], http["seed"], http["top_p"], http["n"]) == (
        "openai/gpt-oss-120b", 0, 0, 1, 1)
    assert cfg["abilities"]["ifeval"]["L3"] == 0.7408 and cfg["abilities"]["musr"]["L3.2"] == 0.0808


def test_judge_settings_split_results_from_runtime():
    from syncr2.core.config import canonical_json, judge_settings

    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    cfg["judge"]["openai_http"]["base_url"] = "http://a:1/v1"
    result, runtime = judge_settings(cfg)
    assert "base_url" not in result and "timeout_s" not in result and runtime["base_url"] == "http://a:1/v1"
    assert result["model"] == "openai/gpt-oss-120b" and result["style"] == "authors"
    cfg["judge"]["openai_http"].update(base_url="http://b:2/v1", timeout_s=5, max_retries=0)
    assert canonical_json(judge_settings(cfg)[0]) == canonical_json(result)
    smoke = smoke_config()  # its judge: a local one, built from a tiny spec
    result, runtime = judge_settings(smoke, "results/judge/model")
    assert result["path"] == "results/judge/model" and "build" not in result and runtime == {"device": "auto"}
