"""Typed settings: one frozen dataclass per part of the config, and one JSON per workflow step.

docs/architecture.md, "Rerun contract". A setting used to travel from the config
through rule params, a shell string, argparse and keyword arguments, restating its
name and default at every hop. Here the validated config (the schema fills every
default) becomes a :class:`Study` once; :meth:`Study.settings` picks the parts
one step uses and adds the job's wildcards (:data:`RULE_SETTINGS`); the rule passes that canonical JSON
(:func:`~syncr2.core.config.canonical_json`) as its only param, so it is also the
job's rerun trigger; the CLI turns it back into the same typed parts
(:class:`StepSettings`). Where and how a job runs (:meth:`Study.placement`) is a
resource of the job, never a param: it decides both the Slurm resources and the
conda environment, and a changed device reruns nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import canonical_json, judge_settings, lm_result_options, lm_runtime_options, ordered_pairs, pair_key


@dataclass(frozen=True)
class Split:
    """The group split of a dataset (docs/protocol.md, "Datasets and splits")."""

    size: int
    test_fraction: float = 0.2
    split_seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "split_seeds", tuple(int(s) for s in self.split_seeds))


@dataclass(frozen=True)
class Ridge:
    """The ridge penalty of every affine map."""

    alpha: float = 0.1


@dataclass(frozen=True)
class Sync:
    """How an R2 cube becomes SyncR2 (docs/protocol.md, "Ridge maps and SyncR2")."""

    top_k: int
    clip: bool


@dataclass(frozen=True)
class PairNaming:
    """How pairs are named and grouped: model families, the order of keys, labels, Table 1's order."""

    families: dict[str, str]
    model_order: tuple[str, ...]
    abbreviations: dict[str, str]
    first_family: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_order", tuple(self.model_order))


@dataclass(frozen=True)
class Statistics:
    """Figure 6 and Table 1: which SyncR2 is correlated, the fewest pairs, the ability scores."""

    syncr2: str
    min_pairs_correlation: int
    min_pairs_partial: int
    abilities: dict[str, dict[str, float]]


@dataclass(frozen=True)
class MLP:
    """Table 5's MLP maps (docs/analyses.md, "MLP maps")."""

    hidden: int = 512
    lr: float = 1e-4
    weight_decay: float = 0.1
    epochs: int = 200
    batch_size: int = 128
    seed: int = 0
    layer_stride: int = 1

    def options(self) -> dict[str, Any]:
        """The trainer's options (everything but the layer stride)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "layer_stride"}


@dataclass(frozen=True)
class Surrogate:
    """The surrogate null (docs/analyses.md, "Surrogate null")."""

    modes: tuple[str, ...]
    n_perm: int
    seed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", tuple(self.modes))


@dataclass(frozen=True)
class ToM:
    """The ToM condition and Figure 11's decoding (docs/analyses.md, "Theory of Mind decoding")."""

    mode: str = "constrained"
    split_seeds: tuple[int, ...] = (0, 1, 2)
    test_fraction: float = 0.2
    val_fraction: float = 0.2
    penalties: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    layer_stride: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "split_seeds", tuple(int(s) for s in self.split_seeds))
        object.__setattr__(self, "penalties", tuple(float(c) for c in self.penalties))


@dataclass(frozen=True)
class Relationships:
    """Figure 5 (docs/analyses.md, "Relationship closeness"); its split is a :class:`Split` of its own size."""

    sources: tuple[str, ...] = ("social_iqa", "social_chemistry", "normbank")
    modes: tuple[str, ...] = ("paper", "crossfit")
    folds: int = 5
    subsample_seeds: int = 3
    min_samples: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "modes", tuple(self.modes))


@dataclass(frozen=True)
class Placement:
    """Where a job runs, never a rerun trigger: on a GPU (one GPU, the GPU partition and the GPU conda
    env) or not, and its run options (the ``--runtime`` JSON: device, batches, memory, a file's source)."""

    gpu: bool
    run_options: dict[str, Any] = field(default_factory=dict)

    def slurm(self, partitions: Mapping[str, Any]) -> dict[str, Any]:
        """Slurm resources: one GPU on ``gpu_partition``, or ``cpu_partition`` (config ``resources``)."""
        if self.gpu:
            return dict(gpu=1, slurm_partition=partitions["gpu_partition"])
        return dict(slurm_partition=partitions["cpu_partition"])

    @property
    def conda_env(self) -> str:
        """The conda environment file under envs/: ``gpu.yaml`` (CUDA torch) or ``cpu.yaml``."""
        return "gpu.yaml" if self.gpu else "cpu.yaml"


#: Rules whose jobs always need a GPU; the judge needs one with a local backend, the MLP maps off the CPU.
GPU_RULES = ("simulate", "read_passive", "simulate_tom", "read_transcript")


#: The typed parts a step's JSON may hold, by key.
PARTS: dict[str, type] = {
    "split": Split, "ridge": Ridge, "sync": Sync, "naming": PairNaming, "statistics": Statistics, "mlp": MLP,
    "surrogate": Surrogate, "relationships": Relationships, "tom": ToM,
}


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


@dataclass(frozen=True)
class Study:
    """Every typed part of one validated config (the schema has filled its defaults)."""

    config: Mapping[str, Any]
    split: Split
    ridge: Ridge
    sync: Sync
    naming: PairNaming
    statistics: Statistics
    mlp: MLP
    surrogate: Surrogate
    relationships: Relationships
    relationships_split: Split
    tom: ToM
    #: what the workflow knows beyond the config: the prompt preset's section, each model's checkpoint,
    #: the local judge's checkpoint, the number of tasks
    context: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], **context: Any) -> Study:
        """The typed parts of ``cfg``; ``context``: templates, model_dirs, judge_model, n_tasks."""
        r2, analysis, models = cfg["r2"], cfg.get("analysis") or {}, cfg["models"]
        rel, mlp, sur = (analysis.get(k) or {} for k in ("relationships", "nonlinear", "surrogate"))
        split = Split(int(r2["size"]), float(r2["test_fraction"]), r2["split_seeds"])
        return cls(
            config=cfg,
            split=split,
            ridge=Ridge(float(r2["alpha"])),
            sync=Sync(int(cfg["sync"]["top_k"]), bool(cfg["sync"]["clip"])),
            naming=PairNaming(
                families={m: spec.get("family", m) for m, spec in models.items()},
                model_order=analysis.get("model_order") or sorted(models),
                abbreviations={m: spec.get("abbreviation", m) for m, spec in models.items()},
                first_family=analysis.get("one_order_first_family", "Mistral"),
            ),
            statistics=Statistics(analysis.get("syncr2", "clipped"), int(analysis.get("min_pairs_correlation", 3)),
                                  int(analysis.get("min_pairs_partial", 4)), dict(cfg.get("abilities") or {})),
            mlp=MLP(**{f.name: mlp[f.name] for f in dataclasses.fields(MLP) if f.name in mlp}),
            surrogate=Surrogate(sur.get("modes", ()), int(sur.get("n_perm", 0)), int(sur.get("seed", 0))),
            relationships=Relationships(**{k: rel[k] for k in ("sources", "modes", "folds", "subsample_seeds",
                                                                 "min_samples") if k in rel}),
            relationships_split=dataclasses.replace(split, size=int(rel.get("size") or split.size)),
            tom=ToM(**{f.name: (cfg.get("tom") or {})[f.name] for f in dataclasses.fields(ToM)
                       if f.name in (cfg.get("tom") or {})}),
            context=dict(context),
        )

    def pairs(self) -> dict[str, tuple[str, str]]:
        return {pair_key(a, b): (a, b) for a, b in ordered_pairs(self.config)}

    def tom_pairs(self) -> dict[str, tuple[str, str]]:
        """The ordered pairs of the ToM condition (config ``tom.pairs``)."""
        return {pair_key(str(a), str(b)): (str(a), str(b)) for a, b in (self.config.get("tom") or {}).get("pairs", [])}

    def models_of(self, pair: str) -> list[dict[str, Any]]:
        """Both agents' models as the GPU steps take them (:func:`model_entry`)."""
        return [model_entry(self, m, self.context["model_dirs"][m]) for m in self.models_in(pair)]

    def models_in(self, pair: str) -> tuple[str, str]:
        """The two model keys of a pair of the main study or of the ToM condition."""
        return {**self.tom_pairs(), **self.pairs()}[pair]

    def placement(self, rule: str, wildcards: Mapping[str, str] | None = None) -> Placement:
        """Where ``rule``'s jobs run (:class:`Placement`); without ``wildcards``, the GPU decision only."""
        cfg = self.config
        gpu = (rule in GPU_RULES or (rule == "judge" and (cfg.get("judge") or {}).get("backend") == "hf_local")
               or (rule == "mlp_table" and (cfg.get("analysis") or {}).get("nonlinear", {}).get("device") != "cpu"))
        return Placement(gpu, {} if wildcards is None else self.run_options(rule, wildcards))

    def run_options(self, rule: str, wildcards: Mapping[str, str]) -> dict[str, Any]:
        """A job's run options (the ``--runtime`` JSON): where and in what batches it runs."""
        cfg = self.config
        if rule in ("simulate", "read_passive", "simulate_tom", "read_transcript"):
            return {"models": [model_runtime(self, m) for m in self.models_in(wildcards["pair"])]}
        if rule == "judge":
            return judge_settings(cfg, self.context.get("judge_model"))[1]
        if rule in ("r2_table", "relationships", "surrogate_draws", "lag_profile"):
            return {"device": cfg["r2"]["device"]}
        if rule == "mlp_table":
            return {"device": cfg["analysis"]["nonlinear"]["device"]}
        if rule == "convert_gguf":  # where the file comes from: its sha256 pins it
            return {"source": cfg["models"][wildcards["model"]]["gguf"]}
        return {}

    def settings(self, rule: str, wildcards: Mapping[str, str]) -> dict[str, Any]:
        """What the step of ``rule`` uses, for one job: its rule's only param (see :data:`RULE_SETTINGS`)."""
        return RULE_SETTINGS[rule](self, self.config, dict(wildcards))


def _r2_table(st: Study, cfg: Mapping[str, Any], wc: dict) -> dict[str, Any]:
    head, _, size = wc["r2dir"].partition("/")
    split = dataclasses.replace(st.split, size=int(size)) if head == "r2_size" else st.split
    return dict(pair=wc["pair"], condition=wc["condition"], direction=wc["direction"], split=split, ridge=st.ridge,
                groups="persona" if head == "r2_persona" else "task", insufficient_ok=head != "r2")


def _block(wc: dict) -> dict[str, int]:
    return {"block": int(wc["block"]), "seed": int(wc["seed"])}


TASK_KEYS = ("source", "path", "ids", "limit", "reader_seed")
_REPORT = lambda st, cfg, wc: dict(naming=st.naming, statistics=st.statistics)  # noqa: E731
#: Per rule: the settings its step uses (the rule's params, so its rerun trigger), from the study and wildcards.
RULE_SETTINGS: dict[str, Callable[[Study, Mapping[str, Any], dict], dict[str, Any]]] = {
    # never block_size: the task table is every job's input, and a block size changes no task
    "tasks": lambda st, cfg, wc: dict(tasks={k: cfg["tasks"].get(k) for k in TASK_KEYS},
                                      templates=st.context["templates"]),
    "build_tiny_model": lambda st, cfg, wc: dict(spec=cfg["models"][wc["model"]]["build"]),
    "convert_gguf": lambda st, cfg, wc: dict(key=wc["model"], sha256=cfg["models"][wc["model"]]["gguf"]["sha256"],
                                             chat_template=cfg["models"][wc["model"]].get("chat_template")),
    "simulate": lambda st, cfg, wc: dict(models=st.models_of(wc["pair"]), generation=cfg["generation"],
                                         templates=st.context["templates"], block_size=cfg["tasks"]["block_size"],
                                         **_block(wc)),
    "read_transcript": lambda st, cfg, wc: dict(models=st.models_of(wc["pair"]), templates=st.context["templates"],
                                                block_size=cfg["tasks"]["block_size"], **_block(wc)),
    "read_passive": lambda st, cfg, wc: dict(models=st.models_of(wc["pair"]), templates=st.context["templates"]),
    "simulate_tom": lambda st, cfg, wc: dict(RULE_SETTINGS["simulate"](st, cfg, wc), tom_mode=st.tom.mode),
    "tom_decode": lambda st, cfg, wc: dict(pair=wc["pair"], tom=st.tom),
    "tom": lambda st, cfg, wc: dict(naming=st.naming, tom=st.tom),
    "build_judge_model": lambda st, cfg, wc: dict(spec=cfg["judge"].get("hf_local", {}).get("build", {})),
    "judge": lambda st, cfg, wc: dict(judge=judge_settings(cfg, st.context.get("judge_model"))[0], pair=wc["pair"],
                                      seed=int(wc["seed"])),
    "performance": lambda st, cfg, wc: dict(naming=st.naming, aggregation=cfg["judge"]["aggregation"]),
    "check_sizes": lambda st, cfg, wc: dict(split=st.split, conditions=[wc["condition"]],
                                            directions=cfg["directions"]),
    "r2_table": _r2_table,
    "synchrony_condition": lambda st, cfg, wc: dict(sync=st.sync),
    "synchrony": lambda st, cfg, wc: dict(conditions=cfg["conditions"]),
    "correlate": _REPORT,
    "check_relationship_sizes": lambda st, cfg, wc: dict(
        split=st.relationships_split, conditions=["experimental"], directions=cfg["directions"],
        analysis="relationships", sources=st.relationships.sources),
    "relationships": lambda st, cfg, wc: dict(pair=wc["pair"], split=st.relationships_split,
                                              relationships=st.relationships, ridge=st.ridge, sync=st.sync),
    "relationships_summary": lambda st, cfg, wc: {},
    "figures": lambda st, cfg, wc: dict(naming=st.naming),
    "social_figures": _REPORT,
    "sensitivity_analysis": lambda st, cfg, wc: dict(
        analysis=wc["analysis"], naming=st.naming, statistics=st.statistics,
        ks=cfg["analysis"]["sensitivity"]["top_k"] if wc["analysis"] == "top_k" else None,
        scores=cfg["analysis"]["sensitivity"]["scores"]),
    "sensitivity": _REPORT,
    "mlp_table": lambda st, cfg, wc: dict(pair=wc["pair"], condition="experimental", direction=wc["direction"],
                                          split=st.split, mlp=st.mlp),
    "nonlinear": _REPORT,
    "surrogate_draws": lambda st, cfg, wc: dict(pair=wc["pair"], condition=wc["condition"],
                                                direction=wc["direction"], split=st.split, ridge=st.ridge,
                                                surrogate=st.surrogate),
    "surrogate": lambda st, cfg, wc: dict(stem="surrogate_null"),
    "measure_grids": lambda st, cfg, wc: dict(pair=wc["pair"], conditions=[wc["condition"]],
                                              directions=cfg["directions"], split=st.split,
                                              measures=cfg["analysis"]["measures"]["measures"]),
    "measures": lambda st, cfg, wc: dict(conditions=cfg["conditions"], statistics=st.statistics),
    "lag_profile": lambda st, cfg, wc: dict(pair=wc["pair"], directions=cfg["directions"], split=st.split,
                                            ridge=st.ridge, **{k: cfg["analysis"]["lag_profile"][k]
                                                               for k in ("max_lag", "n_perm", "seed")}),
    "lag_profiles": _REPORT,
    "synthesize": lambda st, cfg, wc: dict(study=cfg["synthetic"], pair=wc["pair"], models=list(st.pairs()[wc["pair"]]),
                                           n_tasks=st.context["n_tasks"], block_size=cfg["tasks"]["block_size"],
                                           **_block(wc)),
    "planted_performance": lambda st, cfg, wc: dict(study=cfg["synthetic"], pairs=list(st.pairs()),
                                                    naming=st.naming, conditions=cfg["conditions"],
                                                    directions=cfg["directions"]),
}


class StepSettings:
    """A step's settings as the CLI reads them: typed parts by attribute, other values as given."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = {k: PARTS[k](**v) if k in PARTS and isinstance(v, Mapping) else v for k, v in values.items()}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"these step settings hold no {name!r} (they hold {sorted(self._values)})") from None

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)


def step_json(values: Mapping[str, Any]) -> str:
    """The canonical JSON of a step's settings (typed parts as plain mappings)."""
    return canonical_json({k: _plain(v) for k, v in values.items()})


def model_entry(study: Study, model: str, path: str) -> dict[str, Any]:
    """One agent's model as the GPU steps take it: key, checkpoint, and the options that change its outputs."""
    return {"key": model, "path": path, "options": lm_result_options(study.config["models"][model])}


def model_runtime(study: Study, model: str) -> dict[str, Any]:
    """One model's runtime options (device, batches, memory): a resource, never a rerun trigger."""
    return lm_runtime_options(study.config["models"][model])
