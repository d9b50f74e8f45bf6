"""How much the model dtype changes the recorded representations, and SyncR2 built from them.

    python bench/compare_dtypes.py                    # CPU: float32 vs bfloat16 (TF32 skipped)
    python bench/compare_dtypes.py --device cuda      # also float32 with TF32 matmuls

The smoke config's first tiny Llama and first tiny Mistral
(``config/smoke.yaml``, ``models.*.build``; random weights) are built offline
into ``--models-dir``. The same prompts -- the demo tasks' intros followed by
0..15 dialogue lines (lines of the tiny tokenizer's corpus, fixed), the
speaker alternating as in an episode, rendered through each model's chat
template -- are recorded with ``ChatLM.capture`` (block outputs at the last
prompt token, float32 copies) with the model loaded in float32 and in
bfloat16 (and float32+TF32 on CUDA).

Printed per model: the largest |rep(dtype) - rep(float32)| over every prompt,
layer and unit, absolutely and relative to the range of the float32 values
(max - min over all of them), and the median relative error per element.
Then the effect on SyncR2: ridge R2 grids (``layer_pair_r2``, alpha 0.1)
between the two models' representations of the same prompts, A->B and B->A,
over ``--split-seeds`` random 80/20 splits, once from the float32
representations and once from the other dtype's (same samples, same splits),
summarised by ``sync_r2(cube, clip=False)``; printed: max |delta R2| over grid
cells and |delta SyncR2| per direction.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from syncr2.simulation.lm import ChatLM, LMConfig
from syncr2.simulation.presets import PromptPreset
from syncr2.simulation.tasks import load_demo_tasks, tasks_frame
from syncr2.simulation.tiny_models import build_from_spec, default_corpus
from syncr2.synchrony.ridge import layer_pair_r2
from syncr2.synchrony.sync import sync_r2

REPO = Path(__file__).resolve().parents[1]
PRESET = PromptPreset.from_config(None)


def tiny_models(models_dir: Path) -> list[tuple[str, str]]:
    """Build (once) the smoke config's first Llama and first Mistral tiny model; (key, directory) each."""
    specs = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())["models"]
    picked = [next((k, s) for k, s in specs.items() if s["build"]["arch"] == arch) for arch in ("llama", "mistral")]
    out = []
    for key, spec in picked:
        path = models_dir / key
        if not (path / "config.json").exists():
            build_from_spec(spec["build"], path)
        out.append((key, str(path)))
    return out


def demo_prompts(max_turns: int) -> list[str]:
    """User messages: every demo task at turns 0..max_turns-1, dialogue lines taken from the tiny corpus."""
    frame = tasks_frame(load_demo_tasks(), PRESET, reader_seed=0)
    lines = [s.split(" said: ", 1)[-1] for s in default_corpus() if s.strip()]
    prompts = []
    for i, row in enumerate(frame.itertuples(index=False)):
        history: list[tuple[str, str]] = []
        for t in range(max_turns):
            agent = 1 if t % 2 == 0 else 2
            intro, name = (row.intro1, row.agent1_name) if agent == 1 else (row.intro2, row.agent2_name)
            prompts.append(PRESET.prompt(intro, history, name, t))
            history.append((name, lines[(7 * i + 3 * t) % len(lines)]))
    return prompts


def capture(path: str, prompts: list[str], device: str, dtype: str, tf32: bool = False) -> tuple[np.ndarray, str]:
    lm = ChatLM.load(LMConfig(path=path, dtype=dtype, device=device, tf32=tf32, batch_size=16))
    if tf32:
        torch.backends.cuda.matmul.allow_tf32 = True  # what LMConfig(tf32=True) sets at load; explicit here
    reps = lm.capture([lm.render(p) for p in prompts])
    name = lm.dtype
    del lm
    return reps, name


def splits(n: int, seeds: list[int], test_fraction: float = 0.2) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for s in seeds:
        perm = np.random.default_rng(s).permutation(n)
        k = round(n * test_fraction)
        out.append((np.sort(perm[k:]), np.sort(perm[:k])))
    return out


def cube(x: np.ndarray, y: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]], alpha: float) -> np.ndarray:
    return np.stack([layer_pair_r2(x, y, tr, te, alpha=alpha, device="cpu") for tr, te in parts])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "syncr2-bench-models")
    ap.add_argument("--max-turns", type=int, default=16)
    ap.add_argument("--split-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")

    models = tiny_models(args.models_dir)
    prompts = demo_prompts(args.max_turns)
    print(f"models: {', '.join(k for k, _ in models)} ({args.models_dir}); {len(prompts)} prompts "
          f"(12 demo tasks x {args.max_turns} turns); device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    variants = [("bfloat16", "bfloat16", False)]
    if args.device == "cuda":
        variants.append(("float32+tf32", "float32", True))
    else:
        print("TF32: skipped (TF32 matmuls exist only on CUDA; run with --device cuda)")

    reps: dict[str, dict[str, np.ndarray]] = {}
    for key, path in models:
        ref, ref_name = capture(path, prompts, args.device, "float32")
        reps[key] = {"float32": ref}
        lo, hi = float(ref.min()), float(ref.max())
        for label, dtype, tf32 in variants:
            other, name = capture(path, prompts, args.device, dtype, tf32)
            reps[key][label] = other
            d = np.abs(other.astype(np.float64) - ref)
            rel = d / np.maximum(np.abs(ref), 1e-12)
            worst = np.unravel_index(np.argmax(d), d.shape)
            per_layer = d.max(axis=(0, 2))
            print(f"{key} ({ref.shape[1]} layers x {ref.shape[2]}): {name} vs {ref_name}: max |delta| {d.max():.3e} "
                  f"(at prompt {worst[0]}, layer {worst[1] + 1}); float32 range [{lo:.3f}, {hi:.3f}] -> "
                  f"max |delta| / range {d.max() / (hi - lo):.3e}; median relative error {np.median(rel):.3e}; "
                  f"per-layer max |delta| {', '.join(f'{v:.2e}' for v in per_layer)}")

    (ka, _), (kb, _) = models
    parts = splits(len(prompts), args.split_seeds)
    print(f"SyncR2 on the same {len(prompts)} samples: {len(parts)} random 80/20 splits (seeds {args.split_seeds}), "
          f"ridge alpha {args.alpha}, sync_r2(clip=False)")
    for label, _, _ in variants:
        for src, tgt in ((ka, kb), (kb, ka)):
            c32 = cube(reps[src]["float32"], reps[tgt]["float32"], parts, args.alpha)
            c16 = cube(reps[src][label], reps[tgt][label], parts, args.alpha)
            s32, s16 = sync_r2(c32, clip=False), sync_r2(c16, clip=False)
            print(f"  {src} -> {tgt}: SyncR2 float32 {s32.value:+.6f} (SE {s32.se:.4f}), {label} {s16.value:+.6f}; "
                  f"|delta SyncR2| {abs(s16.value - s32.value):.3e}; max |delta R2| over {c32[0].size} layer pairs x "
                  f"{len(parts)} splits {np.abs(c16 - c32).max():.3e}")


if __name__ == "__main__":
    main()
