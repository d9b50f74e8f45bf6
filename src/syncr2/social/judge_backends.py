"""Judge backends: who answers a judge prompt.

One small interface, :class:`JudgeBackend`: ``name``, ``params()`` (the
canonical settings that can change a reply; they key the reply cache, so
device, timeouts and retry policy are NOT in them) and
``complete(messages) -> JudgeReply``. ``complete_batch`` answers several
prompts; the default loops, :class:`HFLocalBackend` batches.

* :class:`OpenAIHTTPBackend`: any OpenAI-compatible chat-completions server
  (vLLM serving gpt-oss-120b in the paper), over the standard library's
  ``http.client`` (no SDK). Transient failures (connection errors, timeouts,
  an unreadable body, HTTP 429 and 5xx) are retried a bounded number of
  times with capped exponential backoff; the final failure is returned in
  ``JudgeReply.error`` (content None), never raised.
* :class:`HFLocalBackend`: in-process transformers greedy generation of a
  local checkpoint (loaded lazily through :class:`syncr2.simulation.lm.ChatLM`,
  so device and dtype placement are the simulation's), optionally constrained
  to a JSON schema (:mod:`syncr2.social.constrained`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core.config import canonical_json

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass
class JudgeReply:
    """One judge answer as received. ``error`` set means no usable reply arrived (content is None)."""

    content: str | None
    reasoning: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JudgeReply:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


class JudgeBackend(ABC):
    """A judge model behind one call. Subclasses set ``name`` and implement ``params`` and ``complete``."""

    name: str = "abstract"
    #: How many prompts :meth:`complete_batch` should be given at once.
    batch_size: int = 1
    #: The prompt style a constrained backend's schema was built for (None: unconstrained).
    schema_style: str | None = None

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Canonical JSON-able settings that can change a reply (the cache key's backend part)."""

    @abstractmethod
    def complete(self, messages: Messages) -> JudgeReply:
        """Answer one chat prompt; failures come back as ``JudgeReply.error``."""

    def complete_batch(self, batch: Sequence[Messages]) -> list[JudgeReply]:
        """Answer several prompts, in order (default: one :meth:`complete` each)."""
        return [self.complete(m) for m in batch]

    def params_json(self) -> str:
        """:meth:`params` as canonical JSON (sorted keys, no spaces)."""
        return canonical_json(self.params())


# ---------------------------------------------------------------------------- HTTP


class _Transient(Exception):
    """A failure worth retrying (connection, timeout, 429/5xx, unreadable body)."""


class _Permanent(Exception):
    """A failure that retrying will not fix (4xx other than 429, a body without choices)."""


class OpenAIHTTPBackend(JudgeBackend):
    """Chat completions from an OpenAI-compatible server; see the module docstring.

    Request parameters set to None are left out of the request body.
    ``token_limit_field`` names the body field that carries ``max_tokens``
    (``max_completion_tokens`` for vLLM/OpenAI reasoning models, ``max_tokens``
    for servers that ignore the newer name). The API key is read from the
    environment variable ``api_key_env`` at request time and is never part of
    ``params()``. ``timeout_s`` bounds each request (connect, each socket read,
    and the whole body); ``max_retries`` transient failures are retried after
    ``backoff_s * 2**k`` seconds (capped at ``backoff_max_s``; a 429's
    Retry-After is honoured up to the same cap).
    """

    name = "openai_http"

    def __init__(
        self,
        base_url: str,
        model: str,
        temperature: float | None = 0.0,
        seed: int | None = 0,
        top_p: float | None = 1.0,
        n: int | None = 1,
        token_limit_field: str = "max_completion_tokens",
        max_tokens: int | None = None,
        reasoning_effort: str | None = None,
        response_format: Mapping[str, Any] | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 600.0,
        connect_timeout_s: float | None = None,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"judge base_url must be an http(s) URL, got {base_url!r}")
        if token_limit_field not in ("max_completion_tokens", "max_tokens"):
            raise ValueError(f"token_limit_field must be max_completion_tokens or max_tokens, got {token_limit_field!r}")
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0:
            raise ValueError("timeout_s must be > 0, max_retries and backoff_s >= 0")
        if n not in (None, 1):
            logger.warning("judge n=%s: only the first choice is kept", n)
        self.base_url = base_url.rstrip("/")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._path = (parts.path or "") + "/chat/completions"
        self.model = model
        self.temperature = temperature
        self.seed = seed
        self.top_p = top_p
        self.n = n
        self.token_limit_field = token_limit_field
        self.max_tokens = max_tokens
        self.reasoning_effort = reasoning_effort
        self.response_format = dict(response_format) if response_format is not None else None
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s if connect_timeout_s is not None else min(timeout_s, 30.0))
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        #: HTTP requests sent by this instance (all attempts), for logs and tests.
        self.n_requests = 0

    def params(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "model": self.model,
            "temperature": self.temperature,
            "seed": self.seed,
            "top_p": self.top_p,
            "n": self.n,
            "token_limit_field": self.token_limit_field,
            "max_tokens": self.max_tokens,
            "reasoning_effort": self.reasoning_effort,
            "response_format": self.response_format,
        }

    def request_body(self, messages: Messages) -> dict[str, Any]:
        """The JSON body sent for ``messages`` (None-valued parameters left out)."""
        body: dict[str, Any] = {"model": self.model, "messages": list(messages)}
        optional = {
            "temperature": self.temperature,
            "seed": self.seed,
            "top_p": self.top_p,
            "n": self.n,
            self.token_limit_field: self.max_tokens,
            "reasoning_effort": self.reasoning_effort,
            "response_format": self.response_format,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise _Permanent(f"environment variable {self.api_key_env} (judge api_key_env) is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post_once(self, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        """One POST; returns (status, headers, body) or raises _Transient on network trouble."""
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.connect_timeout_s)
        deadline = time.monotonic() + self.timeout_s
        try:
            conn.connect()
            conn.sock.settimeout(self.timeout_s)
            conn.request("POST", self._path, body=payload, headers=self._headers())
            self.n_requests += 1
            resp = conn.getresponse()
            chunks = []
            while True:
                if time.monotonic() > deadline:
                    raise _Transient(f"reply not complete after {self.timeout_s:g} s")
                chunk = resp.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, b"".join(chunks)
        except (OSError, http.client.HTTPException) as exc:  # socket.timeout is an OSError
            kind = "timeout" if isinstance(exc, socket.timeout) else type(exc).__name__
            raise _Transient(f"{kind}: {exc}") from exc
        finally:
            conn.close()

    @staticmethod
    def _reply_from_body(status: int, body: bytes) -> JudgeReply:
        """Parse a 2xx body; an unreadable one is transient, one without choices permanent."""
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise _Transient(f"HTTP {status}: body is not JSON ({exc}): {body[:200]!r}") from exc
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise _Permanent(f"HTTP {status}: reply has no choices: {body[:300]!r}")
        choice = choices[0]
        message = choice.get("message") or {}
        usage = data.get("usage") or {}
        reasoning = message.get("reasoning_content")
        if reasoning is None:
            reasoning = message.get("reasoning")
        return JudgeReply(
            content=message.get("content"),
            reasoning=reasoning,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        delay = self.backoff_s * (2 ** attempt)
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        return min(delay, self.backoff_max_s)

    def complete(self, messages: Messages) -> JudgeReply:
        try:
            payload = json.dumps(self.request_body(messages)).encode("utf-8")
            self._headers()  # fail early, without retries, on a missing API key
        except _Permanent as exc:
            return JudgeReply(content=None, error=str(exc))
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                status, headers, body = self._post_once(payload)
                if status == 429 or status >= 500:
                    retry_after = headers.get("retry-after")
                    raise _Transient(f"HTTP {status}: {body[:300]!r}")
                if status >= 300:
                    raise _Permanent(f"HTTP {status}: {body[:300]!r}")
                return self._reply_from_body(status, body)
            except _Permanent as exc:
                logger.error("judge request failed, not retried: %s", exc)
                return JudgeReply(content=None, error=str(exc))
            except _Transient as exc:
                last_error = str(exc)
                if attempt < self.max_retries:
                    delay = self._backoff(attempt, retry_after)
                    logger.warning("judge request failed (%s); retry %d/%d in %.1f s",
                                   last_error, attempt + 1, self.max_retries, delay)
                    time.sleep(delay)
        logger.error("judge request failed after %d attempts: %s", self.max_retries + 1, last_error)
        return JudgeReply(content=None, error=f"after {self.max_retries + 1} attempts: {last_error}")


# ---------------------------------------------------------------------------- local


def checkpoint_fingerprint(path: str, revision: str | None = None) -> str:
    """A stable identity of a checkpoint for the cache key, without loading it.

    A local directory: sha256 over every file's relative name and size, plus
    the contents of all files when they total at most 256 MiB (tiny models),
    else of the files under 1 MiB (configs, tokenizer, chat template). A hub
    id: the id and the requested revision (pin a revision for a stable key).
    """
    root = Path(path)
    if not root.is_dir():
        return f"hub:{path}@{revision or 'main'}"
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    total = sum(p.stat().st_size for p in files)
    h = hashlib.sha256()
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.relative_to(root).as_posix()}\0{size}\0".encode())
        if total <= 256 * 1024 * 1024 or size < 1024 * 1024:
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def prompt_seed(messages: Messages, seed: int) -> int:
    """A sampling seed of one prompt: the same prompt and seed draw the same reply in any batch."""
    digest = hashlib.sha256(f"{seed}:{canonical_json(list(messages))}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class HFLocalBackend(JudgeBackend):
    """In-process generation of a local (or cached hub) checkpoint: greedy, or seeded sampling.

    ``temperature`` > 0 samples with one generator per prompt, seeded from the
    prompt and ``seed`` (the simulation's ``RowGumbelSampler``), so replies are reproducible
    and independent of batching.

    The model is loaded on the first :meth:`complete` call, so a rerun that
    finds every reply in the cache never loads it. Prompts go through the
    tokenizer's chat template (system + user turns, generation prompt) and are
    generated ``batch_size`` at a time, left-padded, under a fresh greedy
    ``GenerationConfig`` (``do_sample=False``; the checkpoint's sampling
    defaults do not apply). Batching changes only float rounding, like the
    device, so neither is in ``params()``. ``json_schema`` turns on
    constrained decoding (llguidance). ``finish_reason`` is "stop" (an EOS
    was produced) or "length"; content is the decoded text before the EOS.
    """

    name = "hf_local"

    def __init__(
        self,
        path: str,
        max_new_tokens: int = 1024,
        json_schema: Mapping[str, Any] | None = None,
        schema_style: str | None = None,
        device: str = "auto",
        dtype: str = "float32",
        revision: str | None = None,
        batch_size: int = 1,
        chat_template: str | None = None,
        attn_implementation: str | None = None,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> None:
        from syncr2.simulation.lm import LMConfig

        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.cfg = LMConfig(
            path=str(path), revision=revision, dtype=dtype, device=device, chat_template=chat_template,
            batch_size=batch_size, max_new_tokens=max_new_tokens, temperature=0.0,
            attn_implementation=attn_implementation,
        )
        self.batch_size = int(batch_size)
        self.json_schema = dict(json_schema) if json_schema is not None else None
        self.schema_style = schema_style if json_schema is not None else None
        if self.json_schema is not None:
            from syncr2.social.constrained import require_llguidance

            require_llguidance()  # fail at configuration time, not after loading a model
        self._lm: Any = None
        self._constraint: Any = None
        self._fingerprint: str | None = None
        #: generate() calls made by this instance, for logs and tests.
        self.n_generate_calls = 0

    def params(self) -> dict[str, Any]:
        if self._fingerprint is None:
            self._fingerprint = checkpoint_fingerprint(self.cfg.path, self.cfg.revision)
        p: dict[str, Any] = {
            "path": self.cfg.path,
            "revision": self.cfg.revision,
            "checkpoint": self._fingerprint,
            "dtype": self.cfg.dtype,
            "chat_template": self.cfg.chat_template,
            "decoding": "greedy" if self.temperature == 0 else {
                "sampling": "gumbel-max, one generator per prompt", "temperature": self.temperature, "seed": self.seed},
            "max_new_tokens": self.cfg.max_new_tokens,
            "json_schema": self.json_schema,
        }
        if self.json_schema is not None:
            from syncr2.social.constrained import llguidance_version

            p["constraint"] = {"library": "llguidance", "version": llguidance_version()}
        return p

    @property
    def lm(self) -> Any:
        """The loaded :class:`ChatLM` (loaded on first use)."""
        if self._lm is None:
            from syncr2.simulation.lm import ChatLM

            logger.info("loading judge model %s (dtype %s, device %s)", self.cfg.path, self.cfg.dtype, self.cfg.device)
            self._lm = ChatLM.load(self.cfg)
            if self.json_schema is not None:
                from syncr2.social.constrained import JSONSchemaConstraint

                vocab = int(self._lm.model.get_output_embeddings().weight.shape[0])
                eos = self._lm.generation_settings()["eos_token_ids"]
                self._constraint = JSONSchemaConstraint(self._lm.tokenizer, self.json_schema, vocab, eos)
        return self._lm

    def render(self, messages: Messages) -> str:
        """The chat-template text of ``messages`` with the generation prompt."""
        lm = self.lm
        template = lm.chat_template
        if not template:
            raise ValueError(f"{self.cfg.path}: the tokenizer has no chat template; set chat_template in the judge config")
        return lm.tokenizer.apply_chat_template(
            list(messages), chat_template=template, tokenize=False, add_generation_prompt=True
        )

    def complete(self, messages: Messages) -> JudgeReply:
        return self.complete_batch([messages])[0]

    def complete_batch(self, batch: Sequence[Messages]) -> list[JudgeReply]:
        out: list[JudgeReply] = []
        for start in range(0, len(batch), self.batch_size):
            out.extend(self._generate(batch[start:start + self.batch_size]))
        return out

    def _generate(self, batch: Sequence[Messages]) -> list[JudgeReply]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        from ..simulation.lm import RowGumbelSampler

        lm = self.lm
        ids = lm.tokenize([self.render(m) for m in batch])
        width = max(len(r) for r in ids)
        pad = int(lm.tokenizer.pad_token_id)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, r in enumerate(ids):
            input_ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
        eos = lm.generation_settings()["eos_token_ids"]
        gen_cfg = GenerationConfig(
            do_sample=False, max_new_tokens=self.cfg.max_new_tokens, eos_token_id=eos, pad_token_id=pad,
        )
        processors = LogitsProcessorList()
        proc = None
        if self._constraint is not None:
            proc = self._constraint.processor(len(ids), width)
            processors.append(proc)
        if self.temperature > 0:  # after the constraint: its -inf stay -inf
            processors.append(RowGumbelSampler([prompt_seed(m, self.seed) for m in batch], self.temperature))
        from ..simulation.prefix_cache import growing_cache

        with torch.inference_mode():  # a growing cache: no copy of the long judge prompt's cache per step
            seqs = lm.model.generate(
                input_ids=input_ids.to(lm.device), attention_mask=mask.to(lm.device),
                generation_config=gen_cfg, logits_processor=processors, past_key_values=growing_cache(),
            )
        self.n_generate_calls += 1
        new = seqs[:, width:].cpu().tolist()
        eos_set = set(eos)
        replies = []
        for r, toks in enumerate(new):
            stop = next((k for k, t in enumerate(toks) if t in eos_set), None)
            kept = toks if stop is None else toks[:stop]
            replies.append(JudgeReply(
                content=lm.tokenizer.decode(kept, skip_special_tokens=True),
                reasoning=None,
                finish_reason="length" if stop is None else "stop",
                prompt_tokens=len(ids[r]),
                completion_tokens=len(toks) if stop is None else stop + 1,
                error=None,
            ))
            if proc is not None and proc.errors[r]:
                logger.warning("constrained decoding error in row %d: %s", r, proc.errors[r])
        return replies
