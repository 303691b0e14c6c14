"""The README tour's parser and matcher (tests/readme_tour.py): loose where runs differ
(ids, numbers, widths, `…`), strict on every word, so a drifted README fails."""

import pytest
from readme_tour import matches, parse

README = """
```sh
make run
```

```console
$ DS=$(shardtrain datasets upload iris.csv -o id)
uploaded ds_e487f1ac0d4b47943f9db94f
$ curl -s $URL/v1/jobs \\
    -d '{"a": 1,
         "b": 2}' > job.json
$ cat > job.yaml <<'EOF'
target: species
EOF
$ shardtrain jobs metrics $JOB
round  train loss  shards
1      0.6919      4/4
…
10     0.1084      4/4
train loss █▄▃▂▁  0.6919 → 0.1084
```

```python
print("hi")
```

```text
hi 3
```
"""


def test_blocks_commands_and_what_they_print() -> None:
    console, python = parse(README)
    assert console.kind == "console" and python.kind == "python"
    commands = [step.command for step in console.steps]
    assert commands[0] == "DS=$(shardtrain datasets upload iris.csv -o id)"
    assert commands[1].endswith('"b": 2}\' > job.json') and commands[1].count("\n") == 2
    assert commands[2] == "cat > job.yaml <<'EOF'\ntarget: species\nEOF"
    assert [len(step.expected) for step in console.steps] == [1, 0, 0, 5]
    assert python.steps[0].command == 'print("hi")' and python.steps[0].expected == ["hi 3"]


def test_a_python_block_without_its_output_is_refused() -> None:
    with pytest.raises(ValueError, match="text block"):
        parse("```python\nprint(1)\n```\n")


METRICS = parse(README)[0].steps[3].expected


def test_ids_numbers_widths_and_ellipses_vary() -> None:
    printed = (
        "round  train loss  shards\n"
        "1      0.7000      4/4   \n"
        "2      0.5000      4/4   \n"
        "3      0.2500      4/4   \n"
        "train loss █▁▁  0.7000 → 0.2500\n\n"
    )
    assert matches(METRICS, printed)
    assert matches(["uploaded ds_…"], "uploaded ds_0123456789abcdef01234567\n")
    assert matches(
        ['{"id":"ds_…","status":"processing",…}'],
        '{"id":"ds_0123456789abcdef01234567","status":"processing","rows":null}',
    )


def test_drift_fails() -> None:
    sparkline = "train loss █▁  0.7 → 0.2\n"
    rows = "1  0.7  4/4\n3  0.2  4/4\n"
    assert matches(METRICS, f"round  train loss  shards\n{rows}{sparkline}")
    assert not matches(METRICS, f"round  training loss  shards\n{rows}{sparkline}")
    assert not matches(METRICS, f"round  train loss  shards\n{rows}")
    assert not matches(METRICS, f"round  train loss  shards\n{rows}{sparkline}boom\n")
    assert not matches(["uploaded ds_…"], "uploaded job_0123456789abcdef01234567\n")
