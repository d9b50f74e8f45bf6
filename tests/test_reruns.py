"""The rerun contract on a real finished run: what must not rerun, what must, and what a user sees.

One reduced smoke run (config/smoke.yaml, tiny random models, cut to one ordered pair,
one seed, six tasks, two conditions) runs for real once per session; every test works on
its own copy (mtimes and Snakemake's metadata kept), so a dry run there answers exactly
as it would in the user's checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_workflow import dry_run, job_blocks, rule_counts  # noqa: E402

PAIR = "tiny-llama__tiny-mistral"


def reduced_config() -> dict:
    """The smoke config, reduced; every run and dry run here passes it with --configfile (which
    replaces the embedded default config/config.yaml, so its models never matter here)."""
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["pairs"] = [["tiny-llama", "tiny-mistral"]]
    cfg["seeds"] = [0]
    cfg["tasks"].update(limit=6, block_size=6)
    cfg["conditions"] = ["experimental", "passive"]
    cfg["r2"]["size"] = 10
    cfg["analysis"]["relationships"]["size"] = 10  # 3 of the 6 tasks are of Figure 5's sources
    return cfg


def write_config(workdir: Path, name: str, cfg: dict, sort_keys: bool = False) -> str:
    path = workdir / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=sort_keys))
    return str(path)


def reordered(value):
    """Every mapping's keys in reverse order, recursively (same meaning, different text)."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def snakemake_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--directory", str(workdir),
           "--snakefile", str(workdir / "Snakefile"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=os.environ | {"PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A real, finished reduced smoke run."""
    work = tmp_path_factory.mktemp("finished")
    for name in ("Snakefile", "workflow", "profiles", "config"):
        (work / name).symlink_to(REPO / name)
    cfg = write_config(work, "reduced.yaml", reduced_config())
    proc = snakemake_run(work, "--configfile", cfg)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (work / "reports/figures" / f"fig2_heatmap_{PAIR}_AtoB.png").stat().st_size > 0
    return work


@pytest.fixture()
def run_copy(finished, tmp_path) -> Path:
    """A private copy of the finished run (symlinks, mtimes and .snakemake metadata kept)."""
    dest = tmp_path / "run"
    shutil.copytree(finished, dest, symlinks=True, copy_function=shutil.copy2)
    return dest


def test_the_finished_run_needs_nothing(run_copy):
    assert dry_run(run_copy, "--configfile", str(run_copy / "reduced.yaml")) == []


def test_reordered_keys_rerun_nothing(run_copy):
    cfg = write_config(run_copy, "reordered.yaml", reordered(reduced_config()))
    assert (run_copy / "reordered.yaml").read_text() != (run_copy / "reduced.yaml").read_text()
    assert dry_run(run_copy, "--configfile", cfg) == []
    sorted_cfg = write_config(run_copy, "sorted.yaml", reduced_config(), sort_keys=True)
    assert dry_run(run_copy, "--configfile", sorted_cfg) == []


def test_spelling_a_default_or_a_float_differently_reruns_nothing(run_copy):
    cfg = reduced_config()
    cfg["generation"]["temperature"] = 0.70
    cfg["r2"]["alpha"] = 0.1
    cfg["r2"]["test_fraction"] = 0.20
    cfg["sync"]["top_k"] = 1.0 if False else 1
    cfg["models"]["tiny-llama"]["build"]["seed"] = 11
    assert dry_run(run_copy, "--configfile", write_config(run_copy, "same.yaml", cfg)) == []


def test_a_changed_device_or_batch_size_reruns_nothing(run_copy):
    cfg = reduced_config()
    for spec in cfg["models"].values():
        spec["device"] = "cpu"
        spec["batch_size"] = 2  # episodes do not depend on their batch
    cfg["r2"]["device"] = "auto"
    assert dry_run(run_copy, "--configfile", write_config(run_copy, "device.yaml", cfg)) == []


def test_a_result_setting_does_rerun(run_copy):
    """The trigger still fires for what changes results: a new temperature reruns the simulations."""
    cfg = reduced_config()
    cfg["generation"]["temperature"] = 0.9
    jobs = dry_run(run_copy, "--configfile", write_config(run_copy, "hot.yaml", cfg))
    counts = rule_counts(jobs)
    assert counts["simulate"] == 1 and counts["read_passive"] == 1
    assert "build_tiny_model" not in counts and "tasks" not in counts
    cfg = reduced_config()
    cfg["r2"]["alpha"] = 1.0
    counts = rule_counts(dry_run(run_copy, "--configfile", write_config(run_copy, "alpha.yaml", cfg)))
    # every ridge table: 2 conditions x 2 directions, and the sensitivity analyses' sizes and persona split
    n_sizes = len([s for s in cfg["analysis"]["sensitivity"]["sizes"] if s != cfg["r2"]["size"]])
    assert counts["r2_table"] == 4 + 2 * n_sizes + 2 and "simulate" not in counts and "read_passive" not in counts


def test_single_condition_study_keeps_the_other_conditions_figures(run_copy):
    before = {p.name: p.stat().st_mtime for p in (run_copy / "reports/figures").iterdir()}
    assert f"fig2_heatmap_{PAIR}_AtoB.png" in before and "fig4a_passive_by_family.png" in before
    proc = snakemake_run(run_copy, "--configfile", str(run_copy / "reduced.yaml"),
                         "--config", 'conditions=["passive"]')
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = {p.name: p.stat().st_mtime for p in (run_copy / "reports/figures").iterdir()}
    assert after == before  # no figure of a passive-only study exists: every other one is untouched
    summary = pd.read_parquet(run_copy / "results/summary/synchrony.parquet")
    assert set(summary.condition) == {"passive"}
    assert (run_copy / "results/summary/synchrony_experimental.parquet").exists()


def test_the_html_report_holds_the_syncr2_table(run_copy):
    out = run_copy / "report.html"
    proc = snakemake_run(run_copy, "--configfile", str(run_copy / "reduced.yaml"), "--report", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text(errors="replace")
    assert "synchrony.html" in text and "fig2_heatmap" in text


def test_deleted_intermediate_is_rebuilt_alone(run_copy):
    """README: `snakemake -c 2 <that file>` rebuilds one deleted file, then `snakemake -c 2` finds nothing to do."""
    target = f"results/r2/{PAIR}/passive/AtoB.parquet"
    original = pd.read_parquet(run_copy / target)
    (run_copy / target).unlink()
    jobs = dry_run(run_copy, target, "--configfile", str(run_copy / "reduced.yaml"))
    assert rule_counts(jobs) == Counter({"r2_table": 1})
    proc = snakemake_run(run_copy, target, "--configfile", str(run_copy / "reduced.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    pd.testing.assert_frame_equal(pd.read_parquet(run_copy / target), original)


def test_unfillable_size_fails_in_the_check_before_any_r2_job(run_copy):
    """A size the turn cap could fill but the episodes cannot: one check job fails, its log is shown.

    The episodes are cut after 4 turns, as if every dialogue had ended at LEAVE
    (whether the tiny models say LEAVE early is up to their sampling).
    """
    path = run_copy / f"results/episodes/{PAIR}/seed0/block0.parquet"
    episodes = pd.read_parquet(path)
    episodes[episodes["turn"] < 4].to_parquet(path)
    cfg = reduced_config()
    cfg["r2"]["size"] = 6 * 7 - 2  # the turn cap (16 turns: 7 BtoA samples per episode) fills it
    cfg["analysis"]["relationships"]["modes"] = ["crossfit"]  # no split of its own to check
    for r2 in (run_copy / "results/r2").rglob("*.parquet"):
        r2.unlink()
    proc = snakemake_run(run_copy, "--configfile", write_config(run_copy, "big.yaml", cfg))
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "check_sizes" in text and "cannot fill r2.size" in text and "lower r2.size to <=" in text
    assert "12 samples in 6 task groups from 6 episodes of 4.0 turns on average" in text  # the log's tail
    assert not list((run_copy / "results/r2").rglob("*.parquet"))
    started = [block for rule, block in job_blocks(text) if rule == "r2_table"]
    # no main R2 table starts; the sensitivity tables need no check (an unfillable size is their answer)
    assert not [b for b in started if "output: results/r2/" in b]
    assert all("output: results/r2_size/" in b or "output: results/r2_persona/" in b for b in started)


def test_judge_reruns_only_for_its_own_settings(run_copy):
    """Device, batch size and retries of the judge rerun nothing; its prompt style reruns the judge jobs only."""
    cfg = reduced_config()
    cfg["judge"]["hf_local"].update(device="cpu", batch_size=4)
    assert dry_run(run_copy, "--configfile", write_config(run_copy, "judge_runtime.yaml", cfg)) == []
    cfg = reduced_config()
    cfg["judge"]["style"] = "sotopia"
    counts = rule_counts(dry_run(run_copy, "--configfile", write_config(run_copy, "judge_style.yaml", cfg)))
    assert counts["judge"] == 1 and "simulate" not in counts and "r2_table" not in counts
    assert counts["performance"] == 1


def test_readme_unlock_command(run_copy):
    """README: `snakemake --unlock` after a killed run."""
    assert "snakemake --unlock" in (REPO / "README.md").read_text()
    proc = snakemake_run(run_copy, "--configfile", str(run_copy / "reduced.yaml"), "--unlock")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert dry_run(run_copy, "--configfile", str(run_copy / "reduced.yaml")) == []
