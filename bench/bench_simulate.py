"""Benchmark: simulated turns per second, batched episodes vs one episode at a time.

    python bench/bench_simulate.py                         # the smoke config's tiny models, CPU
    python bench/bench_simulate.py --tasks 12 --max-turns 16 --max-new-tokens 48
    python bench/bench_simulate.py --model1 /ckpt/Llama-3.2-3B-Instruct --device cuda --dtype bfloat16

Both modes run the same pair of models over the same tasks with the same settings
through ``syncr2.simulation.simulate.run_block`` (every speaker's last-token block outputs
captured, as in the pipeline):

* batched: all tasks of the block advance together, one ``generate`` call per turn
  over the still-running episodes (the pipeline's way; ``batch_size`` = the block);
* one at a time: each task runs as its own block of one with ``batch_size`` 1.

Sampling makes the two modes' dialogues differ (and so their lengths), so the
figures are rates: utterance turns per second and generated tokens per second.
Without ``--model1`` the smoke config's first tiny Llama and first tiny Mistral
(``config/smoke.yaml``) are built offline into ``--models-dir`` first (not timed).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
import yaml

from syncr2.simulation.presets import PromptPreset
from syncr2.simulation.simulate import GenerationSettings, load_pair, run_block
from syncr2.simulation.tasks import load_demo_tasks, tasks_frame
from syncr2.simulation.tiny_models import build_from_spec

PROTOCOL = PromptPreset.from_config(None)

REPO = Path(__file__).resolve().parents[1]


def tiny_models(models_dir: Path) -> tuple[str, str]:
    """Build (once) the smoke config's first tiny Llama and first tiny Mistral; return their directories."""
    specs = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())["models"]
    picked = [next((k, s) for k, s in specs.items() if s["build"]["arch"] == arch) for arch in ("llama", "mistral")]
    paths = []
    for key, spec in picked:
        out = models_dir / key
        if not (out / "config.json").exists():
            build_from_spec(spec["build"], out)
        paths.append(str(out))
    return paths[0], paths[1]


def timed_run(tasks, paths, opts, settings, templates, batched: bool, seed: int) -> tuple[float, int, int]:
    """(seconds, utterance turns, generated tokens) of one mode."""
    n = len(tasks)
    specs = [("m1", paths[0], {**opts, "batch_size": n if batched else 1}),
             ("m2", paths[1], {**opts, "batch_size": n if batched else 1})]
    models = load_pair(specs, settings)
    warm = [lm.render("Hello there.") for _, lm in models]  # first-call overheads are not simulation
    for (_, lm), prompt in zip(models, warm):
        lm.generate([prompt], seed=0)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    blocks = [tasks] if batched else [tasks.iloc[[i]] for i in range(n)]
    t0 = time.perf_counter()
    turns = tokens = 0
    for block, rows in enumerate(blocks):
        episodes, _ = run_block(rows, models, seed, block, settings, templates, progress=False)
        turns += len(episodes)
        tokens += int(episodes.n_new_tokens.sum())
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, turns, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=12, help="episodes in the block (demo tasks, cycled)")
    ap.add_argument("--max-turns", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--model1", help="checkpoint directory or hub id (default: the tiny Llama)")
    ap.add_argument("--model2", help="second model (default: --model1 if given, else the tiny Mistral)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "syncr2-bench-models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.model1:
        paths = (args.model1, args.model2 or args.model1)
    else:
        paths = tiny_models(args.models_dir)
    frame = tasks_frame(load_demo_tasks(), PROTOCOL, reader_seed=0)
    reps = -(-args.tasks // len(frame))
    tasks = (frame.loc[frame.index.repeat(reps)].head(args.tasks).reset_index(drop=True)
             if args.tasks > len(frame) else frame.head(args.tasks).reset_index(drop=True))
    tasks["task_id"] = range(len(tasks))  # cycled demo tasks count as distinct episodes
    settings = GenerationSettings(max_turns=args.max_turns, temperature=args.temperature,
                                  max_new_tokens=args.max_new_tokens)
    opts = {"device": args.device, "dtype": args.dtype}
    print(f"models: {paths[0]} & {paths[1]}; device {args.device}, {args.dtype}, torch threads "
          f"{torch.get_num_threads()}; {len(tasks)} episodes, <= {args.max_turns} turns, "
          f"<= {args.max_new_tokens} new tokens, temperature {args.temperature}")
    rates = {}
    for name, batched in (("batched", True), ("one at a time", False)):
        secs, turns, tokens = timed_run(tasks, paths, opts, settings, PROTOCOL, batched, args.seed)
        rates[name] = turns / secs
        print(f"{name:>14}: {turns:4d} turns, {tokens:6d} new tokens in {secs:7.2f} s: "
              f"{turns / secs:7.2f} turns/s, {tokens / secs:8.1f} tokens/s")
    print(f"batched / one at a time: {rates['batched'] / rates['one at a time']:.2f}x turns/s")


if __name__ == "__main__":
    main()
