"""CSV ingest in segments cut at line ends, each parsed by pyarrow's threaded reader,
with the Parquet file written on a thread of its own: every row read once, in order,
whatever the segment size; an error in a later segment still names its line; the
encodings are the ones chosen for the data."""

import csv
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from app.datasets import ingest_csv, ingest_error, ingest_writer
from app.datasets.ingest import IngestError, ingest_file


def varied_rows(n: int) -> list[list[str]]:
    return [
        [
            str(i),
            f"{i * 0.37:.3f}" if i % 7 else "",
            "x" * (i % 23) or "",
            "true" if i % 2 else "false",
        ]
        for i in range(n)
    ]


def write_csv(
    path: Path, rows: list[list[str]], line_end: str = "\n", last_end: bool = True
) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=line_end)
    writer.writerow(["id", "score", "text", "flag"])
    writer.writerows(rows)
    data = text.getvalue()
    path.write_text(data if last_end else data.removesuffix(line_end))


@pytest.mark.parametrize("segment_bytes", [64, 1000, 4096, 1 << 20])
@pytest.mark.parametrize(("line_end", "last_end"), [("\n", True), ("\r\n", True), ("\n", False)])
def test_every_row_is_read_once_in_order_whatever_the_cut(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    segment_bytes: int,
    line_end: str,
    last_end: bool,
) -> None:
    monkeypatch.setattr(ingest_csv, "SEGMENT_BYTES", segment_bytes)
    source = tmp_path / "data.csv"
    write_csv(source, varied_rows(3000), line_end, last_end)
    result = ingest_file(source, "csv", tmp_path / "out.parquet")
    stored = pq.read_table(tmp_path / "out.parquet")
    expected = pacsv.read_csv(
        source, convert_options=pacsv.ConvertOptions(strings_can_be_null=True)
    )
    assert result.rows == 3000
    assert stored.column("id").to_pylist() == list(range(3000))
    for name in ("score", "text", "flag"):
        assert stored.column(name).to_pylist() == expected.column(name).to_pylist(), name


def test_a_bad_value_in_a_later_segment_names_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_csv, "SEGMENT_BYTES", 2048)
    rows = varied_rows(5000)
    rows[4321][0] = "oops"
    source = tmp_path / "data.csv"
    write_csv(source, rows)
    with pytest.raises(IngestError) as failure:
        # Types from the first 4 KiB, where `id` is a whole number.
        ingest_file(source, "csv", tmp_path / "out.parquet", infer_bytes=4096, block_bytes=4096)
    message = str(failure.value)
    # The header is line 1, so the row at index 4321 is on line 4323.
    assert message.startswith("line 4323: column 'id'"), message
    assert "'oops'" in message


def test_a_row_longer_than_the_bound_is_refused_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_error, "MAX_BLOCK_BYTES", 16_384)
    rows = [[str(i), "1", "s", "true"] for i in range(100)] + [["1", "1", "x" * 40_000, "true"]]
    source = tmp_path / "data.csv"
    write_csv(source, rows)
    with pytest.raises(IngestError, match="a row is longer than"):
        ingest_file(source, "csv", tmp_path / "out.parquet", infer_bytes=4096, block_bytes=4096)


def test_text_is_dictionary_encoded_and_numbers_are_not(tmp_path: Path) -> None:
    source = tmp_path / "data.csv"
    write_csv(source, varied_rows(2000))
    ingest_file(source, "csv", tmp_path / "out.parquet")
    row_group = pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0)
    encodings = {
        row_group.column(i).path_in_schema: set(row_group.column(i).encodings)
        for i in range(row_group.num_columns)
    }
    assert any("DICTIONARY" in e for e in encodings["text"]), encodings
    for name in ("id", "score", "flag"):
        assert not any("DICTIONARY" in e for e in encodings[name]), encodings


def test_a_failed_write_reaches_the_reader_and_the_file_is_closed(tmp_path: Path) -> None:
    schema = pa.schema([pa.field("a", pa.int64())])
    writer = ingest_writer.BackgroundWriter(tmp_path / "out.parquet", schema)
    writer.write_table(pa.table({"a": [1, 2]}))
    # A table of another schema fails on the writer's thread; the error comes back.
    writer.write_table(pa.table({"b": ["x"]}))
    with pytest.raises(ValueError, match="schema"):
        writer.close()


def test_compression_is_kept_only_where_it_pays(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).random(50_000)
    table = pa.table(
        {
            "noise": noise,
            "steps": np.repeat(np.arange(50), 1000).astype(np.int64),
            "name": ["a"] * 50_000,
        }
    )
    assert ingest_writer.compression_by_column(table) == {
        "noise": "none",
        "steps": "snappy",
        "name": "snappy",
    }
    writer = ingest_writer.BackgroundWriter(tmp_path / "out.parquet", table.schema)
    writer.write_table(table)
    writer.close()
    row_group = pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0)
    codecs = {row_group.column(i).path_in_schema: row_group.column(i).compression for i in range(3)}
    assert codecs == {"noise": "UNCOMPRESSED", "steps": "SNAPPY", "name": "SNAPPY"}
    assert pq.read_table(tmp_path / "out.parquet").equals(table)
