"""Which URLs an operator's SHARDTRAIN_IMPORT_ALLOWED_PREFIXES lets a tenant import."""

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.datasets.imports import ObjectURL, is_allowed


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("s3://lake/shared/iris.csv", True),
        ("s3://lake/shared/deep/down/iris.csv", True),
        ("s3://lake/shared", False),  # "shared/" is a folder: the bare name is not in it
        ("s3://lake/sharedx/iris.csv", False),
        ("s3://lake/exports", True),  # no slash: the object of that name…
        ("s3://lake/exports/a.csv", True),  # …or the folder
        ("s3://lake/exports.csv", False),  # never a name that merely starts so
        ("s3://lake/ten_1/mine.csv", True),
        ("s3://lake/ten_2/theirs.csv", False),
        ("s3://open/anything/at/all.csv", True),
        ("s3://other/shared/iris.csv", False),
    ],
)
def test_prefixes_are_folders_not_string_starts(url: str, allowed: bool) -> None:
    prefixes = ["s3://lake/shared/", "s3://lake/exports", "s3://lake/{tenant}/", "s3://open"]
    assert is_allowed(ObjectURL.parse(url), prefixes, "ten_1") is allowed


def test_nothing_is_allowed_without_prefixes() -> None:
    assert not is_allowed(ObjectURL.parse("s3://lake/a.csv"), [], "ten_1")


def test_the_setting_is_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDTRAIN_IMPORT_ALLOWED_PREFIXES", " s3://a/x/ , s3://b/{tenant}/,")
    assert Settings().import_allowed_prefixes == ["s3://a/x/", "s3://b/{tenant}/"]


def test_a_prefix_that_is_not_s3_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDTRAIN_IMPORT_ALLOWED_PREFIXES", "s3://a/x/,/etc")
    with pytest.raises(ValidationError, match="/etc"):
        Settings()
