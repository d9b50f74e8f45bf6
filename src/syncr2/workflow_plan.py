"""The workflow's parse-time plan: what a config runs, and the name of every file it makes.

The Snakefile builds one :class:`WorkflowPlan` from the validated config before
any job starts. Building it checks the config against the data (the task count,
the sizes, the prompt preset), so a wrong value fails at once. The rules then
take their file lists from it, so the Snakefile holds no Python beyond names.
The file layout is the data contract of docs/architecture.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .core.config import check_config, n_blocks, ordered_pairs, pair_key, robustness_pairs
from .core.settings import Study
from .report.figure_plan import planned_figures, planned_sensitivity
from .simulation.presets import check_prompt_config
from .simulation.tasks import count_selected_tasks

#: The sensitivity analyses the workflow runs (one results/sensitivity/{analysis}.parquet each).
SENSITIVITY_ANALYSES = ("top_k", "no_clip", "sample_size", "persona_split")


@dataclass
class WorkflowPlan:
    """One config's jobs: pairs, seeds, blocks, conditions, and the files between them."""

    config: Mapping[str, Any]
    study: Study
    synthetic: bool
    n_tasks: int
    seeds: list[int]
    #: the seeds the passive control re-reads (the authors' preset: seeds 0-2 only)
    passive_seeds: list[int]
    pairs: dict[str, tuple[str, str]]
    blocks: list[int]
    conditions: list[str]
    directions: list[str]
    figures: list[str] = field(default_factory=list)
    sensitivity_outputs: dict[str, list[str]] = field(default_factory=dict)
    mlp_pairs: list[str] = field(default_factory=list)
    surrogate_pairs: list[str] = field(default_factory=list)
    surrogate_conditions: list[str] = field(default_factory=list)
    #: the pairs of the similarity measures and of the lag profile ([] when the section asks for none)
    measure_pairs: list[str] = field(default_factory=list)
    lag_pairs: list[str] = field(default_factory=list)
    #: the ToM condition's ordered pairs and simulation seeds (config ``tom``)
    tom_pairs: dict[str, tuple[str, str]] = field(default_factory=dict)
    tom_seeds: list[int] = field(default_factory=list)
    #: a study of recorded conversations (tasks.source transcripts): read, not simulated, and not judged
    transcripts: bool = False
    #: a local judge's checkpoint (None for an HTTP judge), and the made files it needs
    judge_model: str | None = None
    judge_inputs: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WorkflowPlan:
        """Check ``config`` against its data and plan every job (raises ``ValueError`` naming the key)."""
        tasks = config["tasks"]
        synthetic = bool(config.get("synthetic"))
        n_tasks = (int(config["synthetic"]["n_tasks"]) if synthetic
                   else count_selected_tasks(tasks["source"], tasks.get("path"), tasks.get("ids"), tasks.get("limit")))
        seeds = [int(s) for s in config["seeds"]]
        preset = check_prompt_config(config)
        passive_seeds = [s for s in seeds if preset.reads_seed(s)]
        check_config(config, n_tasks, passive_seeds=len(passive_seeds))
        conditions = list(config["conditions"])
        directions = list(config["directions"])
        pairs = {pair_key(a, b): (a, b) for a, b in ordered_pairs(config)}
        analysis = config["analysis"]
        plan = cls(
            config=config,
            study=Study.from_config(config, templates=preset.config_section(), n_tasks=n_tasks),
            synthetic=synthetic,
            n_tasks=n_tasks,
            seeds=seeds,
            passive_seeds=passive_seeds,
            pairs=pairs,
            blocks=list(range(n_blocks(n_tasks, int(tasks.get("block_size", 16))))),
            conditions=conditions,
            directions=directions,
            figures=planned_figures(list(pairs), conditions, directions),
            sensitivity_outputs=planned_sensitivity(analysis["sensitivity"]["analyses"]),
            mlp_pairs=robustness_pairs(config, "nonlinear"),
            surrogate_pairs=robustness_pairs(config, "surrogate"),
            surrogate_conditions=[c for c in analysis["surrogate"]["conditions"] if c in conditions],
            measure_pairs=robustness_pairs(config, "measures") if analysis["measures"]["measures"] else [],
            lag_pairs=robustness_pairs(config, "lag_profile") if analysis["lag_profile"]["max_lag"] else [],
            tom_pairs={pair_key(str(a), str(b)): (str(a), str(b)) for a, b in (config.get("tom") or {}).get("pairs", [])},
            tom_seeds=[int(s) for s in (config.get("tom") or {}).get("seeds", [0])],
            transcripts=tasks["source"] == "transcripts",
        )
        plan.study.context["model_dirs"] = {m: plan.model_dir(m) for m in config["models"]}
        plan.judge_model, plan.judge_inputs = plan._local_judge()
        plan.study.context["judge_model"] = plan.judge_model  # the judge's settings name its checkpoint
        return plan

    # --- models ---------------------------------------------------------------------------

    def made_here(self, model: str) -> bool:
        """Whether the workflow makes the model's checkpoint (built tiny or converted from GGUF)."""
        spec = self.config["models"][model]
        return "build" in spec or "gguf" in spec

    def models_made_by(self, source: str) -> str:
        """A wildcard regex matching exactly the model keys whose entry has ``source`` (build or gguf)."""
        keys = [m for m, spec in self.config["models"].items() if source in spec]
        return "|".join(re.escape(m) for m in keys) or "(?!)"  # (?!) matches nothing

    def model_dir(self, model: str) -> str:
        """Where a model is loaded from: its built or converted directory, or its configured path/hub id."""
        return f"results/models/{model}" if self.made_here(model) else self.config["models"][model]["path"]

    def model_inputs(self, pair: str) -> list[str]:
        """The built or converted model directories a pair needs as inputs (hub models are not files)."""
        return [f"results/models/{m}" for m in self.study.models_in(pair) if self.made_here(m)]

    def _local_judge(self) -> tuple[str | None, list[str]]:
        """A local judge's checkpoint and the made directories it needs.

        A local judge is a built tiny model (``build``), one of the study's models
        (``model``: a key of ``models``, loaded where that model is), or a checkpoint (``path``).
        """
        judge = self.config.get("judge") or {}
        if judge.get("backend") != "hf_local":
            return None, []
        local = judge.get("hf_local", {})
        if local.get("model"):
            return self.model_dir(local["model"]), [self.model_dir(local["model"])] if self.made_here(local["model"]) else []
        if "build" in local:
            return "results/judge/model", ["results/judge/model"]
        return None, []

    # --- files ----------------------------------------------------------------------------

    def task_files(self) -> list[str]:
        """The task source files the tasks job reads as inputs (the transcript file; [] for Sotopia data,
        whose directory is checked when the config is read)."""
        return [self.config["tasks"]["path"]] if self.transcripts else []

    def episodes(self, seeds: Sequence[int] | None = None) -> list[str]:
        """Every episode block of every pair, for ``seeds`` (all by default)."""
        return [f"results/episodes/{pair}/seed{s}/block{b}.parquet"
                for pair in self.pairs for s in (self.seeds if seeds is None else seeds) for b in self.blocks]

    def condition_episodes(self, condition: str) -> list[str]:
        """The episode blocks a condition reads: the passive control's seeds, or every seed."""
        return self.episodes(self.passive_seeds if condition == "passive" else None)

    def evals(self) -> list[str]:
        """Every judged episode block."""
        return [p.replace("results/episodes/", "results/eval/", 1) for p in self.episodes()]

    def rep_shards(self, pair: str, kind: str) -> list[str]:
        """All representation shards of a pair's ``genuine`` or ``passive`` runs, both agents."""
        seeds = self.passive_seeds if kind == "passive" else self.seeds
        return [f"results/reps/{pair}/seed{s}/{kind}/block{b}_agent{a}.parquet"
                for s in seeds for b in self.blocks for a in (1, 2)]

    def condition_shards(self, pair: str, kind: str, condition: str) -> list[str]:
        """A pair's shards of ``kind`` when ``condition`` reads them: passive shards only for passive."""
        return self.rep_shards(pair, kind) if kind == "genuine" or condition == "passive" else []

    def tom_files(self, pair: str, kind: str) -> list[str]:
        """A ToM pair's ``episodes`` tables or ``reps`` shards (both agents), every seed and block."""
        if kind == "episodes":
            return [f"results/tom/episodes/{pair}/seed{s}/block{b}.parquet" for s in self.tom_seeds for b in self.blocks]
        return [f"results/tom/reps/{pair}/seed{s}/block{b}_agent{a}.parquet"
                for s in self.tom_seeds for b in self.blocks for a in (1, 2)]

    def r2_tables(self, root: str = "r2", conditions: Sequence[str] = ("experimental",),
                  pairs: Sequence[str] | None = None) -> list[str]:
        """R2 tables under ``results/{root}`` for every pair (or ``pairs``), condition and direction."""
        return [f"results/{root}/{pair}/{c}/{d}.parquet"
                for pair in (self.pairs if pairs is None else pairs) for c in conditions for d in self.directions]

    def r2_dir(self, size: int) -> str:
        """The R2 table folder of a dataset size: the main tables at r2.size, else r2_size/{size}."""
        return "r2" if int(size) == int(self.config["r2"]["size"]) else f"r2_size/{size}"

    def sensitivity_inputs(self, analysis: str) -> dict[str, Any]:
        """The files one sensitivity analysis reads (every input name of the step; [] where unused)."""
        files: dict[str, Any] = dict(tables=[], disjoint=[], summary=[], performance=[])
        perf = "results/summary/performance.parquet"
        if analysis == "top_k":
            return {**files, "tables": self.r2_tables(), "performance": perf}
        if analysis == "no_clip":
            return {**files, "summary": "results/summary/synchrony_experimental.parquet"}
        if analysis == "sample_size":
            sized = [t for size in self.config["analysis"]["sensitivity"]["sizes"]
                     for t in self.r2_tables(self.r2_dir(size))]
            return {**files, "tables": sized, "performance": perf}
        return {**files, "tables": self.r2_tables(), "disjoint": self.r2_tables("r2_persona")}
