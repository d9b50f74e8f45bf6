"""The Snakemake workflow's job lists (dry runs): the full DAG, partial reruns, the paper config.

Each test runs `snakemake -n` in a scratch directory holding links to the repository's
Snakefile, workflow/, profiles/ and config/, so nothing here touches the checkout's results.
Finished work is faked by creating each output file with an mtime that increases along
the DAG (upstream older than downstream), which is what Snakemake's up-to-date check reads.

Every dry run here is of the smoke config (config/smoke.yaml, tiny random models), passed
explicitly with `--configfile`, which replaces the embedded default (config/config.yaml):
the job counts below follow from the smoke config's keys, never from the default's models.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_SOTOPIA = REPO.parent / "shared" / "sotopia"

SMOKE_FILE = REPO / "config" / "smoke.yaml"
#: `--configfile` of every dry run of the smoke config; last on a command line, since
#: --configfile takes every following word that is not an option (a target, too).
SMOKE_ARGS = ("--configfile", str(SMOKE_FILE))
DEMO = yaml.safe_load(SMOKE_FILE.read_text())  # the smoke config: four tiny random models, 12 demo tasks
MODELS = list(DEMO["models"])
PAIRS = [f"{a}__{b}" for a in MODELS for b in MODELS]  # pairs: all_ordered
SEEDS = DEMO["seeds"]
BLOCKS = list(range(-(-12 // DEMO["tasks"]["block_size"])))  # 12 demo tasks
CONDITIONS = DEMO["conditions"]
DIRECTIONS = DEMO["directions"]
TOM = DEMO["tom"]  # the ToM condition's pairs and seeds (Figure 11)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    for name in ("Snakefile", "workflow", "profiles", "config"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def snakemake_n(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """`snakemake -n` on the scratch directory, output captured."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(workdir),
           "--snakefile", str(workdir / "Snakefile"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir,
                          env=os.environ | {"PYTHONWARNINGS": "ignore"})


def job_blocks(text: str):
    """(rule, job block text) of every job in a dry run's listing."""
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", text):
        head = re.match(r"(?:local)?rule (\w+):\n", block.lstrip("\n"))
        if head:
            yield head.group(1), block


def dry_run(workdir: Path, *args: str) -> list[tuple[str, list[str]]]:
    """The jobs `snakemake -n` would run, as (rule, outputs), parsed from its job listing."""
    proc = snakemake_n(workdir, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs: list[tuple[str, list[str]]] = []
    for rule, block in job_blocks(proc.stdout + proc.stderr):
        out = re.search(r"^\s+output: (.*)$", block, re.M)
        jobs.append((rule, out.group(1).split(", ") if out else []))
    return jobs


def dry_run_fails(workdir: Path, *args: str) -> str:
    proc = snakemake_n(workdir, *args)
    assert proc.returncode != 0, "the dry run was expected to fail"
    return proc.stdout + proc.stderr


def figure_outputs(conditions=CONDITIONS) -> list[str]:
    from syncr2.report.figure_plan import planned_figures

    stems = planned_figures(PAIRS, conditions, DIRECTIONS)
    return [f"reports/figures/{s}.{ext}" for s in stems for ext in ("png", "pdf")] + [
        f"reports/tables/synchrony.{ext}" for ext in ("html", "csv", "md")]


def genuine_outputs() -> list[str]:
    files = ["results/tasks.parquet", "results/judge/model/config.json"]
    files += [f"results/models/{m}/config.json" for m in MODELS]
    for pair in PAIRS:
        for seed in SEEDS:
            for block in BLOCKS:
                files.append(f"results/episodes/{pair}/seed{seed}/block{block}.parquet")
                files += [f"results/reps/{pair}/seed{seed}/genuine/block{block}_agent{a}.parquet" for a in (1, 2)]
    for pair in tom_pairs():
        for seed in TOM["seeds"]:
            for block in BLOCKS:
                files.append(f"results/tom/episodes/{pair}/seed{seed}/block{block}.parquet")
                files += [f"results/tom/reps/{pair}/seed{seed}/block{block}_agent{a}.parquet" for a in (1, 2)]
    return files


def tom_pairs() -> list[str]:
    return [f"{a}__{b}" for a, b in TOM["pairs"]]


def tom_outputs() -> tuple[list[str], list[str]]:
    """(decoding tables, Figure 11's summary, figures and tables) of the ToM condition."""
    tables = [f"results/tom/decoding/{p}{s}.parquet" for p in tom_pairs() for s in ("", "_tasks")]
    finals = ["results/summary/tom.parquet", "reports/tables/table_tom.csv", "reports/tables/table_tom.md",
              "reports/tables/table_tom.html"]
    finals += [f"reports/figures/{f}.{e}" for f in ("fig11_tom", "fig11_tom_layers") for e in ("png", "pdf")]
    return tables, finals


def social_outputs() -> list[str]:
    return [f"reports/figures/{f}.{e}" for f in ("fig5_relationships", "fig6_correlation") for e in ("png", "pdf")] + [
        f"reports/tables/{t}.{e}" for t in ("table1_partial_correlation", "performance", "correlation")
        for e in ("csv", "md")] + ["reports/tables/social.html"]


def downstream_outputs() -> list[list[str]]:
    """Everything after the simulations, in DAG order (one list per rank)."""
    runs = [(p, s, b) for p in PAIRS for s in SEEDS for b in BLOCKS]
    passive = [f"results/reps/{p}/seed{s}/passive/block{b}_agent{a}.parquet" for p, s, b in runs for a in (1, 2)]
    evals = [f"results/eval/{p}/seed{s}/block{b}.parquet" for p, s, b in runs]
    r2 = [f"results/r2/{p}/{c}/{d}.parquet" for p in PAIRS for c in CONDITIONS for d in DIRECTIONS]
    relationships = [f"results/relationships/{p}.parquet" for p in PAIRS]
    per_condition = [f"results/summary/synchrony_{c}.parquet" for c in CONDITIONS]
    analysis = [f"results/summary/{n}.parquet" for n in ("pair_scores", "correlation", "partial_correlation")]
    checks = [f"results/checks/sample_sizes_{c}.parquet" for c in CONDITIONS + ["relationships"]]
    tables, parts, finals = robustness_outputs()
    tom_tables, tom_finals = tom_outputs()
    return [passive + evals + checks + tom_tables,
            r2 + relationships + tables + ["results/summary/performance.parquet"] + tom_finals,
            per_condition + ["results/summary/relationships.parquet"],
            ["results/summary/synchrony.parquet"] + parts, figure_outputs() + analysis + finals, social_outputs()]


ROBUST = DEMO["analysis"]
SIZES = [s for s in ROBUST["sensitivity"]["sizes"] if s != DEMO["r2"]["size"]]  # r2.size: the main tables


def robustness_outputs() -> tuple[list[str], list[str], list[str]]:
    """(R2 and draws tables, per-analysis tables, summaries and reports) of the demo's robustness analyses."""
    from syncr2.report.figure_plan import planned_sensitivity

    exp = [(p, d) for p in PAIRS for d in DIRECTIONS]
    tables = [f"results/r2_size/{s}/{p}/experimental/{d}.parquet" for s in SIZES for p, d in exp]
    tables += [f"results/r2_persona/{p}/experimental/{d}.parquet" for p, d in exp]
    tables += [f"results/r2_mlp/{p}/experimental/{d}.parquet" for p in ROBUST["nonlinear"]["pairs"] for d in DIRECTIONS]
    tables += [f"results/surrogate/{p}/{c}/{d}.parquet" for p in ROBUST["surrogate"]["pairs"]
               for c in ROBUST["surrogate"]["conditions"] for d in DIRECTIONS]
    tables += [f"results/measures/{p}/{c}.parquet" for p in ROBUST["measures"]["pairs"] for c in CONDITIONS]
    tables += [f"results/lag_profile/{p}.parquet" for p in ROBUST["lag_profile"]["pairs"]]
    parts = [f"results/sensitivity/{a}.parquet" for a in ROBUST["sensitivity"]["analyses"]]
    plan = planned_sensitivity(ROBUST["sensitivity"]["analyses"])
    finals = ["results/summary/sensitivity.parquet", "results/summary/nonlinear.parquet",
              "results/summary/surrogate.parquet", "reports/figures/surrogate_null.png",
              "reports/figures/surrogate_null.pdf"]
    finals += ["results/summary/measures.parquet", "results/summary/lag_profile.parquet"]
    finals += [f"reports/figures/{s}.{e}" for s in plan["figures"] + ["measures"] for e in ("png", "pdf")]
    finals += [f"reports/figures/lag_profile_{p}.{e}" for p in ROBUST["lag_profile"]["pairs"] for e in ("png", "pdf")]
    finals += [f"reports/tables/{s}.{e}" for s in plan["tables"] + ["table5_nonlinear"] for e in ("csv", "md")]
    return tables, parts, finals


def fake(workdir: Path, ranks: list[list[str]]) -> None:
    """Create every file with an mtime increasing by rank (directory outputs get a file inside)."""
    t0 = 1_700_000_000
    for rank, files in enumerate(ranks):
        for rel in files:
            path = workdir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            os.utime(path, (t0 + 100 * rank, t0 + 100 * rank))
            for parent in path.parents:  # directory outputs (models, figures) take their own mtime
                if parent == workdir:
                    break
                os.utime(parent, (t0 + 100 * rank, t0 + 100 * rank))


def rule_counts(jobs) -> Counter:
    return Counter(rule for rule, _ in jobs)


def test_smoke_dag_from_scratch(workdir):
    jobs = dry_run(workdir, *SMOKE_ARGS)
    n_runs = len(PAIRS) * len(SEEDS) * len(BLOCKS)
    assert rule_counts(jobs) == Counter({
        "tasks": 1, "build_tiny_model": len(MODELS), "build_judge_model": 1, "simulate": n_runs,
        "read_passive": n_runs, "judge": n_runs, "check_sizes": len(CONDITIONS), "check_relationship_sizes": 1,
        "r2_table": len(PAIRS) * len(DIRECTIONS) * (len(CONDITIONS) + len(SIZES) + 1), "relationships": len(PAIRS),
        "relationships_summary": 1, "performance": 1, "synchrony_condition": len(CONDITIONS), "synchrony": 1,
        "correlate": 1, "figures": 1, "social_figures": 1, "all": 1,
        "mlp_table": len(ROBUST["nonlinear"]["pairs"]) * len(DIRECTIONS), "nonlinear": 1,
        "surrogate_draws": len(ROBUST["surrogate"]["pairs"]) * len(DIRECTIONS), "surrogate": 1,
        "sensitivity_analysis": len(ROBUST["sensitivity"]["analyses"]), "sensitivity": 1,
        "simulate_tom": len(TOM["pairs"]) * len(TOM["seeds"]) * len(BLOCKS), "tom_decode": len(TOM["pairs"]), "tom": 1,
        "measure_grids": len(ROBUST["measures"]["pairs"]) * len(CONDITIONS), "measures": 1,
        "lag_profile": len(ROBUST["lag_profile"]["pairs"]), "lag_profiles": 1,
    })
    r2_outputs = sorted(o for rule, outs in jobs if rule == "r2_table" for o in outs)
    assert r2_outputs == sorted(o for o in downstream_outputs()[1] if re.match(r"results/r2(_size/\d+|_persona)?/", o))


def test_one_sensitivity_analysis_runs_alone_through_its_target(workdir):
    """The sample-size analysis on finished results: its own R2 tables and itself, nothing else."""
    fake(workdir, [genuine_outputs(), *downstream_outputs()])
    for path in [*(workdir / "results" / "r2_size").rglob("*.parquet"), workdir / "results/sensitivity/sample_size.parquet"]:
        path.unlink()  # finished results of a study that had not run the analysis yet
    jobs = dry_run(workdir, "results/sensitivity/sample_size.parquet", *SMOKE_ARGS)
    assert rule_counts(jobs) == Counter({"r2_table": len(SIZES) * len(PAIRS) * len(DIRECTIONS),
                                         "sensitivity_analysis": 1})
    sized = sorted(o for rule, outs in jobs if rule == "r2_table" for o in outs)
    assert sized == sorted(f"results/r2_size/{s}/{p}/experimental/{d}.parquet"
                           for s in SIZES for p in PAIRS for d in DIRECTIONS)


def test_sensitivity_tables_are_the_r2_rule_with_another_size_or_grouping(workdir):
    proc = snakemake_n(workdir, "--printshellcmds", "results/r2_size/40/tiny-llama__tiny-mistral/experimental/AtoB.parquet",
                       "results/r2_persona/tiny-llama__tiny-mistral/experimental/BtoA.parquet", *SMOKE_ARGS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shells = [b for rule, b in job_blocks(proc.stdout) if rule == "r2_table"]
    sized = next(b for b in shells if "r2_size/40" in b)
    persona = next(b for b in shells if "r2_persona" in b)
    sized, persona = step_settings(sized), step_settings(persona)
    assert sized["split"]["size"] == 40 and sized["insufficient_ok"] and sized["groups"] == "task"
    assert persona["split"]["size"] == DEMO["r2"]["size"] and persona["groups"] == "persona"
    assert "--in tasks results/tasks.parquet" in next(b for b in shells if "r2_persona" in b)
    main = snakemake_n(workdir, "--printshellcmds", "results/r2/tiny-llama__tiny-mistral/experimental/AtoB.parquet",
                       *SMOKE_ARGS)
    table = step_settings(next(b for rule, b in job_blocks(main.stdout) if rule == "r2_table"))
    assert not table["insufficient_ok"] and table["groups"] == "task"


def step_settings(block: str) -> dict:
    """The --settings JSON of a job's shell command (the rule's only param)."""
    return json.loads(re.search(r"--settings '(\{.*?\})' --runtime", block).group(1))


def test_complete_results_need_nothing(workdir):
    fake(workdir, [genuine_outputs(), *downstream_outputs()])
    assert dry_run(workdir, *SMOKE_ARGS) == []


def test_forcerun_read_passive_reruns_only_the_passive_condition(workdir):
    fake(workdir, [genuine_outputs(), *downstream_outputs()])
    jobs = dry_run(workdir, "--forcerun", "read_passive", *SMOKE_ARGS)
    counts = rule_counts(jobs)
    assert "simulate" not in counts and "build_tiny_model" not in counts and "tasks" not in counts
    assert counts["read_passive"] == len(PAIRS) * len(SEEDS) * len(BLOCKS)
    r2 = sorted(o for rule, outs in jobs if rule == "r2_table" for o in outs)
    assert r2 == sorted(f"results/r2/{p}/passive/{d}.parquet" for p in PAIRS for d in DIRECTIONS)
    summaries = [o for rule, outs in jobs if rule == "synchrony_condition" for o in outs]
    assert summaries == ["results/summary/synchrony_passive.parquet"]
    assert counts["synchrony"] == 1 and counts["figures"] == 1
    assert "judge" not in counts and "relationships" not in counts  # they read the genuine run only


def test_config_passive_only_never_resimulates(workdir):
    fake(workdir, [genuine_outputs()])  # the genuine simulations exist, nothing else
    jobs = dry_run(workdir, "--config", 'conditions=["passive"]', *SMOKE_ARGS)
    counts = rule_counts(jobs)
    assert "simulate" not in counts and "build_tiny_model" not in counts
    assert counts["read_passive"] == len(PAIRS) * len(SEEDS) * len(BLOCKS)
    r2 = sorted(o for rule, outs in jobs if rule == "r2_table" for o in outs)
    assert r2 == sorted(f"results/r2/{p}/passive/{d}.parquet" for p in PAIRS for d in DIRECTIONS)


def test_new_lag_alone_through_its_summary_target(workdir):
    """A new lag on finished results: its summary target runs only that lag's R2 tables."""
    fake(workdir, [genuine_outputs(), *downstream_outputs()])
    jobs = dry_run(workdir, "results/summary/synchrony_lag3.parquet",
                   "--config", 'conditions=["experimental","passive","lag1","lag2","lag3"]', *SMOKE_ARGS)
    counts = rule_counts(jobs)
    assert counts == Counter({"check_sizes": 1, "r2_table": len(PAIRS) * len(DIRECTIONS), "synchrony_condition": 1})
    assert [o for rule, outs in jobs if rule == "check_sizes" for o in outs] == [
        "results/checks/sample_sizes_lag3.parquet"]
    r2 = sorted(o for rule, outs in jobs if rule == "r2_table" for o in outs)
    assert r2 == sorted(f"results/r2/{p}/lag3/{d}.parquet" for p in PAIRS for d in DIRECTIONS)


PROFILE_SIZES = yaml.safe_load((REPO / "workflow/profiles/default/config.yaml").read_text())["set-resources"]


def test_gpu_rules_request_a_gpu_on_the_gpu_partition(workdir):
    proc = snakemake_n(workdir, "--printshellcmds", "--verbose", *SMOKE_ARGS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = set()
    for rule, block in job_blocks(proc.stdout + proc.stderr):
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if not res or rule == "all":
            continue
        resources = res.group(1)
        seen.add(rule)
        if rule in ("simulate", "read_passive", "simulate_tom", "judge"):  # the demo judge is local: a GPU job
            assert "gpu=1" in resources and "slurm_partition=gpu" in resources, (rule, resources)
            size = PROFILE_SIZES[rule]  # workflow/profiles/default
            assert f"mem_mb={size['mem_mb']}" in resources and f"runtime={size['runtime']}" in resources
        else:
            assert not re.search(r"\bgpu=", resources) and "slurm_partition=cpu" in resources, (rule, resources)
    assert {"simulate", "read_passive", "simulate_tom", "judge", "r2_table", "figures", "correlate", "tom"} <= seen


def test_bad_config_fails_before_any_job(workdir):
    out = dry_run_fails(workdir, "--config", "pairs=[[tiny-llama, tiny-gpt]]", *SMOKE_ARGS)
    assert "model key 'tiny-gpt' is not defined" in out
    out = dry_run_fails(workdir, "--config", 'tom={"pairs": [["tiny-llama", "tiny-gpt"]]}', *SMOKE_ARGS)
    assert "tom.pairs: model key 'tiny-gpt' is not defined" in out
    out = dry_run_fails(workdir, "--config", 'tom={"mode": "guided"}', *SMOKE_ARGS)
    assert "guided" in out and "constrained" in out
    out = dry_run_fails(workdir, "--config", 'conditions=["lag9"]', *SMOKE_ARGS)
    assert "lag9" in out and "max_turns" in out
    cfg = yaml.safe_load(SMOKE_FILE.read_text())
    cfg["r2"]["size"] = 100000
    (workdir / "big.yaml").write_text(yaml.safe_dump(cfg))
    out = dry_run_fails(workdir, "--configfile", str(workdir / "big.yaml"))
    assert "r2.size is 100000" in out and "lower r2.size" in out
    out = dry_run_fails(workdir, "--config", 'analysis={"surrogate": {"pairs": ["tiny-llama__tiny-gpt"], '
                        '"modes": ["pseudo_seed"]}}', *SMOKE_ARGS)
    assert "tiny-llama__tiny-gpt is not an ordered pair m1__m2 of the models defined" in out
    assert "pseudo_seed" in out and "add seeds" in out


@pytest.mark.skipif(not (SHARED_SOTOPIA / "envs.json").exists(), reason="needs ../shared/sotopia")
def test_paper_config_lists_the_full_job_set(workdir):
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    cfg["tasks"]["path"] = str(SHARED_SOTOPIA)
    cfg["judge"]["openai_http"]["base_url"] = "http://judge-node:8000/v1"
    (workdir / "paper.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake_n(workdir, "--configfile", str(workdir / "paper.yaml"), "--workflow-profile",
                       str(REPO / "workflow" / "profiles" / "paper"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [(rule, block) for rule, block in job_blocks(proc.stdout + proc.stderr)]
    n_runs = 36 * 5 * 9  # ordered pairs x seeds x blocks of 50 of the 450 tasks
    n_passive = 36 * 3 * 9  # the authors' preset re-reads seeds 0-2 only
    assert Counter(rule for rule, _ in jobs) == Counter({
        "tasks": 1, "simulate": n_runs, "read_passive": n_passive, "judge": n_runs, "check_sizes": 4,
        "check_relationship_sizes": 1,
        # main tables, 7 more sizes (6500 is r2.size) and the persona-disjoint split
        "r2_table": 36 * 4 * 2 + 36 * 7 * 2 + 36 * 2, "relationships": 36, "relationships_summary": 1,
        "performance": 1, "synchrony_condition": 4, "synchrony": 1, "correlate": 1, "figures": 1,
        "social_figures": 1, "all": 1, "sensitivity_analysis": 4, "sensitivity": 1, "mlp_table": 3 * 2,
        "nonlinear": 1, "surrogate_draws": 36 * 2, "surrogate": 1,
        # Figure 11: M3 and L3, each with itself, seeds 0-2, the same blocks
        "simulate_tom": 2 * 3 * 9, "tom_decode": 2, "tom": 1,
        # beyond the paper: the similarity measures and the lag profile of every pair
        "measure_grids": 36 * 4, "measures": 1, "lag_profile": 36, "lag_profiles": 1,
    })
    tom = next(block for rule, block in jobs if rule == "simulate_tom")
    assert "gpu=1" in tom and "slurm_partition=gpu" in tom
    judge = next(block for rule, block in jobs if rule == "judge")
    assert "slurm_partition=cpu" in judge and "gpu=1" not in judge  # an HTTP judge waits on a server: a CPU job
    mlp = next(block for rule, block in jobs if rule == "mlp_table")
    assert "gpu=1" in mlp and "slurm_partition=gpu" in mlp  # analysis.nonlinear.device cuda: a GPU job


# --- The README's commands, run as written (with -n and the smoke config's --configfile added) ----

README = (REPO / "README.md").read_text()
README_LAG2 = "snakemake -c 2 results/summary/synchrony_lag2.parquet --forcerun r2_table"
README_PASSIVE_ONLY = "snakemake -c 2 --config conditions='[\"passive\"]'"
README_LAG3 = ("snakemake -c 2 results/summary/synchrony_lag3.parquet "
               "--config conditions='[\"experimental\",\"passive\",\"lag1\",\"lag2\",\"lag3\"]'")


def readme_args(command: str) -> list[str]:
    """The arguments of a README command line after `snakemake -c 2`; the line must be in the README."""
    import shlex

    assert command in README, f"the README no longer shows: {command}"
    words = shlex.split(command)
    assert words[:3] == ["snakemake", "-c", "2"]
    return words[3:]


def test_readme_lag2_command_reruns_only_lag2_tables(workdir):
    fake(workdir, [genuine_outputs(), *downstream_outputs()])
    jobs = dry_run(workdir, *readme_args(README_LAG2), *SMOKE_ARGS)
    assert rule_counts(jobs) == Counter({"r2_table": len(PAIRS) * len(DIRECTIONS), "synchrony_condition": 1})
    r2 = sorted(o for rule, outs in jobs if rule == "r2_table" for o in outs)
    assert r2 == sorted(f"results/r2/{p}/lag2/{d}.parquet" for p in PAIRS for d in DIRECTIONS)


def test_readme_new_lag_command(workdir):
    fake(workdir, [genuine_outputs(), *downstream_outputs()])
    jobs = dry_run(workdir, *readme_args(README_LAG3), *SMOKE_ARGS)
    assert rule_counts(jobs) == Counter({"check_sizes": 1, "r2_table": len(PAIRS) * len(DIRECTIONS),
                                         "synchrony_condition": 1})


def test_readme_single_condition_command_declares_no_figure_of_other_conditions(workdir):
    """The figures job of a passive-only study may only remove files it declares: none of the others'."""
    fake(workdir, [genuine_outputs()])
    jobs = dry_run(workdir, *readme_args(README_PASSIVE_ONLY), *SMOKE_ARGS)
    figure_jobs = [outs for rule, outs in jobs if rule == "figures"]
    assert len(figure_jobs) == 1
    assert sorted(figure_jobs[0]) == sorted(f"reports/tables/synchrony.{e}" for e in ("html", "csv", "md"))
    assert "simulate" not in rule_counts(jobs)


def test_nested_config_numbers_are_accepted(workdir):
    jobs = dry_run(workdir, "--config", "seeds=[0]", 'r2={"size": 30}', *SMOKE_ARGS)
    counts = rule_counts(jobs)
    assert counts["simulate"] == len(PAIRS) * 1 * len(BLOCKS)
    proc = snakemake_n(workdir, "--config", "seeds=[0]", 'r2={"size": 30}', "--printshellcmds", *SMOKE_ARGS)
    main = [b for rule, b in job_blocks(proc.stdout) if rule == "r2_table" and "output: results/r2/" in b]
    assert main and all(step_settings(b)["split"] == {"size": 30, "split_seeds": [0, 1, 2], "test_fraction": 0.2}
                        for b in main)
    out = dry_run_fails(workdir, "--config", "seeds=[zero]", *SMOKE_ARGS)
    assert "seeds" in out and "'zero' is not of type 'integer'" in out


@pytest.mark.skipif(not (SHARED_SOTOPIA / "envs.json").exists(), reason="needs ../shared/sotopia")
def test_paper_config_requires_the_users_sotopia_directory(workdir):
    assert "shared" not in (REPO / "config" / "paper.yaml").read_text()
    out = dry_run_fails(workdir, "--configfile", str(REPO / "config" / "paper.yaml"))
    assert "tasks.path is not set" in out and "/data/sotopia" in out
    out = dry_run_fails(workdir, "--configfile", str(REPO / "config" / "paper.yaml"),
                        "--config", 'tasks={"source": "sotopia_exports", "path": "no/such/dir"}')
    assert "no/such/dir" in out and "env_agent_combos.json" in out
    out = dry_run_fails(workdir, "--configfile", str(REPO / "config" / "paper.yaml"),
                        "--config", f'tasks={{"source": "sotopia_exports", "path": "{SHARED_SOTOPIA}"}}')
    assert "judge.openai_http.base_url is not set" in out
    jobs = dry_run(workdir, "--configfile", str(REPO / "config" / "paper.yaml"),
                   "--config", f'tasks={{"source": "sotopia_exports", "path": "{SHARED_SOTOPIA}"}}',
                   'judge={"openai_http": {"base_url": "http://judge-node:8000/v1"}}')
    assert rule_counts(jobs)["simulate"] == 36 * 5 * 9 and rule_counts(jobs)["judge"] == 36 * 5 * 9


def test_snakemake_ends_without_the_litellm_warning(workdir):
    proc = snakemake_n(workdir, *SMOKE_ARGS)
    assert proc.returncode == 0
    assert "never awaited" not in proc.stderr + proc.stdout


def test_profiles_show_failed_logs():
    for path in (REPO / "workflow/profiles/default/config.yaml", REPO / "workflow/profiles/paper/config.yaml",
                 REPO / "slurm/config.yaml"):
        assert yaml.safe_load(path.read_text()).get("show-failed-logs") is True, path


def test_lint_and_snakefmt_are_clean():
    lint = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0 and "Lints for" not in lint.stdout + lint.stderr, lint.stdout[-3000:]
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr[-3000:]


def test_comments_cite_only_files_in_the_repository():
    texts = [REPO / "Snakefile", *sorted((REPO / "workflow").rglob("*.smk")), *sorted((REPO / "config").glob("*.yaml")),
             *sorted((REPO / "workflow" / "profiles").rglob("*.yaml")), *sorted((REPO / "workflow" / "report").glob("*"))]
    for path in texts:
        text = path.read_text()
        comments = text if path.suffix == ".rst" else "\n".join(
            line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
        for name in re.findall(r"\b([\w./-]+\.(?:md|txt|yaml|smk|rst|py))\b", comments):
            if name.startswith(("syncr2.", "http")) or "/" not in name and not name.isupper():
                continue
            assert any((base / name).exists() for base in (REPO, path.parent, path.parent.parent)), f"{path} cites {name}"
        assert "PROTOCOL" not in path.read_text() and "ANALYSES" not in path.read_text(), path
