"""Benchmark: prefix reuse across turns, on against off, for simulation and passive reading.

    python bench/bench_prefix_reuse.py --model1 results/models/smollm2 --model2 results/models/gemma3
    python bench/bench_prefix_reuse.py --model1 /ckpt/Llama-3-8B-Instruct --device cuda --dtype bfloat16

Both modes run the same ordered pair over the same demo tasks with the same settings
through ``syncr2.simulation.simulate.run_block`` (every speaker's last-token block outputs
captured, as in the pipeline), then re-read agent 1's prompts passively
(``ChatLM.capture``). Reuse is exact, so both modes give the same dialogues: the bench
checks that, then prints the prefill tokens computed per episode (what a forward pass
actually ran, padding excluded) and the wall times, with their ratios.
Defaults follow the real-model default config (``config/config.yaml``): 12 tasks, 16
turns, 48 new tokens, temperature 0.7, stop at the first newline.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from syncr2.simulation.passive import passive_prompts
from syncr2.simulation.presets import PromptPreset
from syncr2.simulation.simulate import GenerationSettings, load_pair, run_block
from syncr2.simulation.tasks import load_demo_tasks, tasks_frame

PROTOCOL = PromptPreset.from_config(None)


def run_mode(tasks, paths, opts, settings, reuse: bool) -> dict:
    """One mode's dialogues, timings and prefill counts."""
    specs = [("m1", paths[0], {**opts[0], "prefix_reuse": reuse}), ("m2", paths[1], {**opts[1], "prefix_reuse": reuse})]
    models = load_pair(specs, settings)
    for _, lm in models:  # first-call overheads (newline tables, kernels) are not simulation
        lm.generate([lm.render("Hello there.")], seed=0)
        lm.prefixes.reused_tokens = lm.prefixes.computed_tokens = 0
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    episodes, _ = run_block(tasks, models, 0, 0, settings, PROTOCOL, progress=False)
    sync()
    sim_s = time.perf_counter() - t0
    lms = {id(lm): lm for _, lm in models}.values()
    computed = sum(lm.prefixes.computed_tokens for lm in lms)
    reused = sum(lm.prefixes.reused_tokens for lm in lms)
    if not reuse:  # no store was consulted: every prompt token was computed
        computed, reused = int(episodes["n_prompt_tokens"].sum()), 0
    rows = episodes[episodes["speaker"] == 1].reset_index(drop=True)
    lm1 = models[0][1]
    texts = [lm1.render(t) for t in passive_prompts(rows, tasks, PROTOCOL)]
    keys = list(zip(rows["task_id"], rows["seed"])) if reuse else None
    lm1.prefixes.reused_tokens = lm1.prefixes.computed_tokens = 0
    sync()
    t0 = time.perf_counter()
    lm1.capture(texts, keys=keys)
    sync()
    read_s = time.perf_counter() - t0
    return {"episodes": episodes, "sim_s": sim_s, "read_s": read_s, "computed": computed, "reused": reused,
            "read_computed": lm1.prefixes.computed_tokens if reuse else int(sum(len(x) for x in lm1.tokenize(texts)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model1", required=True, help="checkpoint directory (e.g. results/models/smollm2)")
    ap.add_argument("--model2", help="second model (default: --model1)")
    ap.add_argument("--template1", help="chat template of model 1 when its checkpoint has none (a file)")
    ap.add_argument("--template2", help="chat template of model 2 when its checkpoint has none (a file)")
    ap.add_argument("--tasks", type=int, default=12)
    ap.add_argument("--max-turns", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = (args.model1, args.model2 or args.model1)
    opts = []
    for template in (args.template1, args.template2 or (args.template1 if not args.model2 else None)):
        o = {"device": args.device, "dtype": args.dtype, "batch_size": args.batch_size}
        if template:
            o["chat_template"] = open(template).read()
        opts.append(o)
    tasks = tasks_frame(load_demo_tasks(), PROTOCOL, reader_seed=0).head(args.tasks).reset_index(drop=True)
    settings = GenerationSettings(max_turns=args.max_turns, temperature=0.7, max_new_tokens=args.max_new_tokens,
                                  stop_at_newline=True)
    print(f"models: {paths[0]} & {paths[1]}; device {args.device}, {args.dtype}, torch threads "
          f"{torch.get_num_threads()}; {len(tasks)} episodes, <= {args.max_turns} turns, "
          f"<= {args.max_new_tokens} new tokens, batch {args.batch_size}")
    res = {reuse: run_mode(tasks, paths, opts, settings, reuse) for reuse in (False, True)}
    same = res[False]["episodes"][["raw_output", "n_new_tokens"]].equals(res[True]["episodes"][["raw_output", "n_new_tokens"]])
    n_ep, n_turns = len(tasks), len(res[True]["episodes"])
    for reuse in (False, True):
        r = res[reuse]
        print(f"reuse {'on ' if reuse else 'off'}: simulate {r['sim_s']:7.1f} s, prefill {r['computed'] / n_ep:8.0f} "
              f"tokens computed per episode ({r['reused'] / n_ep:6.0f} reused); passive read {r['read_s']:6.1f} s, "
              f"{r['read_computed'] / n_ep:7.0f} tokens per episode")
    off, on = res[False], res[True]
    print(f"{n_turns} turns; dialogues identical: {same}; mean prompt "
          f"{np.mean(on['episodes']['n_prompt_tokens']):.0f} tokens")
    print(f"prefill tokens off/on: simulate {off['computed'] / on['computed']:.2f}x, passive "
          f"{off['read_computed'] / on['read_computed']:.2f}x")
    print(f"wall time off/on: simulate {off['sim_s'] / on['sim_s']:.2f}x, passive {off['read_s'] / on['read_s']:.2f}x")


if __name__ == "__main__":
    main()
