"""Command line: one subcommand per workflow step, usable without Snakemake.

Every step reads the same three things (docs/architecture.md, "Rerun contract"):

* ``--settings JSON``: what changes its result, as :func:`syncr2.core.settings.step_json`
  writes it (the rule's only param, so also its rerun trigger); typed parts such
  as ``split`` or ``mlp`` come back as the dataclasses of :mod:`syncr2.core.settings`;
* ``--runtime JSON``: where and how it runs (device, batches, memory), never a result;
* ``--in NAME PATH...`` and ``--out NAME PATH``: its files, by the names of :data:`STEPS`.

For example ``python -m syncr2 sync --settings '{"sync": {"top_k": 1, "clip": true}}'
--in tables results/r2/a__b/experimental/AtoB.parquet --out summary s.parquet``.
Each step writes its outputs atomically; ``python -m syncr2 STEP --help`` lists its files.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .core.settings import StepSettings

log = logging.getLogger("syncr2")


@dataclass(frozen=True)
class StepIO:
    """A step's named input and output paths (``--in``/``--out``); errors name the missing one."""

    step: str
    inputs: dict[str, list[str]] = field(default_factory=dict)
    outputs: dict[str, list[str]] = field(default_factory=dict)

    def many(self, name: str) -> list[str]:
        """Every path given for input ``name`` ([] when none)."""
        return list(self.inputs.get(name, []))

    def one(self, name: str) -> str:
        """The single path of input ``name``."""
        return self._single(self.inputs, name, "--in")

    def out(self, name: str) -> str:
        """The single path of output ``name``."""
        return self._single(self.outputs, name, "--out")

    def _single(self, files: dict[str, list[str]], name: str, flag: str) -> str:
        paths = files.get(name, [])
        if len(paths) != 1:
            raise ValueError(f"{self.step}: {flag} {name} needs exactly one path, got {len(paths)}")
        return paths[0]


Runner = Callable[[StepSettings, dict, StepIO, bool], None]


@dataclass(frozen=True)
class Step:
    run: Runner
    help: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    required: tuple[str, ...]
    #: inputs and outputs that are folders of the workflow's layout, by name: their path there
    in_folders: dict[str, str] = field(default_factory=dict)
    out_folders: dict[str, str] = field(default_factory=dict)


#: The subcommands, by name: what each does and the names of its files.
STEPS: dict[str, Step] = {}


def _names(spec: str, folders: dict[str, str]) -> tuple[str, ...]:
    """The names of ``spec``'s entries, recording ``name=folder`` defaults in ``folders``."""
    names = []
    for entry in spec.split():
        name, _, folder = entry.partition("=")
        if folder:
            folders[name.rstrip("?")] = folder
        names.append(name)
    return tuple(names)


def step(name: str, helptext: str, inputs: str = "", outputs: str = "") -> Callable[[Runner], Runner]:
    """Register a subcommand of ``name``, its files named by the space-separated ``inputs``/``outputs``.

    An output ending in ``?`` may be left out. ``name=folder`` is a folder of the workflow's
    layout (docs/architecture.md): the rule's command names it, and a command that leaves
    out a required one gets it.
    """
    def register(fn: Runner) -> Runner:
        in_folders: dict[str, str] = {}
        out_folders: dict[str, str] = {}
        ins, outs = _names(inputs, in_folders), _names(outputs, out_folders)
        STEPS[name] = Step(fn, helptext, ins, tuple(o.rstrip("?") for o in outs),
                           tuple(o for o in outs if not o.endswith("?")), in_folders, out_folders)
        return fn
    return register


# --------------------------------------------------------------------------- simulation


@step("tasks", "load Sotopia (or demo) tasks into the task table", outputs="tasks")
def run_tasks(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .simulation.presets import PromptPreset
    from .simulation.tasks import load_tasks, tasks_frame, write_tasks

    t = s.tasks
    preset = PromptPreset.from_config(s.get("templates"))
    if t["source"] == "transcripts":
        from .simulation.transcripts import read_transcripts, transcript_tasks_frame

        frame = transcript_tasks_frame(read_transcripts(t["path"]), preset, t.get("reader_seed", 0), t.get("ids"),
                                       t.get("limit"))
    else:
        tasks = load_tasks(t["source"], t.get("path"), t.get("ids"), t.get("limit"))
        frame = tasks_frame(tasks, preset, t.get("reader_seed", 0))
    write_tasks(frame, io.out("tasks"))
    log.info("wrote %s (%d tasks)", io.out("tasks"), len(frame))


@step("build-model", "build a tiny random-weight checkpoint (settings: spec), or convert a GGUF file "
      "(settings: key, sha256, chat_template; runtime: source)", outputs="model")
def run_build_model(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .simulation.gguf_checkpoint import run_build_model

    run_build_model(s.get("spec"), s.get("key"), s.get("sha256"), s.get("chat_template"), rt.get("source"),
                    io.out("model"))


def _pair_models(s: StepSettings, rt: dict) -> tuple[Any, Any, Any]:
    from .simulation.presets import PromptPreset
    from .simulation.simulate import GenerationSettings, load_pair

    settings = GenerationSettings.from_dict(s.get("generation"))
    preset = PromptPreset.from_config(s.get("templates"))
    runtimes = rt.get("models") or [{}, {}]
    specs = [(m["key"], m["path"], {**m.get("options", {}), **r}) for m, r in zip(s.models, runtimes)]
    return load_pair(specs, settings, preset), settings, preset


@step("simulate", "simulate one block of episodes of an ordered pair and seed", "tasks", "episodes reps1 reps2")
def run_simulate(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .simulation.simulate import simulate_block
    from .simulation.tasks import read_tasks

    models, settings, preset = _pair_models(s, rt)
    simulate_block(read_tasks(io.one("tasks")), int(s.block), int(s.block_size), int(s.seed), models, settings,
                   preset, io.out("episodes"), (io.out("reps1"), io.out("reps2")), tom_mode=s.get("tom_mode"))


@step("read-transcript", "two models read one block of recorded conversations, each as one participant",
      "tasks transcript", "episodes reps1 reps2")
def run_read_transcript(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .simulation.tasks import read_tasks
    from .simulation.transcripts import read_transcript_block

    models, _, preset = _pair_models(s, rt)
    read_transcript_block(io.one("transcript"), read_tasks(io.one("tasks")), int(s.block), int(s.block_size), models,
                          preset, io.out("episodes"), (io.out("reps1"), io.out("reps2")))


@step("read-passive", "passive re-reading of one block's recorded prompts", "tasks episodes", "reps1 reps2")
def run_read_passive(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .simulation.passive import read_passive_block
    from .simulation.tasks import read_tasks

    models, _, preset = _pair_models(s, rt)
    read_passive_block(io.one("episodes"), read_tasks(io.one("tasks")), models, preset,
                       (io.out("reps1"), io.out("reps2")))


# --------------------------------------------------------------------------- synchrony


@step("check-sizes", "check that the simulated episodes fill the split's size, before any R2 job",
      "episodes tasks", "sizes")
def run_check_sizes(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .synchrony.size_check import run_size_check

    run_size_check(io.many("episodes"), s.split, s.conditions, s.directions, io.out("sizes"), s.get("analysis", "r2"),
                   sources=s.get("sources"), tasks_path=(io.many("tasks") or [None])[0])


@step("r2", "R2 table of one (pair, condition, direction): ridge maps, or MLP maps with settings mlp",
      "genuine passive tasks", "table")
def run_r2(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .core.settings import Ridge
    from .synchrony.r2_variants import run_r2_variant

    groups = s.get("groups", "task")
    tasks = None
    if groups == "persona":
        import pandas as pd

        tasks = pd.read_parquet(io.one("tasks"))
    run_r2_variant(io.many("genuine"), s.condition, s.direction, s.split, io.out("table"), pair=s.get("pair", ""),
                   ridge=s.get("ridge") or Ridge(), mlp=s.get("mlp"), passive=io.many("passive") or None,
                   groups=groups, tasks=tasks, insufficient_ok=bool(s.get("insufficient_ok")),
                   device=rt.get("device"), progress=progress)


@step("sync", "SyncR2 summary of R2 tables", "tables", "summary")
def run_sync(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .synchrony.summary import summarize_tables, write_summary

    frame = summarize_tables(io.many("tables"), top_k=s.sync.top_k, clip=s.sync.clip)
    write_summary(frame, io.out("summary"))
    log.info("wrote %s (%d rows)", io.out("summary"), len(frame))


@step("concat", "concatenate tables of one kind", "tables", "table")
def run_concat(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    import pandas as pd

    from .core.atomic import write_parquet

    frame = pd.concat([pd.read_parquet(p) for p in io.many("tables")], ignore_index=True)
    write_parquet(frame, io.out("table"))
    log.info("wrote %s (%d rows from %d files)", io.out("table"), len(frame), len(io.many("tables")))


# --------------------------------------------------------------------------- social


@step("judge", "Sotopia-eval scores of one block of episodes (a local model or an HTTP server)",
      "tasks episodes", "eval cache?=results/judge_cache")
def run_judge(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .social.judge import run_judge

    run_judge(s.judge, rt, io.one("tasks"), io.one("episodes"), s.pair, s.seed, io.out("eval"),
              io.outputs.get("cache", [None])[0], progress=progress)


@step("performance", "social performance per ordered and unordered pair from the judge's scores", "evals",
      "performance")
def run_performance(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .social.performance import run_performance

    run_performance(io.many("evals"), s.naming, s.aggregation, io.out("performance"))


@step("synthesize", "known-answer study: one block of planted episodes, genuine and passive shards", "",
      "episodes reps1 reps2 passive1 passive2")
def run_synthesize(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .synchrony.planted_study import run_planted_block

    run_planted_block(s.study, s.pair, s.models, int(s.seed), int(s.block), int(s.block_size), int(s.n_tasks),
                      io.out("episodes"), (io.out("reps1"), io.out("reps2")), (io.out("passive1"), io.out("passive2")))


@step("planted-performance", "known-answer study: planted performance and the analytic truth table", "",
      "performance truth")
def run_planted_performance(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .social.performance import run_planted_performance

    run_planted_performance(s.study, s.pairs, s.naming, s.conditions, s.directions, io.out("performance"),
                            io.out("truth"))


# --------------------------------------------------------------------------- analysis


@step("correlate", "pair scores, Figure 6 correlations and Table 1 partial correlations", "summary performance",
      "dir=results/summary")
def run_correlate(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .analysis.correlation import run_correlation

    for path in run_correlation(io.one("summary"), io.one("performance"), s.naming, s.statistics, io.out("dir"),
                                condition=s.get("condition", "experimental")):
        log.info("wrote %s", path)


@step("relationships", "Figure 5: SyncR2 per relationship category of one pair", "genuine tasks", "table")
def run_relationships(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .analysis.relationships import run_relationships

    run_relationships({s.pair: io.many("genuine")}, io.one("tasks"), io.out("table"), modes=s.relationships.modes,
                      split=s.split, rel=s.relationships, ridge=s.ridge, top_k=s.sync.top_k, device=rt.get("device"))


@step("sensitivity", "one sensitivity analysis (Figures 7-9, Table 2) into a sensitivity table",
      "tables disjoint summary performance", "table")
def run_sensitivity(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .analysis.sensitivity import ANALYSIS_INPUTS, run_analysis

    files = {name: io.many(name) for name in ANALYSIS_INPUTS[s.analysis]}
    run_analysis(s.analysis, files, s.naming, s.statistics, io.out("table"), ks=s.get("ks"),
                 scores=s.get("scores", ("clipped", "unclipped")))


@step("surrogate", "surrogate-null draws of one (pair, condition, direction)", "genuine passive", "draws")
def run_surrogate_step(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .analysis.surrogate import run_surrogate

    run_surrogate(io.many("genuine"), s.condition, s.direction, s.split, s.surrogate, io.out("draws"), ridge=s.ridge,
                  pair=s.get("pair", ""), passive_paths=io.many("passive") or None, device=rt.get("device"),
                  skip_inapplicable=bool(s.get("skip_inapplicable")), progress=progress)


@step("measures", "CKA, RSA and Procrustes grids of one pair's conditions (settings: conditions), both directions, "
      "on the R2 splits' test rows", "genuine passive", "grids")
def run_measures_step(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .synchrony.measures import run_measures

    run_measures(io.many("genuine"), io.many("passive"), s.conditions, s.directions, s.split, s.measures,
                 io.out("grids"), pair=s.pair)


@step("lag-profile", "SyncR2 of one pair at every lag -K..K with a turn-rotation band", "genuine", "profile")
def run_lag_profile_step(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .analysis.lag_profile import run_lag_profile

    run_lag_profile(io.many("genuine"), s.directions, int(s.max_lag), s.split, io.out("profile"), ridge=s.ridge,
                    n_perm=int(s.n_perm), seed=int(s.seed), pair=s.pair, device=rt.get("device"))


# --------------------------------------------------------------------------- report


@step("figures", "the paper's figures 2-4 and the SyncR2 tables", "summary tables", "figures=reports/figures tables=reports/tables")
def run_figures(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .report.steps import synchrony_report

    synchrony_report(io.one("summary"), io.many("tables"), s.naming, io.out("figures"), io.out("tables"))


@step("social-figures", "Figures 5 and 6, Table 1 and the performance tables", "summaries=results/summary",
      "figures=reports/figures tables=reports/tables")
def run_social_figures(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .report.steps import social_report

    social_report(io.one("summaries"), s.naming, s.statistics, io.out("figures"), io.out("tables"))


@step("sensitivity-figures", "the combined sensitivity table, Figures 7-9 and Table 2", "parts",
      "sensitivity figures=reports/figures tables=reports/tables")
def run_sensitivity_figures(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .report.steps import sensitivity_report

    sensitivity_report(io.many("parts"), io.out("sensitivity"), s.naming, s.statistics, io.out("figures"),
                       io.out("tables"))


@step("nonlinear-summary", "SyncR2 of the MLP-map R2 tables and Table 5 (affine against nonlinear)",
      "tables affine", "summary tables=reports/tables")
def run_nonlinear_summary(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .report.steps import nonlinear_report

    nonlinear_report(io.many("tables"), io.one("affine"), io.out("summary"), s.naming, s.statistics,
                     io.out("tables"))


@step("tom-decode", "Figure 11's decoding: every ToM target of one pair from every layer, per split seed",
      "episodes genuine", "table tasks")
def run_tom_decode(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .analysis.tom import run_tom_decode

    run_tom_decode(s.pair, s.tom, io.many("episodes"), io.many("genuine"), io.out("table"), io.out("tasks"))


@step("tom-report", "Figure 11, its per-layer curves, the ToM table and summary (with compliance)",
      "tables tasks episodes", "summary figures=reports/figures tables=reports/tables")
def run_tom_report(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .report.steps import tom_report

    tom_report(io.many("tables"), io.many("tasks"), io.many("episodes"), s.naming, io.out("summary"),
               io.out("figures"), io.out("tables"))


@step("surrogate-summary", "the surrogate summary table and its figure (settings: stem)", "draws",
      "summary figures=reports/figures")
def run_surrogate_summary(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .report.steps import surrogate_report

    surrogate_report(io.many("draws"), io.out("summary"), io.out("figures"), s.get("stem", "surrogate_null"))


@step("measures-summary", "the measures table (SyncR2 beside CKA, RSA, Procrustes) and its figure",
      "grids synchrony", "summary figures=reports/figures")
def run_measures_summary_step(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .report.steps import measures_report

    measures_report(io.many("grids"), io.one("synchrony"), s.conditions, s.statistics, io.out("summary"),
                    io.out("figures"))


@step("lag-profile-summary", "the lag-profile table of every pair and one figure per pair", "profiles",
      "summary figures=reports/figures")
def run_lag_profile_summary(s: StepSettings, rt: dict, io: StepIO, progress: bool) -> None:
    from .report.steps import lag_profile_report

    lag_profile_report(io.many("profiles"), s.naming, s.statistics, io.out("summary"), io.out("figures"))


# --------------------------------------------------------------------------- the workflow's commands


def shell_command(name: str, inputs: Sequence[str] | None = None) -> str:
    """A rule's shell command for step ``name``: Snakemake fills its settings param, its ``run_options``
    resource and the rule's files of every output and input name of the step (or of ``inputs``);
    a folder of the layout is named by its path."""
    st = STEPS[name]

    def arg(flag: str, n: str, kind: str, folders: dict[str, str]) -> str:
        return f"--{flag} {n} {folders[n]}" if n in folders else f"--{flag} {n} {{{kind}.{n}:q}}"

    files = ([arg("in", n, "input", st.in_folders) for n in (st.inputs if inputs is None else inputs)]
             + [arg("out", n, "output", st.out_folders) for n in st.outputs])
    return " ".join([f"python -m syncr2 {name} --settings {{params.settings:q}} --runtime {{resources.run_options:q}}",
                     *files, "--no-progress 2> {log}"])


# --------------------------------------------------------------------------- parsing


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {text[:200]!r} ({exc})") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text[:200]!r}")
    return value


def _named_files(groups: Sequence[Sequence[str]] | None, allowed: tuple[str, ...], step_name: str,
                 flag: str) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for name, *paths in groups or []:
        if name not in allowed:
            raise ValueError(f"{step_name}: {flag} {name} is not one of its files ({', '.join(allowed) or 'none'})")
        files.setdefault(name, []).extend(paths)
    return files


def build_parser() -> argparse.ArgumentParser:
    """One subparser per entry of :data:`STEPS`, all with the same options."""
    parser = argparse.ArgumentParser(prog="syncr2", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, st in STEPS.items():
        files = f"inputs: {', '.join(st.inputs) or 'none'}; outputs: {', '.join(st.outputs) or 'none'}"
        p = sub.add_parser(name, help=st.help, description=f"{st.help} ({files})")
        p.add_argument("--settings", type=_json_object, default={}, help="JSON of what changes the result")
        p.add_argument("--runtime", type=_json_object, default={}, help="JSON of where and how it runs")
        p.add_argument("--in", dest="inputs", nargs="+", action="append", metavar=("NAME", "PATH"),
                       help=f"an input by name, then its paths ({', '.join(st.inputs) or 'none'})")
        p.add_argument("--out", dest="outputs", nargs="+", action="append", metavar=("NAME", "PATH"),
                       help=f"an output by name, then its path ({', '.join(st.outputs)})")
        p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    st = STEPS[args.command]
    try:
        inputs = _named_files(args.inputs, st.inputs, args.command, "--in")
        outputs = _named_files(args.outputs, st.outputs, args.command, "--out")
        inputs.update({n: [f] for n, f in st.in_folders.items() if n not in inputs})
        outputs.update({n: [f] for n, f in st.out_folders.items() if n not in outputs and n in st.required})
        io = StepIO(args.command, inputs, outputs)
        for name in st.required:
            io.out(name)  # every output is named before any work starts
        st.run(StepSettings(args.settings), args.runtime, io, not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    return 0
