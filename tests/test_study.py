"""`dimsearch.search.study`: the study's schema and the one door to Optuna's private parts.

The private-attribute test runs against the installed Optuna and a real sqlite storage, so an
Optuna release that renames ``Study._storage``, ``Study._study_id`` or ``Trial._trial_id``
fails here, by name, instead of deep inside `run` or `dashboard`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from dimsearch.search import load_space
from dimsearch.search.study import (
    OBJECTIVES,
    Attr,
    front_trials,
    objectives_of,
    set_study_system_attr,
    set_trial_attrs,
    state_counts,
    study_id,
    study_rows,
    study_system_attrs,
    trial_accuracy,
    trial_handle,
    trial_id,
)

SPACES = Path(__file__).resolve().parents[1] / "spaces"


@pytest.fixture(autouse=True)
def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_optuna_private_parts_exist_and_round_trip_through_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    other = optuna.create_study(study_name="other", storage=url)
    other.ask()  # takes trial id 0 of the storage, so ids and numbers differ below
    study = optuna.create_study(study_name="x", storage=url, directions=["maximize", "minimize"])
    live = study.ask()
    for obj, attr in ((study, "_storage"), (study, "_study_id"), (live, "_trial_id")):
        assert hasattr(obj, attr), f"optuna {optuna.__version__}: {type(obj)} lost {attr}"
    frozen = study.get_trials(deepcopy=False)[0]
    assert hasattr(frozen, "_trial_id"), f"optuna {optuna.__version__}: FrozenTrial._trial_id"

    assert trial_id(live) == trial_id(frozen) != frozen.number  # the storage's id, not a number
    assert study_id(study) != study_id(other)
    assert trial_handle(study, frozen).number == frozen.number

    set_trial_attrs(study, frozen, {"x": 1.5, "gone": float("nan"), "curve": (1.0, 2.0)})
    set_study_system_attr(study, "dimsearch:test", json.dumps({"a": 1}))
    again = optuna.load_study(study_name="x", storage=url)  # a fresh read of the file
    assert study_id(again) == study_id(study)
    assert again.trials[0].user_attrs == {"x": 1.5, "gone": None, "curve": [1.0, 2.0]}
    assert json.loads(study_system_attrs(again)["dimsearch:test"]) == {"a": 1}


def _study(names: list[str] | None, directions: list[str]) -> optuna.Study:
    study = optuna.create_study(directions=directions)
    if names is not None:
        study.set_user_attr(Attr.OBJECTIVES, names)
    return study


def test_front_counts_complete_trials_only_keeps_ties_and_sorts_best_first() -> None:
    study = _study(["accuracy", "gflops"], ["maximize", "minimize"])
    for values in ([80.0, 1.0], [90.0, 2.0], [80.0, 1.0], [70.0, 3.0]):  # #2 ties #0; #3 loses
        study.add_trial(create_trial(values=values))
    curve = {Attr.CURVE: [50.0, 99.0]}
    # a PRUNED trial with values that would dominate everything must not count
    study.add_trial(create_trial(state=TrialState.PRUNED, values=[99.0, 0.1], user_attrs=curve))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={Attr.REASON: "x"}))
    study.add_trial(create_trial(state=TrialState.RUNNING))

    assert [t.number for t in front_trials(study)] == [1, 0, 2]
    rows = study_rows(study)
    assert [(r["number"], r["accuracy"], r["pareto"]) for r in rows] == [
        (1, 90.0, True),
        (0, 80.0, True),
        (2, 80.0, True),
    ]
    every = {r["number"]: r for r in study_rows(study, all_trials=True)}
    assert not every[3]["pareto"] and not every[4]["pareto"]
    assert every[4]["accuracy"] == 99.0  # the curve's last epoch, not a value
    assert state_counts(study) == {"running": 1, "complete": 4, "pruned": 1, "fail": 1}


def test_objectives_and_which_one_is_accuracy() -> None:
    named = objectives_of(_study(["gflops", "accuracy"], ["minimize", "maximize"]))
    assert (named.names, named.directions, named.accuracy) == (
        ["gflops", "accuracy"],
        ["minimize", "maximize"],
        1,
    )
    unnamed = objectives_of(_study(None, ["minimize", "maximize"]))
    assert (unnamed.names, unnamed.accuracy) == (["objective0", "objective1"], 1)
    miscounted = objectives_of(_study(["accuracy"], ["maximize", "minimize"]))
    assert miscounted.names == ["objective0", "objective1"] and miscounted.accuracy == 0
    assert objectives_of(_study(None, ["minimize", "minimize"])).accuracy is None

    trial = create_trial(values=[3.0, 91.0], user_attrs={Attr.CURVE: [90.0]})
    assert trial_accuracy(trial, named.accuracy) == 91.0
    assert trial_accuracy(trial, None) == 90.0


def test_a_space_takes_its_directions_from_the_one_objective_table() -> None:
    space = load_space(SPACES / "pit.yaml")
    assert space.directions == [OBJECTIVES[name] for name in space.objectives]
    assert [name for name, d in OBJECTIVES.items() if d == "maximize"] == ["accuracy"]
    from dimsearch.search import settings

    assert OBJECTIVES is settings.OBJECTIVES  # one table: the study re-exports the format's


def test_importing_a_space_does_not_import_optuna() -> None:
    """The objective table lives with the space format (settings.py), so a space needs no
    Optuna to load; the study module re-exports it."""
    code = (
        "import sys, dimsearch.search.space\n"
        "assert 'optuna' not in sys.modules, 'optuna was imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_the_front_view_keeps_dominated_seeds_as_references() -> None:
    from rich.console import Console

    from dimsearch.search.show import study_table

    study = _study(["accuracy", "gflops"], ["maximize", "minimize"])
    study.add_trial(create_trial(values=[70.0, 0.2]))  # dominates the seed below
    study.add_trial(create_trial(values=[60.0, 0.7], user_attrs={Attr.SEED: "pit_ti"}))
    study.add_trial(create_trial(values=[50.0, 0.9]))  # dominated, no seed: left out
    rows = study_rows(study)
    assert [(r["number"], r["pareto"], r.get("reference", False)) for r in rows] == [
        (0, True, False),
        (1, False, True),
    ]
    console = Console(width=160, record=True)
    console.print(study_table(study, rows, all_trials=False))
    text = console.export_text()
    assert "Pareto front (1)" in text and "PiT-Ti" in text and "reference" in text


def test_reading_a_foreign_database_refuses_it_and_writes_nothing(tmp_path: Path) -> None:
    """`show` pointed at somebody else's sqlite file must not add Optuna's tables to it."""
    import sqlite3

    from typer.testing import CliRunner

    from dimsearch.cli import app

    db = tmp_path / "theirs.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    before = db.read_bytes()
    res = CliRunner().invoke(app, ["show", "theirs", "--storage", f"sqlite:///{db}"])
    assert res.exit_code == 2 and "holds no Optuna study tables" in res.output
    assert db.read_bytes() == before


def _table_names(url: str) -> set[str]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_reading_a_database_a_search_is_still_setting_up_refuses_it_and_writes_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The moment between a search creating Optuna's tables and stamping their version: a
    reader then must refuse (exit 2) and write nothing. Optuna's `RDBStorage` stamps the
    version even with ``skip_table_creation``, so a reader that only checked the tables raced
    the search's own stamping (IntegrityError on ``alembic_version``, seen with PostgreSQL)."""
    import sqlalchemy
    from optuna.storages._rdb import models
    from typer.testing import CliRunner

    from dimsearch.cli import app

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'starting.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = sqlalchemy.create_engine(url)
    models.BaseModel.metadata.create_all(engine)  # what RDBStorage does first, and no more
    engine.dispose()
    before = _table_names(url)
    assert "alembic_version" not in before

    res = CliRunner().invoke(app, ["show", "starting", "--storage", url])
    assert res.exit_code == 2, res.output
    assert "still being set up" in res.output and "Traceback" not in res.output
    assert _table_names(url) == before
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.select(models.VersionInfoModel.__table__)).first() is None
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_writers_opening_one_fresh_database_at_once_all_get_the_study(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two `dimsearch run`s started together on one fresh database (a cluster user may) both
    set it up: Optuna's set-up is check-then-write, so without serialising it the losers of
    the race stopped on an IntegrityError (a duplicate table type, ``version_info`` row or
    ``alembic_version`` stamp). Eight writers start at one barrier; every one gets the study."""
    import threading

    from dimsearch.search.study import open_study

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    writers = 8
    barrier = threading.Barrier(writers)
    errors: list[str] = []
    names: list[str] = []

    def write() -> None:
        barrier.wait()
        try:
            names.append(open_study("fresh", url, directions=["maximize"]).study_name)
        except Exception as err:  # any error is the failure reported below
            errors.append(f"{type(err).__name__}: {str(err).splitlines()[0]}")

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert names == ["fresh"] * writers
    assert len(optuna.get_all_study_summaries(url)) == 1
