"""The JSON Schema of space files (`dimsearch schema`): every shipped space validates, bad ones
do not, and the schema is made from the same rules the loader applies."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dimsearch.cli import app
from dimsearch.errors import SpaceError
from dimsearch.search import load_space
from dimsearch.search.schema import space_schema

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*ROOT.glob("spaces/*.yaml"), *ROOT.glob("benchmarks/*.yaml")])


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = space_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_cli_prints_the_schema() -> None:
    res = CliRunner().invoke(app, ["schema"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == space_schema()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_space_validates(validator: Any, path: Path) -> None:
    assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == []
    # and so does what a study stores: the loaded space with every default filled in
    stored = json.loads(json.dumps(load_space(path).to_dict()))
    assert list(validator.iter_errors(stored)) == []


# (id, dotted key, new value): each is refused by both the schema and `load_space`
BAD = [
    ("unknown-top-key", "epochs", 3),
    ("unknown-section-key", "train.epoch", 3),
    ("bool-is-not-int", "arch.heads", True),
    ("below-minimum", "train.epochs", 0),
    ("unknown-choice", "arch.pool", {"choices": ["dwconv", "strided"]}),
    ("float-range-on-int", "arch.heads", {"low": 1, "high": 2.5}),
    ("key-of-another-kind", "sampler.kind", "random"),
    ("objectives-without-accuracy", "objectives", ["gflops"]),
    ("imagefolder-without-root", "data.kind", "imagefolder"),
    ("gpus-fraction-above-one", "resources.gpus", 1.5),
    ("bad-name", "name", "PiT Space"),
    ("seed-not-in-zoo", "seeds", ["pit_q"]),
]


@pytest.mark.parametrize(("key", "value"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_spaces_fail_the_schema_and_the_loader(
    validator: Any, tmp_path: Path, key: str, value: Any
) -> None:
    data = copy.deepcopy(yaml.safe_load((ROOT / "spaces" / "pit.yaml").read_text()))
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    assert list(validator.iter_errors(data)), "the schema accepted it"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpaceError):
        load_space(path)
