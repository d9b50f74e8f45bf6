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
    from .datasets import build_dataset
    from .r2table import compute_r2_table, write_r2_table

    ds = build_dataset(args.genuine, args.condition, args.direction, passive=args.passive or None)
    log.info("%s %s: %d paired samples in %d task groups", args.condition, args.direction, len(ds), len(set(ds.groups)))
    table = compute_r2_table(
        ds, args.size, args.split_seeds, alpha=args.alpha, test_fraction=args.test_fraction,
        device=args.device, progress=not args.no_progress,
    )
    write_r2_table(
        table, args.out, pair=args.pair, condition=args.condition, direction=args.direction,
        source_model=ds.source.shards[0].meta.model_key, target_model=ds.target.shards[0].meta.model_key,
        alpha=args.alpha, size=args.size, n_samples=len(ds),
    )
    log.info("wrote %s (%d rows)", args.out, len(table))


def cmd_synthetic(args: argparse.Namespace) -> None:
    from .synthetic import SyntheticSpec, write_synthetic_shards

    spec = SyntheticSpec(n_tasks=args.tasks, seeds=tuple(args.seeds), n_turns=args.turns, rho=args.rho)
    for p in write_synthetic_shards(spec, args.out):
        log.info("wrote %s", p)


def cmd_sync(args: argparse.Namespace) -> None:
    from .summary import summarize_tables, write_summary

    frame = summarize_tables(args.tables, top_k=args.top_k, clip=not args.no_clip)
    write_summary(frame, args.out)
    log.info("wrote %s (%d rows)", args.out, len(frame))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncr2", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("r2", help="R2 table of one (pair, condition, direction)")
    p.add_argument("--genuine", nargs="+", required=True, help="genuine shards of both agents (all seeds, blocks)")
    p.add_argument("--passive", nargs="*", default=[], help="passive shards (condition 'passive' only)")
    p.add_argument("--condition", required=True, help="experimental | passive | lagK")
    p.add_argument("--direction", required=True, choices=["AtoB", "BtoA"])
    p.add_argument("--size", type=int, required=True, help="fixed sample size (train + test)")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--split-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--pair", default="", help="pair key recorded in the table's metadata")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_r2)

    p = sub.add_parser("synthetic", help="write shards of a synthetic pair with planted synchrony")
    p.add_argument("--tasks", type=int, default=40)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--turns", type=int, default=8)
    p.add_argument("--rho", type=float, default=0.6)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_synthetic)

    p = sub.add_parser("sync", help="SyncR2 summary of R2 tables")
    p.add_argument("--tables", nargs="+", required=True)
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--no-clip", action="store_true")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_sync)

    return parser


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
