"""Workflow configuration: the checks a JSON schema cannot express.

The Snakefile validates the config against ``workflow/schemas/`` first, then
calls :func:`check_config` with the number of selected tasks, so that a wrong
model key, a lag too long for the turn cap or a sample size the data cannot
fill fails before any job starts, with a message saying what to change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .conditions import Condition, direction_speakers, split_sizes


class ConfigError(ValueError):
    """The configuration cannot produce the requested study."""


#: Where a model entry's checkpoint comes from: exactly one per entry. ``build`` and
#: ``gguf`` make results/models/KEY (workflow/rules/models.smk); ``path`` is loaded as is.
MODEL_SOURCES = ("path", "build", "gguf")


def ordered_pairs(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ordered (m1, m2) pairs of the config; "all_ordered" = every ordered pair."""
    models = list(cfg["models"])
    if cfg["pairs"] == "all_ordered":
        return [(a, b) for a in models for b in models]
    return [(str(a), str(b)) for a, b in cfg["pairs"]]


def pair_key(m1: str, m2: str) -> str:
    return f"{m1}__{m2}"


def samples_per_episode(max_turns: int, direction: str, lag: int) -> int:
    """Most (source, target) pairs one episode of ``max_turns`` turns can give."""
    src_speaker, _ = direction_speakers(direction)
    first = src_speaker - 1  # first source turn: 0 (AtoB) or 1 (BtoA)
    earliest = -(1 + 2 * lag)  # the target turn t + 1 + 2 lag must be >= 0 (binds for a negative lag)
    if earliest > first:  # the first source turn of this speaker at or after it
        first += (earliest - first + 1) // 2 * 2
    last_source = min(max_turns - 1, max_turns - 1 - (1 + 2 * lag))  # latest t whose target is in range
    if last_source < first:
        return 0
    return (last_source - first) // 2 + 1


def check_config(cfg: Mapping[str, Any], n_tasks: int, passive_seeds: int | None = None) -> None:
    """Raise :class:`ConfigError` listing every problem of ``cfg`` for ``n_tasks`` tasks.

    ``passive_seeds``: how many of the seeds the passive control re-reads (the
    prompt preset's ``passive_seeds``; default all), for its sample capacity.
    """
    problems = (_model_problems(cfg) + _size_problems(cfg, n_tasks, passive_seeds) + _judge_problems(cfg)
                + _robustness_problems(cfg) + _tom_problems(cfg, n_tasks) + _transcript_problems(cfg))
    models = cfg["models"]
    order = (cfg.get("analysis") or {}).get("model_order")
    if order and sorted(order) != sorted(models):
        problems.append(
            f"analysis.model_order must list every model key once: it has {sorted(order)}, models are {sorted(models)}"
        )
    for ability, scores in (cfg.get("abilities") or {}).items():
        missing = sorted(set(models) - set(scores))
        if missing:
            problems.append(f"abilities.{ability}: no score for model(s) {', '.join(missing)}")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def _tom_problems(cfg: Mapping[str, Any], n_tasks: int) -> list[str]:
    """A ToM section the study cannot run: unknown models, a known-answer study, too few tasks to split."""
    pairs = (cfg.get("tom") or {}).get("pairs") or []
    if not pairs:
        return []
    problems = [f"tom.pairs: model key {m!r} is not defined under 'models' (defined: {', '.join(sorted(cfg['models']))})"
                for pair in pairs for m in pair if m not in cfg["models"]]
    if cfg.get("synthetic"):
        problems.append("tom.pairs: a known-answer study (synthetic) has no language models to instruct; set tom.pairs: []")
    if n_tasks < 3:
        problems.append(f"tom.pairs: the ToM decoding splits tasks into test, validation and fit parts and needs "
                        f"at least 3 tasks; the study has {n_tasks}")
    return problems


def _transcript_problems(cfg: Mapping[str, Any]) -> list[str]:
    """What a study of recorded transcripts cannot run: more seeds, the ToM condition, performance analyses."""
    if (cfg.get("tasks") or {}).get("source") != "transcripts":
        return []
    problems = []
    if [int(s) for s in cfg["seeds"]] != [0]:
        problems.append(f"seeds: a transcript is read once, deterministically; set seeds: [0] (got {cfg['seeds']})")
    if (cfg.get("tom") or {}).get("pairs"):
        problems.append("tom.pairs: the ToM condition instructs simulated agents; a transcript study has none: "
                        "set tom.pairs: []")
    needs_performance = [a for a in ((cfg.get("analysis") or {}).get("sensitivity") or {}).get("analyses") or []
                         if a in ("top_k", "sample_size")]
    if needs_performance:
        problems.append(f"analysis.sensitivity.analyses: {', '.join(needs_performance)} correlate SyncR2 with the "
                        f"judge's social performance, which a recorded conversation has not; drop them")
    return problems


def _model_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Pairs naming undefined models, bad keys, and entries without exactly one checkpoint source."""
    problems: list[str] = []
    models = cfg["models"]
    for m1, m2 in ordered_pairs(cfg):
        for m in (m1, m2):
            if m not in models:
                problems.append(
                    f"pairs: model key {m!r} is not defined under 'models' (defined: {', '.join(sorted(models))})"
                )
        if "__" in m1 or "__" in m2:
            problems.append(f"pairs: model keys may not contain '__' ({m1!r}, {m2!r})")
    for key, spec in models.items():
        if "/" in key or "__" in key:
            problems.append(f"models: key {key!r} may not contain '/' or '__' (it names files and pairs)")
        sources = [s for s in MODEL_SOURCES if s in spec]
        if len(sources) != 1:
            problems.append(
                f"models.{key}: give exactly one of path (a hub id or checkpoint directory), build (a tiny "
                f"random model) or gguf (a GGUF file to convert); it has {' and '.join(sources) or 'none'}"
            )
    return problems


def _size_problems(cfg: Mapping[str, Any], n_tasks: int, passive_seeds: int | None) -> list[str]:
    """An unfillable ``r2.size``, a lag too long for the turn cap, too few tasks for a split."""
    problems: list[str] = []
    synthetic = cfg.get("synthetic") or {}
    max_turns = int(synthetic.get("n_turns", 8)) if synthetic else int(cfg["generation"].get("max_turns", 16))
    seeds = len(cfg["seeds"])
    size = int(cfg["r2"]["size"])
    try:
        split_sizes(size, float(cfg["r2"].get("test_fraction", 0.2)))
    except ValueError as exc:
        problems.append(f"r2: {exc}")
    if n_tasks < 2:
        problems.append(f"tasks: {n_tasks} task(s) selected; the group split needs at least 2")
    for name in cfg["conditions"]:
        cond = Condition.parse(name)
        for direction in cfg["directions"]:
            per_episode = samples_per_episode(max_turns, direction, cond.lag)
            if per_episode == 0:
                need = 2 * cond.lag + 2 + (direction == "BtoA")
                problems.append(
                    f"conditions: {name} with direction {direction} needs episodes of at least {need} turns "
                    f"but generation.max_turns is {max_turns}; raise max_turns or drop {name}"
                )
                continue
            n_seeds = passive_seeds if cond.source_kind == "passive" and passive_seeds is not None else seeds
            capacity = per_episode * n_seeds * n_tasks
            if capacity < size:
                problems.append(
                    f"r2.size is {size} but {name} {direction} can give at most {capacity} samples "
                    f"({n_tasks} tasks x {n_seeds} seeds x {per_episode} per episode of {max_turns} turns); "
                    f"lower r2.size to <= {capacity} or add tasks/seeds"
                )
    lags = (cfg.get("analysis") or {}).get("lag_profile") or {}
    max_lag = int(lags.get("max_lag", 0))
    if max_lag and robustness_pairs(cfg, "lag_profile"):
        for lag in (-max_lag, max_lag):
            for direction in cfg["directions"]:
                capacity = samples_per_episode(max_turns, direction, lag) * seeds * n_tasks
                if capacity < size:
                    problems.append(
                        f"analysis.lag_profile.max_lag is {max_lag} but lag {lag:+d} {direction} can give at most "
                        f"{capacity} samples of the r2.size {size} ({max_turns} turns per episode); lower max_lag "
                        f"or raise generation.max_turns")
                    break
    return problems


def _judge_problems(cfg: Mapping[str, Any]) -> list[str]:
    """A missing judge, an HTTP judge without a URL, a local judge without a model."""
    judge = cfg.get("judge") or {}
    if not judge:
        return [] if cfg.get("synthetic") or (cfg.get("tasks") or {}).get("source") == "transcripts" else [
            "judge: missing; a study of LLMs needs a judge section (see config/config.yaml)"]
    if judge.get("backend") == "openai_http":
        if not (judge.get("openai_http") or {}).get("base_url"):
            return ["judge.openai_http.base_url is not set: give your OpenAI-compatible server's URL, e.g. "
                    "--config 'judge={\"openai_http\": {\"base_url\": \"http://judge-node:8000/v1\"}}'"]
    elif judge.get("backend") == "hf_local" and not judge.get("hf_local"):
        return ["judge.hf_local: the local judge needs a model: set judge.hf_local.path (or .build, or .model)"]
    elif judge.get("backend") == "hf_local" and "model" in judge["hf_local"]:
        key, models = judge["hf_local"]["model"], cfg.get("models") or {}
        if key not in models:
            return [f"judge.hf_local.model: {key!r} is not a key of models ({', '.join(sorted(models))})"]
    return []


def _chosen_pairs(cfg: Mapping[str, Any], analysis: str) -> list[str] | str:
    return ((cfg.get("analysis") or {}).get(analysis) or {}).get("pairs") or []


def robustness_pairs(cfg: Mapping[str, Any], analysis: str) -> list[str]:
    """The study's ordered pair keys that an analysis section with ``pairs`` (``nonlinear``, ``surrogate``,
    ``measures``, ``lag_profile``) runs on.

    ``all``: every pair. A listed pair the study does not run (a reduced
    ``pairs``) is left out, as a condition the study does not run is.
    """
    chosen = _chosen_pairs(cfg, analysis)
    keys = [pair_key(a, b) for a, b in ordered_pairs(cfg)]
    return keys if chosen == "all" else [p for p in keys if p in set(map(str, chosen))]


def _robustness_problems(cfg: Mapping[str, Any]) -> list[str]:
    """What the sensitivity, nonlinear and surrogate sections ask that this study cannot give.

    A study without the experimental condition, a surrogate condition or a
    listed pair is no error: the workflow leaves out what needs it, as it
    leaves out Figure 6. A pair naming an undefined model is an error (a typo).
    """
    problems: list[str] = []
    analysis = cfg.get("analysis") or {}
    sens = analysis.get("sensitivity") or {}
    if "persona_split" in (sens.get("analyses") or []) and cfg.get("synthetic"):
        problems.append("analysis.sensitivity.analyses: persona_split needs Sotopia tasks with personas; the "
                        "known-answer study has none: drop persona_split")
    models = set(cfg["models"])
    for name in ("nonlinear", "surrogate", "measures", "lag_profile"):
        chosen = _chosen_pairs(cfg, name)
        bad = [] if chosen == "all" else [
            str(p) for p in chosen if len(str(p).split("__")) != 2 or not set(str(p).split("__")) <= models]
        if bad:
            problems.append(f"analysis.{name}.pairs: {', '.join(bad)} is not an ordered pair m1__m2 of the "
                            f"models defined ({', '.join(sorted(models))})")
    sur = analysis.get("surrogate") or {}
    if _chosen_pairs(cfg, "surrogate") and "pseudo_seed" in sur.get("modes", ["pseudo_seed"]) \
            and len(cfg["seeds"]) < 2:
        problems.append("analysis.surrogate.modes: pseudo_seed pairs an episode with another seed's episode "
                        f"of the same task, but the study has {len(cfg['seeds'])} seed; add seeds (3 or more "
                        "give a real null distribution) or drop pseudo_seed")
    return problems


def n_blocks(n_tasks: int, block_size: int) -> int:
    """Number of simulation blocks (jobs per pair and seed)."""
    return max(1, math.ceil(n_tasks / block_size))


# --- Canonical rule parameters -------------------------------------------------------------
# A rule's params are its rerun trigger: they must hold only what changes a result,
# in one canonical text, so that reordering keys or writing 0.7 as 0.70 reruns nothing.

#: Model options that change what a model computes (part of a GPU rule's params).
LM_RESULT_KEYS = ("revision", "dtype", "tf32", "chat_template")
#: Model options that only say where or how fast it runs (never a rerun trigger): an
#: episode's text does not depend on the batch it was sampled in.
LM_RUNTIME_KEYS = ("device", "batch_size", "memory_limit_gb", "attn_implementation", "prefix_reuse")


def _canonical_value(value: Any) -> Any:
    """Integral floats as ints and mappings with str keys, recursively (for :func:`canonical_json`)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(k): _canonical_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical_value(v) for v in value]
    raise TypeError(f"cannot put a {type(value).__name__} into rule parameters: {value!r}")


def canonical_json(value: Any) -> str:
    """One text per meaning: sorted keys, no spaces, 1.0 written as 1."""
    import json

    return json.dumps(_canonical_value(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def lm_result_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The loading options of a model config entry that change its outputs.

    Never its source (``build``, ``gguf``): a built or converted model is
    loaded from results/models/KEY, an input of the rules that run it.
    """
    return {k: spec[k] for k in LM_RESULT_KEYS if spec.get(k) is not None}


def lm_runtime_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The loading options of a model config entry that do not change its outputs (device, batches, memory)."""
    return {k: spec[k] for k in LM_RUNTIME_KEYS if spec.get(k) is not None}


# --- `--config` values -------------------------------------------------------------------
# Snakemake parses a nested `--config key=VALUE` with YAML's BaseLoader, which keeps every
# scalar a string (`seeds=[0]` gives ["0"]). The schema says what each value should be.

_SCALAR_PARSERS: dict[str, Any] = {
    "integer": lambda s: int(s) if s.strip().lstrip("+-").isdigit() else None,
    "number": lambda s: float(s) if _is_float(s) else None,
    "boolean": lambda s: {"true": True, "false": False}.get(s.strip().lower()),
    "null": lambda s: _NULL if s.strip() in ("null", "~", "None", "") else None,
}
_NULL = object()


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _schema_types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    return [kind] if isinstance(kind, str) else list(kind or [])


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` with a local ``$ref`` (``#/$defs/name``) replaced by its target."""
    ref = schema.get("$ref") if isinstance(schema, Mapping) else None
    if not ref or not ref.startswith("#/"):
        return schema
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}


def coerce_cli_strings(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """``value`` with strings turned into the integer, number, boolean or null its schema asks for.

    Only strings that the schema does not accept as strings are converted, and
    only when they parse exactly; anything else is left for the validator to
    report.
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if isinstance(value, str):
        types = _schema_types(schema)
        if "string" in types or not types:
            for alt in schema.get("oneOf", []) + schema.get("anyOf", []):
                coerced = coerce_cli_strings(value, alt, root)
                if coerced is not value:
                    return coerced
            return value
        for kind in ("integer", "number", "boolean", "null"):
            if kind in types:
                parsed = _SCALAR_PARSERS[kind](value)
                if parsed is not None:
                    return None if parsed is _NULL else parsed
        return value
    if isinstance(value, Mapping):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, Mapping) else {})
            out[key] = coerce_cli_strings(item, sub, root)
        for alt in schema.get("oneOf", []) + schema.get("anyOf", []):
            if isinstance(alt, Mapping) and ("properties" in alt or "additionalProperties" in alt):
                out = coerce_cli_strings(out, {k: v for k, v in alt.items() if k not in ("oneOf", "anyOf")}, root)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, Mapping):
            for alt in schema.get("oneOf", []) + schema.get("anyOf", []):
                if isinstance(alt, Mapping) and "items" in alt:
                    items = alt["items"]
                    break
        return [coerce_cli_strings(v, items, root) if isinstance(items, Mapping) else v for v in value]
    return value


def normalize_cli_config(cfg: dict[str, Any], schema_path: str) -> None:
    """Turn the strings of nested ``--config`` values into the types the schema asks for, in place."""
    import yaml

    with open(schema_path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    cfg.update(coerce_cli_strings(dict(cfg), schema))


# --- The judge's settings -------------------------------------------------------------------
#: Judge settings that say where or how patiently it runs, never what it answers.
JUDGE_RUNTIME_KEYS = frozenset({
    "device", "batch_size", "timeout_s", "connect_timeout_s", "max_retries", "backoff_s", "backoff_max_s",
    "api_key_env", "base_url",
})


def judge_settings(cfg: Mapping[str, Any], model_dir: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(result settings, runtime settings) of the config's ``judge`` section, backend options flattened.

    The result settings are the judge rule's rerun trigger: the backend, the
    prompt style, the parse rule, the attempts and every generation parameter.
    ``model_dir`` replaces a local judge's ``build`` spec (or ``model``, a key
    of ``models``) by the checkpoint's directory.
    """
    judge = dict(cfg["judge"])
    backend = judge["backend"]
    options = dict(judge.get(backend) or {})
    if backend == "hf_local" and ("build" in options or "model" in options):
        options.pop("build", None)
        options.pop("model", None)
        options["path"] = model_dir
    result = {k: judge[k] for k in ("backend", "style", "parse_rule", "max_attempts", "system_message") if k in judge}
    runtime: dict[str, Any] = {}
    for key, value in options.items():
        (runtime if key in JUDGE_RUNTIME_KEYS else result)[key] = value
    return result, runtime
