"""Representation shards: round trip, column projection, provenance, and every refusal."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from syncr2.core.shards import ShardError, ShardMeta, check_agree, open_shard, write_shard


def meta(**kw):
    base = dict(model_key="m", model_path="/models/m", revision="abc", dtype="float32", n_layers=3, hidden_size=4)
    base.update(kw)
    return ShardMeta(**base)


def index(n):
    return pd.DataFrame({"task_id": np.arange(n) // 2, "seed": 0, "turn": (np.arange(n) % 2) * 2, "speaker": 1})


def test_round_trip_and_layer_projection(tmp_path):
    reps = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)
    path = write_shard(tmp_path / "s.parquet", index(5), reps, meta())
    shard = open_shard(path, model_key="m", dtype="float32")
    assert shard.meta == meta()
    pd.testing.assert_frame_equal(shard.index(), index(5).astype({"task_id": "int32", "seed": "int32", "turn": "int16", "speaker": "int8"}))
    for layer in range(3):
        np.testing.assert_array_equal(shard.layer(layer), reps[:, layer])
    # one layer = one column: the file stores l00..l02 separately
    assert pq.ParquetFile(path).schema_arrow.names == ["task_id", "seed", "turn", "speaker", "l00", "l01", "l02"]
    assert not list(tmp_path.glob(".*tmp*"))


def test_refuses_other_model_dtype_protocol(tmp_path):
    path = write_shard(tmp_path / "s.parquet", index(2), np.zeros((2, 3, 4)), meta())
    for field, value in [("model_key", "other"), ("dtype", "bfloat16"), ("protocol_version", "0")]:
        with pytest.raises(ShardError, match=rf"s\.parquet.*'{field}'"):
            open_shard(path, **{field: value})


def test_truncated_file(tmp_path):
    path = write_shard(tmp_path / "s.parquet", index(4), np.ones((4, 3, 4)), meta())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=r"s\.parquet.*truncated or corrupt"):
        open_shard(path)


def test_missing_layer_column_and_metadata(tmp_path):
    path = write_shard(tmp_path / "s.parquet", index(2), np.ones((2, 3, 4)), meta())
    table = pq.read_table(path)
    pq.write_table(table.drop(["l01"]), tmp_path / "nolayer.parquet")
    with pytest.raises(ShardError, match=r"nolayer\.parquet.*'l01' is missing"):
        open_shard(tmp_path / "nolayer.parquet")
    pq.write_table(table.replace_schema_metadata({}), tmp_path / "nometa.parquet")
    with pytest.raises(ShardError, match=r"nometa\.parquet.*metadata 'syncr2' is missing"):
        open_shard(tmp_path / "nometa.parquet")
    with pytest.raises(ShardError, match="does not exist"):
        open_shard(tmp_path / "absent.parquet")


def test_writer_checks_shapes_and_leaves_no_partial_file(tmp_path):
    with pytest.raises(ShardError, match="L=2, D=4 but metadata says L=3"):
        write_shard(tmp_path / "s.parquet", index(2), np.ones((2, 2, 4)), meta())
    with pytest.raises(ShardError, match="index has 3 rows"):
        write_shard(tmp_path / "s.parquet", index(3), np.ones((2, 3, 4)), meta())
    assert list(tmp_path.iterdir()) == []


PROVENANCE = dict(chat_template_sha256="ab" * 32, date_string="26 Jul 2024", temperature=0.7, top_k=50,
                  top_p=0.9, stop_at_newline=True, max_new_tokens=300, torch_version="2.13.0",
                  transformers_version="5.17.0")


def test_provenance_round_trip_and_old_shards(tmp_path):
    full = meta(**PROVENANCE)
    path = write_shard(tmp_path / "s.parquet", index(2), np.zeros((2, 3, 4)), full)
    assert open_shard(path, date_string="26 Jul 2024", top_p=0.9).meta == full
    with pytest.raises(ShardError, match=r"s\.parquet.*'temperature' is 0.7, expected 1.0"):
        open_shard(path, temperature=1.0)
    # a shard written before these fields existed: readable, the fields are None
    table = pq.read_table(path)
    old = {k: v for k, v in json.loads(table.schema.metadata[b"syncr2"]).items() if k not in PROVENANCE}
    pq.write_table(table.replace_schema_metadata({b"syncr2": json.dumps(old).encode()}), tmp_path / "old.parquet")
    assert open_shard(tmp_path / "old.parquet").meta == meta()
    assert all(getattr(meta(), k) is None for k in PROVENANCE)


def test_check_agree_names_field_values_and_files(tmp_path):
    a = open_shard(write_shard(tmp_path / "a.parquet", index(2), np.zeros((2, 3, 4)), meta(**PROVENANCE)))
    b_meta = meta(**{**PROVENANCE, "date_string": "01 Jan 2025"})
    b = open_shard(write_shard(tmp_path / "b.parquet", index(2), np.zeros((2, 3, 4)), b_meta))
    check_agree(a, b, ("temperature", "top_p"), "test shards")
    with pytest.raises(ShardError, match=r"'date_string' is '26 Jul 2024' in .*a\.parquet but '01 Jan 2025' in .*b\.parquet"):
        check_agree(a, b, ShardMeta.PAIR_FIELDS, "test shards")
