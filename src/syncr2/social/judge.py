"""Stage 5: judge one block of episodes (one ordered pair, one seed).

:func:`judge_block` builds each episode's judge prompt
(:mod:`syncr2.social.judge_prompt`), asks a :class:`JudgeBackend`, parses the
reply (:mod:`syncr2.social.reply_parsing`) and writes the block's evaluation
table (``results/eval/{pair}/seed{seed}/block{b}.parquet``, 14 rows per
episode) atomically.

Reply cache: one JSON file per key under ``cache_dir``, the key being the
sha256 of the prompt's sha256, the backend's name and its canonical
``params()``. A rerun takes every cached reply that parses as valid under the
current rule and re-queries only the rest (invalid replies, transport
errors are never cached). ``max_attempts`` re-asks an episode whose reply
does not parse, with the same parameters (the authors: 1 attempt).

:func:`make_backend` builds a backend from the ``judge`` config mapping and
rejects unknown keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from syncr2.core.atomic import atomic_path, write_parquet
from syncr2.core.config import canonical_json
from syncr2.social.judge_backends import (
    HFLocalBackend,
    JudgeBackend,
    JudgeReply,
    OpenAIHTTPBackend,
)

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_MESSAGE = "You are a helpful assistant."

#: Config keys per backend, with their defaults (None: optional or required as noted).
HF_LOCAL_KEYS: dict[str, Any] = {
    "path": None,  # required
    "revision": None,
    "max_new_tokens": 1024,
    "constrained": False,
    "reasoning_max_length": 200,
    "device": "auto",
    "dtype": "float32",
    "batch_size": 1,
    "chat_template": None,
    "attn_implementation": None,
    "temperature": 0.0,
    "seed": 0,
}
OPENAI_HTTP_KEYS: dict[str, Any] = {
    "base_url": None,  # required
    "model": None,  # required
    "temperature": 0,
    "seed": 0,
    "top_p": 1,
    "n": 1,
    "token_limit_field": "max_completion_tokens",
    "max_tokens": None,
    "reasoning_effort": None,
    "response_format": None,
    "api_key_env": None,
    "timeout_s": 600,
    "connect_timeout_s": None,
    "max_retries": 3,
    "backoff_s": 1.0,
    "backoff_max_s": 30.0,
}
_BACKENDS = {"hf_local": HF_LOCAL_KEYS, "openai_http": OPENAI_HTTP_KEYS}


def make_backend(cfg: Mapping[str, Any], style: str | None = None) -> JudgeBackend:
    """A judge backend from a config mapping (``backend``: ``hf_local`` or ``openai_http``, then its keys).

    Unknown keys raise a ValueError naming them and the allowed ones. For
    ``hf_local`` with ``constrained: true`` the JSON schema is
    ``judge_json_schema(style, reasoning_max_length)``, so ``style`` is required.
    """
    cfg = dict(cfg)
    kind = cfg.pop("backend", None)
    if kind not in _BACKENDS:
        raise ValueError(f"judge backend must be one of {', '.join(sorted(_BACKENDS))}; got {kind!r}")
    allowed = _BACKENDS[kind]
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise ValueError(
            f"judge ({kind}): unknown key(s) {', '.join(unknown)}; allowed: backend, {', '.join(sorted(allowed))}"
        )
    kw = {**allowed, **cfg}
    if kind == "hf_local":
        if not kw["path"]:
            raise ValueError("judge (hf_local): 'path' (a checkpoint directory or hub id) is required")
        schema = None
        constrained = kw.pop("constrained")
        reasoning_max_length = kw.pop("reasoning_max_length")
        if constrained:
            if style is None:
                raise ValueError("judge (hf_local): constrained decoding needs the prompt style for its JSON schema")
            from syncr2.social.judge_prompt import judge_json_schema

            schema = judge_json_schema(style, reasoning_max_length)
        return HFLocalBackend(json_schema=schema, schema_style=style if constrained else None, **kw)
    missing = [k for k in ("base_url", "model") if not kw[k]]
    if missing:
        raise ValueError(f"judge (openai_http): {', '.join(missing)} required")
    return OpenAIHTTPBackend(**kw)


# ---------------------------------------------------------------------------- cache


def cache_key(prompt_sha: str, backend: JudgeBackend) -> str:
    """sha256 over the prompt's sha256, the backend name and its canonical parameters."""
    text = canonical_json({"prompt_sha256": prompt_sha, "backend": backend.name, "params": backend.params()})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cache_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.json"


def read_cached(cache_dir: Path | None, key: str) -> tuple[JudgeReply, int] | None:
    """(reply, attempts) stored under ``key``, or None (missing or unreadable: then re-queried)."""
    if cache_dir is None:
        return None
    path = _cache_file(cache_dir, key)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return JudgeReply.from_dict(data["reply"]), int(data.get("attempts", 1))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("judge cache: ignoring unreadable %s (%s)", path, exc)
        return None


def write_cached(cache_dir: Path | None, key: str, reply: JudgeReply, attempts: int, meta: Mapping[str, Any]) -> None:
    """Store one reply (atomically); replies with a transport error are not stored."""
    if cache_dir is None or reply.error is not None:
        return
    record = {"key": key, "reply": reply.to_dict(), "attempts": attempts, "written": time.time(), **meta}
    with atomic_path(_cache_file(cache_dir, key)) as tmp:
        tmp.write_text(json.dumps(record, ensure_ascii=False, sort_keys=True), encoding="utf-8")


# ---------------------------------------------------------------------------- runner


def _episode_groups(episodes: pd.DataFrame, seed: int) -> dict[int, pd.DataFrame]:
    """The block's episodes by task id (sorted); every row must belong to ``seed``."""
    if "task_id" not in episodes.columns:
        raise ValueError("judge: the episodes table has no task_id column")
    if "seed" in episodes.columns and len(episodes):
        seeds = sorted({int(s) for s in episodes["seed"].unique()})
        if seeds != [int(seed)]:
            raise ValueError(f"judge: block of seed {seed} but the episodes hold seed(s) {seeds}")
    return {int(t): g for t, g in episodes.groupby("task_id", sort=True)}


def judge_block(
    tasks: pd.DataFrame,
    episodes: pd.DataFrame,
    backend: JudgeBackend,
    style: str,
    parse_rule: str,
    max_attempts: int,
    cache_dir: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    pair: str,
    model1: str,
    model2: str,
    seed: int,
    progress: bool = True,
    system_message: str | None = DEFAULT_SYSTEM_MESSAGE,
) -> pd.DataFrame:
    """Judge every episode of one block and write its evaluation table to ``out``; see the module docstring.

    Returns the table (``reply_parsing.EVAL_COLUMNS``, 14 rows per episode, more
    when a reply has extra keys).
    Backend failures never raise: they are recorded as invalid rows with the
    error text. A constrained backend must have been built for ``style``.
    """
    from tqdm.auto import tqdm

    from syncr2.social.judge_prompt import judge_messages, prompt_sha256
    from syncr2.social.reply_parsing import eval_frame, eval_rows

    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    if backend.schema_style is not None and backend.schema_style != style:
        raise ValueError(f"judge: the backend's JSON schema is for style {backend.schema_style!r}, prompts are {style!r}")
    cache = Path(cache_dir) if cache_dir is not None else None
    if "task_id" not in tasks.columns:
        raise ValueError("judge: the task table has no task_id column")
    task_rows = {int(r["task_id"]): r for r in tasks.to_dict("records")}
    groups = _episode_groups(episodes, seed)
    absent = sorted(set(groups) - set(task_rows))
    if absent:
        raise ValueError(f"judge: episodes of task(s) {absent} have no row in the task table")

    params_json = canonical_json(backend.params())
    started = time.monotonic()
    # Per episode: messages, prompt sha, cache key, and the final (reply, parsed, attempts, from_cache).
    items: dict[int, dict[str, Any]] = {}
    for tid, ep in groups.items():
        messages = judge_messages(task_rows[tid], ep, style, system_message)
        sha = prompt_sha256(messages)
        items[tid] = {"messages": messages, "sha": sha, "key": cache_key(sha, backend), "from_cache": False}

    bar = tqdm(total=len(items), desc=f"judge {pair} seed {seed}", disable=not progress, leave=False)
    pending = _use_cache(items, cache, parse_rule, style, bar)
    n_cached = len(items) - len(pending)
    if n_cached:
        logger.info("judge %s seed %d: %d of %d episodes valid in the cache", pair, seed, n_cached, len(items))
    meta = {"backend": backend.name, "params_json": params_json}
    n_queries = _query(backend, items, pending, cache, parse_rule, style, max_attempts, meta, bar,
                       f"judge {pair} seed {seed}")
    bar.close()
    rows: list[dict[str, Any]] = []
    n_valid = 0
    for tid, it in items.items():
        reply, parsed = it["reply"], it["parsed"]
        n_valid += parsed.status == "valid"
        rows.extend(eval_rows(parsed, {
            "pair": pair, "model1": model1, "model2": model2, "seed": int(seed), "task_id": tid,
            "raw_content": reply.content, "reasoning_content": reply.reasoning, "finish_reason": reply.finish_reason,
            "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "prompt_sha256": it["sha"], "backend": backend.name, "params_json": params_json, "style": style,
            "parse_rule": parse_rule, "attempts": int(it["attempts"]), "error": reply.error,
        }))
    frame = eval_frame(rows)
    write_parquet(frame, out)
    logger.info(
        "judge %s seed %d: %d episodes, %d valid, %d invalid, %d from cache, %d queried, %.1f s -> %s",
        pair, seed, len(items), n_valid, len(items) - n_valid, n_cached, n_queries, time.monotonic() - started, out,
    )
    return frame


def _use_cache(items: dict[int, dict[str, Any]], cache: Path | None, parse_rule: str, style: str,
               bar: Any) -> list[int]:
    """Take every valid cached reply into ``items``; the task ids still to query."""
    from syncr2.social.reply_parsing import parse_reply

    pending: list[int] = []
    for tid, it in items.items():
        hit = read_cached(cache, it["key"])
        if hit is not None:
            reply, attempts = hit
            parsed = parse_reply(reply.content, reply.finish_reason, parse_rule, style)
            if parsed.status == "valid":
                it.update(reply=reply, parsed=parsed, attempts=attempts, from_cache=True)
                bar.update(1)
                continue
        pending.append(tid)
    return pending


def _query(backend: JudgeBackend, items: dict[int, dict[str, Any]], pending: list[int], cache: Path | None,
           parse_rule: str, style: str, max_attempts: int, meta: Mapping[str, str], bar: Any, what: str) -> int:
    """Ask the backend for ``pending`` in batches, again for invalid replies up to ``max_attempts``; every
    reply is cached and kept in ``items`` (the last one counts). Returns the number of queries."""
    from syncr2.social.reply_parsing import parse_reply

    n_queries = 0
    step = max(1, int(getattr(backend, "batch_size", 1)))
    for attempt in range(1, max_attempts + 1):
        still: list[int] = []
        for start in range(0, len(pending), step):
            chunk = pending[start:start + step]
            replies = backend.complete_batch([items[t]["messages"] for t in chunk])
            n_queries += len(chunk)
            for tid, reply in zip(chunk, replies):
                parsed = parse_reply(reply.content, reply.finish_reason, parse_rule, style)
                it = items[tid]
                it.update(reply=reply, parsed=parsed, attempts=attempt)
                write_cached(cache, it["key"], reply, attempt, {"prompt_sha256": it["sha"], **meta})
                if parsed.status == "valid" or attempt == max_attempts:
                    bar.update(1)
                else:
                    still.append(tid)
                logger.debug("%s task %d attempt %d: %s%s", what, tid, attempt, parsed.status,
                             f" ({reply.error})" if reply.error else "")
        pending = still
        if not pending:
            break
    return n_queries


def run_judge(settings: Mapping[str, Any], runtime: Mapping[str, Any], tasks_path: str | os.PathLike[str],
              episodes_path: str | os.PathLike[str], pair: str, seed: int, out: str | os.PathLike[str],
              cache_dir: str | os.PathLike[str] | None = None, progress: bool = True) -> pd.DataFrame:
    """Judge one block from the judge's result ``settings`` (backend, style, parse rule, attempts, system
    message, generation) and ``runtime`` (device, batches, server); see :func:`judge_block`."""
    settings = dict(settings)
    style = settings.pop("style", "authors")
    parse_rule = settings.pop("parse_rule", "authors")
    max_attempts = int(settings.pop("max_attempts", 1))
    system_message = settings.pop("system_message", DEFAULT_SYSTEM_MESSAGE)
    model1, sep, model2 = str(pair).partition("__")
    if not sep:
        raise ValueError(f"judge: the pair must be m1__m2, got {pair!r}")
    backend = make_backend({**settings, **runtime}, style=style)
    return judge_block(pd.read_parquet(tasks_path), pd.read_parquet(episodes_path), backend, style, parse_rule,
                       max_attempts, cache_dir, out, pair, model1, model2, int(seed), progress=progress,
                       system_message=system_message)
