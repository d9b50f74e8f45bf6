"""The OpenAI-compatible judge client against real servers on 127.0.0.1 (no mocks).

* ``transformers serve`` on a tiny random-weight checkpoint: a real
  OpenAI-compatible chat-completions server, offline.
* :class:`ScriptedServer`: a small ``http.server`` that misbehaves on purpose
  (5xx, 429, slow replies, null content, malformed bodies, truncation) and
  counts the requests it receives, so retries and timeouts are checked by
  what the server saw.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from syncr2.social.judge_backends import JudgeReply, OpenAIHTTPBackend
from syncr2.social.judge_prompt import DIMENSIONS, RANGES
from syncr2.social.reply_parsing import parse_reply
from syncr2.simulation.tiny_models import build_from_spec

TINY_SPEC = {"arch": "llama", "n_layers": 2, "hidden_size": 64, "n_heads": 4, "n_kv_heads": 2,
             "intermediate_size": 128, "seed": 5}
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Please rate this conversation between Ana and Ben."}]


# ----------------------------------------------------------------- scripted server

def valid_reply_text(style: str = "authors") -> str:
    """A well-formed judge reply (every dimension in range)."""
    agent = {d: [f"reason for {d}", RANGES[d][1] if RANGES[d][1] > 0 else RANGES[d][0] // 2] for d in DIMENSIONS}
    keys = ("agent_1_evaluation", "agent_2_evaluation") if style == "authors" else ("agent_1", "agent_2")
    obj: dict[str, Any] = {k: agent for k in keys}
    return json.dumps(obj if style == "authors" else {"evaluations": obj})


def completion(content: str | None, finish_reason: str = "stop", reasoning: str | None = None) -> dict[str, Any]:
    """A chat-completion body as vLLM sends it."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {"id": "x", "object": "chat.completion", "model": "scripted",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


#: action -> (status, body, delay in seconds)
Action = tuple[int, bytes, float]


def act(name: str) -> Action:
    """The server's answer for a named behaviour."""
    if name == "ok":
        return 200, json.dumps(completion(valid_reply_text(), reasoning="thinking...")).encode(), 0.0
    if name == "garbage":
        return 200, json.dumps(completion("I would rather not score this.")).encode(), 0.0
    if name == "null":
        return 200, json.dumps(completion(None, reasoning="all reasoning, no answer")).encode(), 0.0
    if name == "length":
        return 200, json.dumps(completion(valid_reply_text()[:120], finish_reason="length")).encode(), 0.0
    if name == "malformed":
        return 200, b'{"choices": [{"message": {"content": "{\\"agent', 0.0
    if name == "no_choices":
        return 200, b'{"error": {"message": "model overloaded"}}', 0.0
    if name in ("500", "503", "429", "400"):
        return int(name), b'{"error": "scripted failure"}', 0.0
    if name == "slow":
        return 200, json.dumps(completion(valid_reply_text())).encode(), 3.0
    raise ValueError(name)


class ScriptedServer:
    """An OpenAI-like server on 127.0.0.1 (port 0) whose answers come from a responder.

    ``responder(n, body)`` gets the request's 1-based index and its parsed
    JSON body and returns an :data:`Action`. ``requests`` keeps every body
    received, in order (the count the tests assert on).
    """

    def __init__(self, responder: Callable[[int, dict[str, Any]], Action]) -> None:
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer.requests.append(body)
                    outer.auth_headers.append(self.headers.get("Authorization"))
                    n = len(outer.requests)
                status, payload, delay = outer.responder(n, body)
                try:
                    if delay:
                        time.sleep(delay)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def script(*names: str, then: str = "ok") -> Callable[[int, dict[str, Any]], Action]:
    """A responder that plays ``names`` in order, then ``then`` forever."""
    return lambda n, body: act(names[n - 1] if n <= len(names) else then)


def backend(url: str, **kw: Any) -> OpenAIHTTPBackend:
    """A client with short timeouts and backoff for tests."""
    settings: dict[str, Any] = {"model": "scripted", "timeout_s": 5.0, "max_retries": 3, "backoff_s": 0.01,
                                "backoff_max_s": 0.05, "max_tokens": 64}
    settings.update(kw)
    return OpenAIHTTPBackend(url, **settings)


def test_request_body_and_reply_fields():
    with ScriptedServer(script("ok")) as srv:
        b = backend(srv.base_url, reasoning_effort="high", response_format={"type": "json_object"})
        reply = b.complete(MESSAGES)
    assert len(srv.requests) == 1 and b.n_requests == 1
    body = srv.requests[0]
    assert body["model"] == "scripted" and body["messages"] == MESSAGES
    assert body["temperature"] == 0 and body["seed"] == 0 and body["top_p"] == 1 and body["n"] == 1
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body
    assert body["reasoning_effort"] == "high" and body["response_format"] == {"type": "json_object"}
    assert reply.error is None and reply.finish_reason == "stop"
    assert reply.reasoning == "thinking..." and (reply.prompt_tokens, reply.completion_tokens) == (11, 7)
    assert parse_reply(reply.content, reply.finish_reason, "strict").status == "valid"


def test_optional_fields_left_out_and_max_tokens_name():
    with ScriptedServer(script("ok")) as srv:
        backend(srv.base_url, token_limit_field="max_tokens", seed=None).complete(MESSAGES)
    body = srv.requests[0]
    assert body["max_tokens"] == 64 and "max_completion_tokens" not in body
    assert "seed" not in body and "reasoning_effort" not in body and "response_format" not in body


def test_api_key_from_env_never_in_params(monkeypatch):
    monkeypatch.setenv("SYNCR2_TEST_JUDGE_KEY", "sk-test-123")
    with ScriptedServer(script("ok")) as srv:
        b = backend(srv.base_url, api_key_env="SYNCR2_TEST_JUDGE_KEY")
        b.complete(MESSAGES)
    assert srv.auth_headers == ["Bearer sk-test-123"]
    assert "sk-test-123" not in b.params_json()
    monkeypatch.delenv("SYNCR2_TEST_JUDGE_KEY")
    with ScriptedServer(script("ok")) as srv:
        reply = backend(srv.base_url, api_key_env="SYNCR2_TEST_JUDGE_KEY").complete(MESSAGES)
    assert reply.content is None and "SYNCR2_TEST_JUDGE_KEY" in reply.error and srv.requests == []


def test_5xx_and_429_are_retried_then_succeed():
    with ScriptedServer(script("500", "503", "429")) as srv:
        b = backend(srv.base_url, max_retries=3)
        reply = b.complete(MESSAGES)
    assert len(srv.requests) == 4 == b.n_requests  # 3 injected failures + 1 success
    assert reply.error is None and parse_reply(reply.content, reply.finish_reason, "strict").valid


def test_persistent_5xx_gives_up_after_bounded_retries():
    with ScriptedServer(script(then="500")) as srv:
        reply = backend(srv.base_url, max_retries=2).complete(MESSAGES)
    assert len(srv.requests) == 3
    assert reply.content is None and "after 3 attempts" in reply.error and "HTTP 500" in reply.error


def test_4xx_is_not_retried():
    with ScriptedServer(script("400")) as srv:
        reply = backend(srv.base_url, max_retries=3).complete(MESSAGES)
    assert len(srv.requests) == 1 and reply.content is None and "HTTP 400" in reply.error


def test_slow_reply_times_out_with_bounded_retries():
    with ScriptedServer(script(then="slow")) as srv:
        t0 = time.monotonic()
        reply = backend(srv.base_url, timeout_s=0.3, max_retries=1).complete(MESSAGES)
        elapsed = time.monotonic() - t0
    assert len(srv.requests) == 2
    assert reply.content is None and "timeout" in reply.error
    assert elapsed < 2.0  # 2 x 0.3 s + backoff, far below the server's 3 s delay


def test_slow_then_fast_recovers():
    with ScriptedServer(script("slow")) as srv:
        reply = backend(srv.base_url, timeout_s=0.3, max_retries=2).complete(MESSAGES)
    assert len(srv.requests) == 2 and reply.error is None and reply.content


def test_connection_refused_is_bounded():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    reply = backend(f"http://127.0.0.1:{port}/v1", max_retries=2).complete(MESSAGES)
    assert reply.content is None and "after 3 attempts" in reply.error
    assert time.monotonic() - t0 < 2.0


def test_null_content_recorded_invalid():
    with ScriptedServer(script("null")) as srv:
        reply = backend(srv.base_url).complete(MESSAGES)
    assert len(srv.requests) == 1 and reply.error is None
    assert reply.content is None and reply.reasoning == "all reasoning, no answer"
    parsed = parse_reply(reply.content, reply.finish_reason, "authors")
    assert parsed.status == "invalid" and "null_content" in parsed.flags


def test_malformed_body_retried_then_recorded():
    with ScriptedServer(script(then="malformed")) as srv:
        reply = backend(srv.base_url, max_retries=1).complete(MESSAGES)
    assert len(srv.requests) == 2
    assert reply.content is None and "not JSON" in reply.error
    with ScriptedServer(script("malformed")) as srv:
        reply = backend(srv.base_url, max_retries=1).complete(MESSAGES)
    assert len(srv.requests) == 2 and reply.error is None


def test_reply_without_choices_is_an_error_not_retried():
    with ScriptedServer(script("no_choices")) as srv:
        reply = backend(srv.base_url).complete(MESSAGES)
    assert len(srv.requests) == 1 and reply.content is None and "no choices" in reply.error


def test_truncated_reply_flagged():
    with ScriptedServer(script("length")) as srv:
        reply = backend(srv.base_url).complete(MESSAGES)
    assert reply.finish_reason == "length" and reply.error is None
    parsed = parse_reply(reply.content, reply.finish_reason, "strict")
    assert parsed.status == "invalid" and "truncated" in parsed.flags


def test_params_exclude_timeouts_and_retries():
    a = backend("http://127.0.0.1:1/v1", timeout_s=1, max_retries=0, backoff_s=0)
    b = backend("http://127.0.0.1:1/v1", timeout_s=99, max_retries=5, backoff_s=2, connect_timeout_s=3)
    assert a.params() == b.params()
    assert backend("http://127.0.0.1:1/v1", seed=1).params() != a.params()


# ----------------------------------------------------------------- transformers serve

def _serve_command() -> list[str] | None:
    """The ``transformers`` CLI next to this interpreter, else on PATH."""
    exe = Path(sys.executable).with_name("transformers")
    found = str(exe) if exe.exists() else shutil.which("transformers")
    return [found, "serve"] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``transformers serve`` of a tiny checkpoint on 127.0.0.1; yields (base_url, model path)."""
    cmd = _serve_command()
    if cmd is None:
        pytest.skip("the `transformers` CLI (transformers serve) is not installed")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        pytest.skip("`transformers serve` needs its serving extra: pip install 'transformers[serving]==5.17.0'")
    root = tmp_path_factory.mktemp("served")
    model_dir = build_from_spec(TINY_SPEC, root / "tiny")
    port = _free_port()
    log = open(root / "serve.log", "wb")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*cmd, str(model_dir), "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{(root / 'serve.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not healthy after 120 s:\n{(root / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1", str(model_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def test_transformers_serve_reply_greedy_and_usage(served):
    url, model = served
    b = OpenAIHTTPBackend(url, model=model, temperature=0, seed=0, top_p=1, n=1, token_limit_field="max_tokens",
                          max_tokens=24, timeout_s=60, max_retries=1, backoff_s=0.1)
    first = b.complete(MESSAGES)
    second = b.complete(MESSAGES)
    assert isinstance(first, JudgeReply) and first.error is None, first.error
    assert isinstance(first.content, str) and first.content
    assert first.content == second.content  # temperature 0 is greedy: identical requests, identical replies
    assert first.finish_reason in ("stop", "length")
    assert first.prompt_tokens and first.prompt_tokens > 0
    assert first.completion_tokens and 0 < first.completion_tokens <= 24
    assert b.n_requests == 2
    # random weights: what it says is no judge reply, and it is recorded as such
    parsed = parse_reply(first.content, first.finish_reason, "strict")
    assert parsed.status == "invalid"


def test_transformers_serve_unknown_model_is_an_error(served):
    url, _ = served
    b = OpenAIHTTPBackend(url, model="/no/such/model", token_limit_field="max_tokens", max_tokens=8,
                          timeout_s=30, max_retries=0)
    reply = b.complete(MESSAGES)
    assert reply.content is None and "HTTP 400" in reply.error and b.n_requests == 1  # a 4xx is not retried
