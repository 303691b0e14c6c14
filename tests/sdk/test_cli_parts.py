"""The CLI's pure parts: the sparkline, CSV cells read as the model's dtypes, and the
exit code each SDK error maps to."""

from pathlib import Path

import httpx
import pytest
import typer

from shardtrain import errors
from shardtrain.cli import exit_codes
from shardtrain.cli.inputs import load_records, load_spec
from shardtrain.cli.sparkline import sparkline
from shardtrain.models import Feature


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline([1.0, 0.5, 0.0]) == "█▅▁"
    assert sparkline([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]) == "▁▂▃▄▅▆▇█"
    assert sparkline([0.3, None, float("nan"), 0.1]) == "█  ▁"
    assert sparkline([2.0, 2.0]) == "▁▁"
    assert sparkline([None, None]) == "  "
    assert sparkline([]) == ""


def test_csv_cells_take_the_feature_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("n,x,flag,city,extra\n3,1.5,true,Oslo,7\n,oops,0,,\n")
    dtypes = {"n": "int", "x": "float", "flag": "bool", "city": "string"}
    features = [Feature(name=name, dtype=dtype) for name, dtype in dtypes.items()]
    assert load_records(path, features) == [
        {"n": 3, "x": 1.5, "flag": True, "city": "Oslo", "extra": "7"},
        # Missing cells are null; a cell that does not parse stays text for the server's 422.
        {"n": None, "x": "oops", "flag": False, "city": None, "extra": None},
    ]


def test_a_csv_row_longer_than_its_header_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("x,y\n1,2\n3,4,5\n")
    with pytest.raises(typer.BadParameter, match="line 3: more cells"):
        load_records(path, [Feature(name="x", dtype="int"), Feature(name="y", dtype="int")])


def test_json_records_as_a_list_an_envelope_or_lines(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('[{"x": 1}]')
    (tmp_path / "b.json").write_text('{"inputs": [{"x": 1}]}')
    (tmp_path / "c.jsonl").write_text('{"x": 1}\n\n')
    for name in ("a.json", "b.json", "c.jsonl"):
        assert load_records(tmp_path / name, []) == [{"x": 1}]
    (tmp_path / "d.json").write_text('{"x": 1}')
    with pytest.raises(typer.BadParameter):
        load_records(tmp_path / "d.json", [])


def test_spec_files_yaml_or_json(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("dataset_id: ds_1\ntarget: y\ntraining:\n  rounds: 3\n")
    (tmp_path / "job.json").write_text('{"dataset_id": "ds_1", "target": "y"}')
    assert load_spec(tmp_path / "job.yaml")["training"] == {"rounds": 3}
    assert load_spec(tmp_path / "job.json")["target"] == "y"
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(typer.BadParameter):
        load_spec(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, 6), (401, 3), (403, 3), (404, 4), (409, 5), (413, 6), (415, 6), (422, 6),
     (429, 7), (500, 8), (503, 8), (418, 1)],
)  # fmt: skip
def test_each_status_has_its_exit_code(status: int, code: int) -> None:
    response = httpx.Response(status, json={"error": {"type": "t", "code": "c", "message": "m"}})
    assert exit_codes.exit_code_for(errors.error_from_response(response)) == code


def test_errors_without_a_response() -> None:
    assert exit_codes.exit_code_for(errors.APIConnectionError("refused")) == exit_codes.CONNECTION
    assert exit_codes.exit_code_for(errors.WaitTimeoutError("slow")) == exit_codes.TIMEOUT
    assert exit_codes.exit_code_for(errors.ShardtrainError("No API key: ...")) == exit_codes.AUTH


def test_an_error_page_without_the_error_object() -> None:
    error = errors.error_from_response(httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert isinstance(error, errors.ServerError)
    assert (error.status, error.code, error.message) == (502, "http_502", "Bad Gateway")
