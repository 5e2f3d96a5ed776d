"""`dimsearch bench lock`: real trainer processes beside real measurements, end to end.

The figures are the benchmark's to print, not this test's to judge (the machine is shared);
the test holds its shape: every condition measured the rounds asked for, the trainers trained
and are gone afterwards, the JSON is strict.
"""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest
from typer.testing import CliRunner

from dimsearch.cli import app
from dimsearch.train.lock_bench import CONDITIONS


def _not_json(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


@pytest.mark.slow
def test_bench_lock_measures_every_condition_and_leaves_no_trainer() -> None:
    args = ["bench", "lock", "--trainers", "1", "--rounds", "2", "--passes", "3"]
    res = CliRunner().invoke(app, [*args, "--img-size", "32", "--json"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for condition in CONDITIONS:
        assert condition in res.output
    data = json.loads(res.output[res.output.index("{") :], parse_constant=_not_json)
    for condition in CONDITIONS:
        assert len(data["medians"][condition]) == 2, condition
        assert all(m > 0 for m in data["medians"][condition])
    assert data["epoch_s"] > 0  # the trainers finished epochs while the busy rounds ran
    assert not mp.active_children()  # every trainer was stopped and joined


def test_bench_lock_refuses_an_unknown_model() -> None:
    res = CliRunner().invoke(app, ["bench", "lock", "--model", "nope", "--rounds", "2"])
    assert res.exit_code == 2
    assert "nope" in res.output and "Traceback" not in res.output
