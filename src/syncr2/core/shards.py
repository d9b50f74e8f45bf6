"""Representation shards: Parquet files of per-turn hidden states.

One shard holds the representations ONE model recorded for one agent of one
(pair, seed, block): one row per (task_id, turn) the agent spoke, with the
index columns ``task_id, seed, turn, speaker`` and one column per decoder
block (``l00``, ``l01``, ...) holding a fixed-size list of ``D`` float32.
Reading one layer therefore reads one column. The schema metadata (key
``syncr2``) records what produced the numbers; :func:`open_shard` refuses a
shard whose metadata disagrees with what the caller expects, naming the file
and the field.

Provenance fields (all optional, None in shards written before they existed):
``chat_template_sha256`` (the chat template string actually used),
``date_string`` (the date the template saw as today), the sampling settings
in force (``temperature``, ``top_k``, ``top_p``: None when greedy;
``stop_at_newline``, ``max_new_tokens``) and the ``torch_version`` /
``transformers_version`` that computed the numbers. A passive shard records
the genuine run's sampling settings and date (the prompts it re-read were
produced under them) and its own template hash and library versions.
:func:`check_agree` refuses to combine shards that disagree on them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import PROTOCOL_VERSION
from .atomic import atomic_path

INDEX_COLUMNS = ("task_id", "seed", "turn", "speaker")
META_KEY = b"syncr2"


class ShardError(ValueError):
    """A shard is unreadable, incomplete or not the one the caller asked for."""


def layer_column(layer: int) -> str:
    """Column name of decoder block ``layer`` (0-based: block 1 is ``l00``)."""
    return f"l{layer:02d}"


@dataclass(frozen=True)
class ShardMeta:
    """What produced a shard's numbers; stored in the Parquet schema metadata."""

    model_key: str
    model_path: str
    revision: str
    dtype: str
    n_layers: int
    hidden_size: int
    kind: str = "genuine"  # genuine | passive
    protocol_version: str = PROTOCOL_VERSION
    template_hash: str = ""
    chat_template_sha256: str | None = None
    date_string: str | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    stop_at_newline: bool | None = None
    max_new_tokens: int | None = None
    torch_version: str | None = None
    transformers_version: str | None = None

    #: The sampling settings among the fields.
    SAMPLING_FIELDS: ClassVar[tuple[str, ...]] = (
        "date_string", "temperature", "top_k", "top_p", "stop_at_newline", "max_new_tokens",
    )
    #: Fields that may be absent from the JSON (defaults apply): older shards lack them.
    OPTIONAL_FIELDS: ClassVar[tuple[str, ...]] = (
        "kind", "template_hash", "chat_template_sha256", *SAMPLING_FIELDS, "torch_version", "transformers_version",
    )
    #: Fields every shard of one model (one agent: all seeds and blocks, genuine and passive) must agree on
    #: (not model_path: the same weights may sit at another path on another machine).
    MODEL_FIELDS: ClassVar[tuple[str, ...]] = (
        "model_key", "revision", "n_layers", "hidden_size", "dtype", "chat_template_sha256",
    )
    #: Fields the shards of a pair (source and target agents, genuine and passive) must agree on.
    #: top_k / top_p are not among them: they resolve per checkpoint (generation_config.json).
    PAIR_FIELDS: ClassVar[tuple[str, ...]] = (
        "protocol_version", "date_string", "temperature", "stop_at_newline", "max_new_tokens",
        "torch_version", "transformers_version",
    )

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, source: str) -> "ShardMeta":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ShardError(f"{source}: metadata '{META_KEY.decode()}' is not JSON ({exc})") from exc
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names if n not in data and n not in cls.OPTIONAL_FIELDS)
        if missing:
            raise ShardError(f"{source}: metadata lacks field(s) {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})


def check_agree(a: "Shard", b: "Shard", names: tuple[str, ...] | list[str], why: str) -> None:
    """Refuse to combine shards ``a`` and ``b`` if they differ on a metadata field in ``names``.

    The error names the field, both values and both files; ``why`` says what
    the combination is (e.g. "source and target of a pair").
    """
    for name in names:
        va, vb = getattr(a.meta, name), getattr(b.meta, name)
        if va != vb:
            raise ShardError(
                f"metadata field '{name}' is {va!r} in {a.path} but {vb!r} in {b.path}; "
                f"the {why} must agree on it"
            )


def write_shard(path: str | os.PathLike[str], index: pd.DataFrame, reps: np.ndarray, meta: ShardMeta) -> Path:
    """Write ``reps`` (n, L, D) with its ``index`` rows atomically to ``path``."""
    path = Path(path)
    reps = np.asarray(reps)
    if reps.ndim != 3:
        raise ShardError(f"{path}: representations must be (n, L, D), got shape {reps.shape}")
    n, n_layers, dim = reps.shape
    if (n_layers, dim) != (meta.n_layers, meta.hidden_size):
        raise ShardError(
            f"{path}: representations have L={n_layers}, D={dim} but metadata says "
            f"L={meta.n_layers}, D={meta.hidden_size}"
        )
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ShardError(f"{path}: index lacks column(s) {', '.join(missing)}")
    if len(index) != n:
        raise ShardError(f"{path}: index has {len(index)} rows but representations have {n}")
    arrays: list[pa.Array] = [
        pa.array(index["task_id"].to_numpy(np.int32)),
        pa.array(index["seed"].to_numpy(np.int32)),
        pa.array(index["turn"].to_numpy(np.int16)),
        pa.array(index["speaker"].to_numpy(np.int8)),
    ]
    names = list(INDEX_COLUMNS)
    flat = np.ascontiguousarray(reps, dtype=np.float32)
    for layer in range(n_layers):
        values = pa.array(np.ascontiguousarray(flat[:, layer, :]).reshape(-1))
        arrays.append(pa.FixedSizeListArray.from_arrays(values, dim))
        names.append(layer_column(layer))
    table = pa.Table.from_arrays(arrays, names=names)
    table = table.replace_schema_metadata({META_KEY: meta.to_json()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


class Shard:
    """An opened shard: metadata and index eagerly, layers on demand."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.exists():
            raise ShardError(f"{self.path}: shard does not exist")
        try:
            self._file = pq.ParquetFile(self.path)
            schema = self._file.schema_arrow
        except (pa.ArrowException, OSError) as exc:
            raise ShardError(f"{self.path}: not a readable Parquet shard (truncated or corrupt?): {exc}") from exc
        raw = (schema.metadata or {}).get(META_KEY)
        if raw is None:
            raise ShardError(f"{self.path}: schema metadata '{META_KEY.decode()}' is missing")
        self.meta = ShardMeta.from_json(raw, str(self.path))
        self.columns = set(schema.names)
        for col in INDEX_COLUMNS:
            if col not in self.columns:
                raise ShardError(f"{self.path}: index column '{col}' is missing")
        for layer in range(self.meta.n_layers):
            if layer_column(layer) not in self.columns:
                raise ShardError(
                    f"{self.path}: layer column '{layer_column(layer)}' is missing "
                    f"(metadata says L={self.meta.n_layers})"
                )

    def check(self, **expected: Any) -> "Shard":
        """Refuse the shard if a metadata field differs from ``expected``."""
        for name, want in expected.items():
            if want is None:
                continue
            if not hasattr(self.meta, name):
                raise ShardError(f"{self.path}: unknown metadata field '{name}'")
            have = getattr(self.meta, name)
            if have != want:
                raise ShardError(f"{self.path}: metadata field '{name}' is {have!r}, expected {want!r}")
        return self

    def _read(self, columns: list[str]) -> pa.Table:
        try:
            return self._file.read(columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise ShardError(f"{self.path}: cannot read column(s) {columns}: {exc}") from exc

    def index(self) -> pd.DataFrame:
        """The index columns as a DataFrame (row order = storage order)."""
        return self._read(list(INDEX_COLUMNS)).to_pandas()

    def layer(self, layer: int) -> np.ndarray:
        """Representations of decoder block ``layer`` as a float32 (n, D) array."""
        if not 0 <= layer < self.meta.n_layers:
            raise ShardError(f"{self.path}: layer {layer} out of range 0..{self.meta.n_layers - 1}")
        col = self._read([layer_column(layer)]).column(0).combine_chunks()
        dim = self.meta.hidden_size
        if col.type.list_size != dim:
            raise ShardError(f"{self.path}: column '{layer_column(layer)}' holds {col.type.list_size} floats, metadata says D={dim}")
        return col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)


def open_shard(path: str | os.PathLike[str], **expected: Any) -> Shard:
    """Open a shard and check its metadata against ``expected`` fields."""
    return Shard(path).check(**expected)
