"""Ingest on real files: formats, delimiters, schema inference, and errors that name
the line or column at fault."""

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.datasets.formats import UnsupportedFormat, detect_format
from app.datasets.ingest import IngestError, ingest_file

# With the statistics of the values present: a boolean counts as 0/1, text counts its
# distinct values.
EXPECTED_COLUMNS = [
    {"name": "id", "dtype": "int", "missing": 0, "min": 1.0, "max": 3.0, "mean": 2.0},
    {"name": "score", "dtype": "float", "missing": 1, "min": 0.5, "max": 2.5, "mean": 1.5},
    {"name": "city", "dtype": "string", "missing": 1, "distinct": 2},
    {
        "name": "active",
        "dtype": "bool",
        "missing": 0,
        "min": 0.0,
        "max": 1.0,
        "mean": 0.666666666667,
    },
]


def ingest(tmp_path: Path, data: bytes, fmt: str, **options: int):  # type: ignore[no-untyped-def]
    source = tmp_path / f"source.{fmt}"
    source.write_bytes(data)
    destination = tmp_path / "out.parquet"
    return ingest_file(source, fmt, destination, **options), destination


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiters_are_detected(tmp_path: Path, delimiter: str) -> None:
    rows = ["id,score,city,active", "1,0.5,lima,true", "2,,oslo,false", "3,2.5,,true"]
    data = "\n".join(r.replace(",", delimiter) for r in rows).encode() + b"\n"
    result, destination = ingest(tmp_path, data, "csv")
    assert result.rows == 3
    assert result.columns == EXPECTED_COLUMNS
    table = pq.read_table(destination)
    assert table.column("city").to_pylist() == ["lima", "oslo", None]
    assert table.column("id").type == pa.int64()


def test_json_lines(tmp_path: Path) -> None:
    data = (
        b'{"id": 1, "score": 0.5, "city": "lima", "active": true}\n'
        b'{"id": 2, "score": null, "city": "oslo", "active": false}\n'
        b'{"id": 3, "score": 2.5, "active": true}\n'
    )
    result, _ = ingest(tmp_path, data, "jsonl")
    assert result.rows == 3
    assert result.columns == EXPECTED_COLUMNS


def test_parquet_keeps_its_types_and_maps_the_rest_to_text(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "score": [0.5, None, 2.5],
            "city": ["lima", "oslo", None],
            "active": [True, False, True],
            "when": pa.array([0, 1, 2], pa.timestamp("s")),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    result, destination = ingest(tmp_path, sink.getvalue(), "parquet")
    assert result.columns[:4] == EXPECTED_COLUMNS
    assert result.columns[4] == {"name": "when", "dtype": "string", "missing": 0, "distinct": 3}
    assert pq.read_table(destination).column("id").type == pa.int64()


def test_ragged_row_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="line 4: expected 3 fields, found 2"):
        ingest(tmp_path, b"a,b,c\n1,2,3\n4,5,6\n7,8\n", "csv")


def test_value_of_another_type_after_the_first_block_names_line_and_column(
    tmp_path: Path,
) -> None:
    lines = ["n,label"] + [f"{i},x" for i in range(5000)] + ["oops,x"] + ["1,x"] * 10
    data = ("\n".join(lines) + "\n").encode()
    with pytest.raises(IngestError) as failure:
        ingest(tmp_path, data, "csv", infer_bytes=4096, block_bytes=4096)
    message = str(failure.value)
    assert "line 5002" in message
    assert "column 'n'" in message
    assert "'oops'" in message and "int" in message


def test_header_only_has_no_rows(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no data rows"):
        ingest(tmp_path, b"a,b\n", "csv")


def test_duplicate_column_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="duplicate column"):
        ingest(tmp_path, b"a,a\n1,2\n", "csv")


@pytest.mark.parametrize(
    ("filename", "head", "expected"),
    [
        ("data.csv", b"a,b\n1,2\n", "csv"),
        ("data.tsv", b"a\tb\n1\t2\n", "csv"),
        ("data.jsonl", b'{"a": 1}\n', "jsonl"),
        ("upload", b'{"a": 1}\n', "jsonl"),
        ("upload", b"a,b\n1,2\n", "csv"),
        ("data.parquet", b"PAR1\x15\x04", "parquet"),
        ("noext", b"PAR1\x15\x04", "parquet"),
    ],
)
def test_format_comes_from_name_and_content(filename: str, head: bytes, expected: str) -> None:
    assert detect_format(filename, head) == expected


@pytest.mark.parametrize(
    ("filename", "head", "reason"),
    [
        ("data.csv", b"PK\x03\x04rest", "zip"),
        ("data.csv", b"\x89PNG\r\n", "PNG"),
        ("model.pkl", b"\x80\x04\x95", "pickle"),
        ("data.parquet", b"a,b\n1,2\n", "PAR1"),
        ("data.csv", b"PAR1\x15\x04", "Parquet"),
        ("data.bin", b"\x00\x01\x02\xff\xfe" * 10, "UTF-8"),
    ],
)
def test_files_that_are_not_tables_are_refused(filename: str, head: bytes, reason: str) -> None:
    with pytest.raises(UnsupportedFormat, match=reason):
        detect_format(filename, head)


def test_ragged_row_deep_in_the_file_names_its_line(tmp_path: Path) -> None:
    lines = ["a,b,c"] + [f"{i},{i},{i}" for i in range(20_000)] + ["7,8"] + ["1,2,3"] * 5
    data = ("\n".join(lines) + "\n").encode()
    with pytest.raises(IngestError, match="line 20002: expected 3 fields, found 2"):
        ingest(tmp_path, data, "csv", infer_bytes=4096, block_bytes=4096)


def test_distinct_text_values_are_counted_up_to_the_cap_then_given_up(tmp_path: Path) -> None:
    from app.datasets.column_stats import DISTINCT_CAP

    many = [f"v{i}" for i in range(DISTINCT_CAP + 1)]
    rows = ["few,many,empty"] + [f"{'ab'[i % 2]},{v}," for i, v in enumerate(many)]
    result, _ = ingest(tmp_path, "\n".join(rows).encode() + b"\n", "csv", block_bytes=256)
    few, counted, empty = result.columns
    assert few["distinct"] == 2 and counted["distinct"] is None
    # A column with no value at all has no statistics to give.
    assert empty["missing"] == len(many)
    assert empty.get("min") is None and empty.get("mean") is None
