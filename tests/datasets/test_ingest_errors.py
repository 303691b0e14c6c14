"""Ingest errors name what a person can fix: the file's line (counting the header as
line 1, blank lines and lines inside quoted values included) and the column, even
when pyarrow reads the file in blocks and counts rows per block.

Small block sizes push the fault past the first blocks, where pyarrow's own row
numbers stop matching the file's lines.
"""

import io
import json
import pickle
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from app.datasets import ingest_error
from app.datasets.formats import UnsupportedFormat, detect_format
from app.datasets.ingest import IngestError, IngestResult, ingest_file

SMALL = {"infer_bytes": 4096, "block_bytes": 4096}


def ingest(tmp_path: Path, data: bytes, fmt: str, **sizes: int) -> IngestResult:
    source = tmp_path / f"source.{fmt}"
    source.write_bytes(data)
    return ingest_file(source, fmt, tmp_path / "out.parquet", **sizes)


def refusal(tmp_path: Path, data: bytes, fmt: str, **sizes: int) -> str:
    with pytest.raises(IngestError) as failure:
        ingest(tmp_path, data, fmt, **sizes)
    return str(failure.value)


def csv_with(bad_line: str, *, good_rows: int = 3000, header: str = "n,x") -> bytes:
    """A CSV whose `bad_line` is line good_rows + 2 (the header is line 1)."""
    lines = [header] + [f"{i},{i}.5" for i in range(good_rows)] + [bad_line] + ["1,2.5"] * 3
    return ("\n".join(lines) + "\n").encode()


def jsonl_with(bad_line: str, *, good_rows: int = 3000) -> bytes:
    lines = [json.dumps({"n": i, "x": i + 0.5, "s": "a"}) for i in range(good_rows)]
    lines += [bad_line] + [json.dumps({"n": 1, "x": 2.5, "s": "b"})] * 3
    return ("\n".join(lines) + "\n").encode()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


# Non-finite and float32-overflowing values: refused, naming line and column.


@pytest.mark.parametrize("value", ["inf", "-inf", "1e400", "Infinity", "+INF"])
def test_csv_infinity_is_refused_naming_line_and_column(tmp_path: Path, value: str) -> None:
    message = refusal(tmp_path, csv_with(f"7,{value}"), "csv", **SMALL)
    assert message.startswith("line 3002: column 'x': ")
    assert "infinite" in message


def test_csv_infinity_in_the_first_block_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, b"n,x\n1,0.5\n2,inf\n", "csv")
    assert message.startswith("line 3: column 'x': inf is infinite")


def test_csv_float32_overflow_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, csv_with("7,1e308"), "csv", **SMALL)
    assert message.startswith("line 3002: column 'x': 1e+308 is beyond ±3.4e38")


def test_csv_largest_float32_magnitude_is_kept(tmp_path: Path) -> None:
    result = ingest(tmp_path, b"n,x\n1,3.4e38\n2,-3.4e38\n3,1e-300\n", "csv")
    assert result.columns[1] == {"name": "x", "dtype": "float", "missing": 0, "min": -3.4e38,
                                 "max": 3.4e38, "mean": 3.33333333333e-301}  # fmt: skip


def test_csv_nan_is_a_missing_value(tmp_path: Path) -> None:
    result = ingest(tmp_path, b"n,x\n1,nan\n2,NaN\n3,0.5\n", "csv")
    # NaN is neither counted in nor breaks the statistics.
    assert result.columns[1] == {"name": "x", "dtype": "float", "missing": 2, "min": 0.5,
                                 "max": 0.5, "mean": 0.5}  # fmt: skip


@pytest.mark.parametrize(
    ("value", "words"),
    [("Infinity", "infinite"), ("-Infinity", "infinite"), ("1e400", "infinite"),
     ("1e308", "beyond ±3.4e38")],
)  # fmt: skip
def test_jsonl_out_of_range_numbers_are_refused(tmp_path: Path, value: str, words: str) -> None:
    bad = f'{{"n": 7, "x": {value}, "s": "a"}}'
    message = refusal(tmp_path, jsonl_with(bad), "jsonl", **SMALL)
    assert message.startswith("line 3001: ")
    assert "'x'" in message and words in message


def test_jsonl_nan_is_counted_missing_and_stored_as_null(tmp_path: Path) -> None:
    data = b'{"x": 0.5}\n{"x": NaN}\n{"x": null}\n'
    result = ingest(tmp_path, data, "jsonl")
    assert result.columns == [
        {"name": "x", "dtype": "float", "missing": 2, "min": 0.5, "max": 0.5, "mean": 0.5}
    ]
    assert pq.read_table(tmp_path / "out.parquet").column("x").to_pylist() == [0.5, None, None]


def test_parquet_infinity_names_the_row_and_column(tmp_path: Path) -> None:
    table = pa.table({"id": [1, 2, 3, 4], "x": [0.5, 1.5, float("-inf"), 2.0]})
    message = refusal(tmp_path, parquet_bytes(table), "parquet")
    assert message.startswith("row 3: column 'x': -inf is infinite")


def test_parquet_float32_overflow_names_the_row(tmp_path: Path) -> None:
    table = pa.table({"x": [0.5, 1e300]})
    assert refusal(tmp_path, parquet_bytes(table), "parquet").startswith(
        "row 2: column 'x': 1e+300 is beyond ±3.4e38"
    )


def test_parquet_nan_is_counted_missing_and_stored_as_null(tmp_path: Path) -> None:
    table = pa.table({"x": [0.5, float("nan"), None, 2.0]})
    result = ingest(tmp_path, parquet_bytes(table), "parquet")
    assert result.columns == [
        {"name": "x", "dtype": "float", "missing": 2, "min": 0.5, "max": 2.0, "mean": 1.25}
    ]
    stored = pq.read_table(tmp_path / "out.parquet").column("x").to_pylist()
    assert stored == [0.5, None, None, 2.0]


def test_parquet_value_that_does_not_fit_its_column_names_the_row(tmp_path: Path) -> None:
    table = pa.table({"u": pa.array([1, 2, 2**63], pa.uint64())})
    message = refusal(tmp_path, parquet_bytes(table), "parquet")
    assert message.startswith("row 3: column 'u': cannot read 9223372036854775808 as int")


# Long rows: read with larger blocks instead of failing.


def test_csv_with_a_2_mb_field_ingests(tmp_path: Path) -> None:
    # Past the 4 MiB inference block, so the streaming reader meets the long row.
    lines = ["n,text"] + [f"{i},short" for i in range(600_000)]
    lines += ["1," + "x" * 2_000_000, "2,after"]
    result = ingest(tmp_path, ("\n".join(lines) + "\n").encode(), "csv")
    assert result.rows == 600_002
    texts = pq.read_table(tmp_path / "out.parquet", columns=["text"]).column("text")
    assert len(texts[600_000].as_py()) == 2_000_000
    assert texts[600_001].as_py() == "after"
    assert texts[599_999].as_py() == "short"


def test_csv_long_row_in_the_first_block_ingests(tmp_path: Path) -> None:
    data = b"n,text\n1," + b"y" * 50_000 + b"\n2,z\n"
    result = ingest(tmp_path, data, "csv", **SMALL)
    assert result.rows == 2


def test_jsonl_long_row_ingests_without_repeating_rows(tmp_path: Path) -> None:
    lines = [json.dumps({"n": i, "t": "s"}) for i in range(2000)]
    lines += [json.dumps({"n": -1, "t": "x" * 50_000}), json.dumps({"n": 9, "t": "e"})]
    result = ingest(tmp_path, ("\n".join(lines) + "\n").encode(), "jsonl", **SMALL)
    assert result.rows == 2002
    numbers = pq.read_table(tmp_path / "out.parquet").column("n").to_pylist()
    assert numbers == [*range(2000), -1, 9]


def test_jsonl_long_first_row_ingests(tmp_path: Path) -> None:
    data = json.dumps({"n": 1, "t": "x" * 50_000}).encode() + b'\n{"n": 2, "t": "y"}\n'
    result = ingest(tmp_path, data, "jsonl", **SMALL)
    assert result.rows == 2


def test_jsonl_row_past_the_largest_block_names_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_error, "MAX_BLOCK_BYTES", 16_384)
    lines = [json.dumps({"n": i}) for i in range(2000)] + [json.dumps({"n": "x" * 40_000})]
    message = refusal(tmp_path, ("\n".join(lines) + "\n").encode(), "jsonl", **SMALL)
    assert "a row is longer than" in message
    assert message.startswith("after line ")


def test_a_row_past_the_largest_block_names_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_error, "MAX_BLOCK_BYTES", 16_384)
    lines = ["n,text"] + [f"{i},s" for i in range(2000)] + ["1," + "x" * 40_000]
    message = refusal(tmp_path, ("\n".join(lines) + "\n").encode(), "csv", **SMALL)
    assert "a row is longer than" in message
    assert message.startswith("after line ")


# Header problems.


def test_blank_column_names_are_listed_by_position(tmp_path: Path) -> None:
    message = refusal(tmp_path, b",a,\n1,2,3\n", "csv")
    assert message == (
        "columns 1, 3 (counting from 1) have no name; name every column in the header line"
    )


def test_one_blank_column_name(tmp_path: Path) -> None:
    assert refusal(tmp_path, b"a, ,b\n1,2,3\n", "csv").startswith("column 2 (counting from 1)")


def test_duplicate_names_say_which_and_where(tmp_path: Path) -> None:
    message = refusal(tmp_path, b"a,b,a\n1,2,3\n", "csv")
    assert message == "duplicate column name(s): 'a' at columns 1, 3"


@pytest.mark.parametrize("data", [b"a,b", b"a,b\n", b"a,b\r\n"])
def test_header_only_file_has_no_rows(tmp_path: Path, data: bytes) -> None:
    message = refusal(tmp_path, data, "csv")
    assert "no data rows" in message
    assert "Empty CSV" not in message


# Line numbers are the file's lines.


def test_csv_bad_byte_deep_in_the_file_names_its_line(tmp_path: Path) -> None:
    lines = [b"n,name"] + [f"{i},name{i}".encode() for i in range(5000)]
    lines += [b"5,bad\xffbyte"] + [b"1,x"] * 3
    message = refusal(tmp_path, b"\n".join(lines) + b"\n", "csv", **SMALL)
    assert message.startswith("line 5002: column 'name': b'bad\\xffbyte' is not UTF-8 text")


@pytest.mark.parametrize("sizes", [{}, {"infer_bytes": 65_536, "block_bytes": 65_536}])
def test_issue_cases_name_lines_59998_and_120001(tmp_path: Path, sizes: dict[str, int]) -> None:
    lines = [b"n,name"] + [f"{i},name{i}".encode() for i in range(59_996)]
    data = b"\n".join([*lines, b"5,bad\xffbyte", b"1,x"]) + b"\n"
    assert refusal(tmp_path, data, "csv", **sizes).startswith("line 59998: column 'name': ")
    rows = [json.dumps({"a": i}) for i in range(120_000)] + ['{"a": "text"}']
    message = refusal(tmp_path, ("\n".join(rows) + "\n").encode(), "jsonl", **sizes)
    assert message.startswith("line 120001: field 'a': cannot read 'text' as ")


def test_csv_bad_byte_in_the_inferred_block_names_its_line(tmp_path: Path) -> None:
    message = refusal(tmp_path, b"n,name\n1,ok\n2,caf\xe9\n3,ok\n", "csv")
    assert message.startswith("line 3: column 'name': ")
    assert "UTF-8" in message


def test_csv_header_that_is_not_utf8(tmp_path: Path) -> None:
    assert refusal(tmp_path, b"a,b\xff\n1,2\n", "csv") == (
        "line 1: the header is not UTF-8 text (byte 0xff); save the file as UTF-8"
    )


def test_jsonl_key_that_is_not_utf8(tmp_path: Path) -> None:
    assert refusal(tmp_path, b'{"\xff": 1}\n', "jsonl").startswith(
        "a column name is not UTF-8 text (byte 0xff)"
    )


def test_jsonl_text_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    data = b'{"a": "x"}\n' * 3000 + b'{"a": "caf\xe9"}\n'
    message = refusal(tmp_path, data, "jsonl", **SMALL)
    assert message.startswith("line 3001: column 'a': b'caf\\xe9' is not UTF-8 text")


def test_parquet_text_that_is_not_utf8_names_its_row(tmp_path: Path) -> None:
    raw = pa.array([b"ok", b"ok", b"b\xff"], pa.binary()).view(pa.string())
    message = refusal(tmp_path, parquet_bytes(pa.table({"s": raw})), "parquet")
    assert message.startswith("row 3: column 's': b'b\\xff' is not UTF-8 text")


def test_blank_lines_only(tmp_path: Path) -> None:
    assert refusal(tmp_path, b"\n\n\n", "csv") == (
        "the file holds no header line and no rows, only blank lines"
    )


def test_csv_lines_count_blank_lines_quoted_newlines_and_crlf(tmp_path: Path) -> None:
    head = b'n,x,note\r\n1,0.5,"two\r\nlines"\r\n\r\n2,1.5,plain\r\n'
    body = b"".join(f"{i},{i}.5,n{i}\r\n".encode() for i in range(3, 2000))
    # Lines 1-5 hold the header, a two-line record, a blank line and row 2.
    message = refusal(tmp_path, head + body + b"9,oops,late\r\n", "csv", **SMALL)
    assert message.startswith("line 2003: column 'x': cannot read 'oops' as float")


def test_csv_ragged_row_after_blank_lines_names_its_line(tmp_path: Path) -> None:
    message = refusal(tmp_path, b"a,b\n\n1,2\n\n\n3\n", "csv")
    assert message == "line 6: expected 2 fields, found 1"


def test_jsonl_type_change_deep_in_the_file_names_its_line(tmp_path: Path) -> None:
    message = refusal(tmp_path, jsonl_with('{"n": "seven", "x": 1.5, "s": "a"}'), "jsonl", **SMALL)
    assert message == (
        "line 3001: field 'n': cannot read 'seven' as int, the type inferred from the first rows"
    )


def test_jsonl_type_change_in_the_inferred_block_names_its_line(tmp_path: Path) -> None:
    data = b'{"a": 1}\n{"a": 2}\n{"a": "three"}\n'
    message = refusal(tmp_path, data, "jsonl")
    assert message == (
        "line 3: field 'a': cannot read 'three' as number, the type of the earlier lines"
    )


def test_jsonl_syntax_error_says_invalid_json_on_its_line(tmp_path: Path) -> None:
    message = refusal(tmp_path, jsonl_with('{"n": 7, "x": 1.5, "s": "a"'), "jsonl", **SMALL)
    assert message.startswith("line 3001: invalid JSON at character ")
    assert "changed from" not in message


def test_jsonl_lines_count_blank_lines(tmp_path: Path) -> None:
    data = b'{"a": 1}\n\n   \n{"a": 2}\n{"a": 3,}\n'
    assert refusal(tmp_path, data, "jsonl").startswith("line 5: invalid JSON")


def test_jsonl_field_missing_from_the_first_rows_names_its_line(tmp_path: Path) -> None:
    message = refusal(
        tmp_path, jsonl_with('{"n": 7, "x": 1.5, "s": "a", "new": 1}'), "jsonl", **SMALL
    )
    assert message.startswith("line 3001: field 'new' is not one of the columns")


def test_jsonl_field_null_throughout_the_first_rows_says_so(tmp_path: Path) -> None:
    lines = [json.dumps({"a": i, "b": None}) for i in range(3000)] + ['{"a": 1, "b": 5}']
    message = refusal(tmp_path, ("\n".join(lines) + "\n").encode(), "jsonl", **SMALL)
    assert message.startswith("line 3001: field 'b' holds a number here but only nulls")


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    message = refusal(tmp_path, jsonl_with("[1, 2]"), "jsonl", **SMALL)
    assert message == "line 3001: each line must hold one JSON object, this one holds an array"


@pytest.mark.parametrize("data", [b'[{"a": 1}, {"a": 2}]\n', b'[{"a": 1},\n {"a": 2}]\n'])
def test_top_level_json_array_is_explained(tmp_path: Path, data: bytes) -> None:
    message = refusal(tmp_path, data, "jsonl")
    assert message.startswith("line 1: the file is one JSON array, but JSON Lines holds one")
    assert "jq -c" in message
    assert "Column()" not in message


def test_top_level_json_array_is_refused_at_upload() -> None:
    with pytest.raises(UnsupportedFormat, match="one JSON array"):
        detect_format("data.json", b'  [{"a": 1}, {"a": 2}]')


# Pickles of every protocol are refused at upload, protocol 0 (printable text) included.


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("filename", ["data.csv", "upload", "rows.jsonl"])
def test_pickles_are_refused(protocol: int, filename: str) -> None:
    with pytest.raises(UnsupportedFormat, match="pickle"):
        detect_format(filename, pickle.dumps({"a": [1, 2], "b": "x"}, protocol=protocol))


@pytest.mark.parametrize("protocol", [0, 1])
def test_pickle_cut_by_the_sniffing_window_is_refused(protocol: int) -> None:
    head = pickle.dumps([{"k": i, "v": str(i)} for i in range(20_000)], protocol=protocol)
    with pytest.raises(UnsupportedFormat, match="pickle"):
        detect_format("data.csv", head[: 64 * 1024])


@pytest.mark.parametrize(
    "text",
    [
        b"Name,Age\n1,2\n",
        b"I\n1\n2\n",
        b"N\n",
        b"a\n1\n",
        b"(x)\n1\n",
        b"c,d\n3,4\n",
        b"S\n'a'\n",
        # Parses as opcodes through to a STOP (the decimal point), but pops from an
        # empty stack on its first: text, not a pickle.
        b"size,color,weight,label\n3.163,red,10.2,big\n,blue,9.1,small\n",
    ],
)
def test_text_that_starts_like_an_opcode_is_still_csv(text: bytes) -> None:
    assert detect_format("data.csv", text) == "csv"


# Through the API.


def test_protocol_0_pickle_upload_is_415(client: TestClient) -> None:
    body = pickle.dumps([{"a": 1}, {"a": 2}], protocol=0)
    response = client.post("/v1/datasets", files={"file": ("data.csv", body)})
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_format"
    assert error["param"] == "file"
    assert "pickle" in error["message"]


def test_infinite_value_fails_the_dataset_naming_line_and_column(
    client: TestClient, ready_dataset: Callable[[str, bytes], str]
) -> None:
    dataset_id = ready_dataset("data.csv", b"a,b\n1,2.5\n2,1e400\n")
    dataset = client.get(f"/v1/datasets/{dataset_id}").json()
    assert dataset["status"] == "failed"
    assert dataset["error"].startswith("line 3: column 'b': inf is infinite")
