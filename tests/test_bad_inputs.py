"""Every refused input of the commands other than `run` and `sample`: one row each.

A row is (id, argv, setup, expected): ``setup`` (or None) prepares the working folder, which
holds a real study ``s.db`` (study ``s``, made by `study_factory.make_study`); the command
must then end with exit status 2, exactly one line on stderr that starts with ``error:`` and
contains ``expected``, no traceback, and the folder exactly as it was (no file created,
removed, grown or touched: no new sqlite file, no Optuna tables added, no partial export or
report folder). docs/errors.md lists the same refusals.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from study_factory import make_study
from typer.testing import CliRunner

from dimsearch.cli import app

LONG = "a" * 5000
SPACE = str(Path(__file__).resolve().parents[1] / "spaces" / "pit.yaml")


# -- setups: each writes into the working folder (the test's tmp_path) -------------------------


def text_db(d: Path) -> None:
    (d / "x.db").write_text("this is not a database\n")


def truncated_db(d: Path) -> None:
    (d / "x.db").write_bytes((d / "s.db").read_bytes()[:100])


def foreign_db(d: Path) -> None:
    con = sqlite3.connect(d / "x.db")
    con.execute("create table notes (body text)")
    con.commit()
    con.close()


def a_file(d: Path) -> None:
    (d / "afile").write_text("keep me\n")


def bad_yaml(d: Path) -> None:
    (d / "bad.yaml").write_text("stages: [1, 2\n")


def non_utf8(d: Path) -> None:
    (d / "latin.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))


def binary(d: Path) -> None:
    (d / "blob.yaml").write_bytes(bytes(range(256)) * 4)


def list_yaml(d: Path) -> None:
    (d / "list.yaml").write_text("- 1\n- 2\n")


def unwritable(d: Path) -> None:
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)


def port_in_use(d: Path) -> socket.socket:
    """A listening socket on a free port, kept open while the command runs; the port is
    written to ``port`` for the argv."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    (d / "port").write_text(str(sock.getsockname()[1]))
    return sock


ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
PORT = "{port}"  # replaced by the port `port_in_use` holds

# (id, argv, setup, expected substring of the one error line)
ROWS: list[tuple[str, list[str], Callable[[Path], Any] | None, str]] = [
    # the study: a file that is not a study database
    ("show-text-db", ["show", "x.db"], text_db, "file is not a database"),
    ("show-truncated-db", ["show", "x.db"], truncated_db, "cannot read storage 'sqlite:///x.db'"),
    ("export-truncated-db", ["export", "x.db", "--trial", "0"], truncated_db, "cannot read"),
    ("report-text-db", ["report", "x.db", "-o", "rep"], text_db, "file is not a database"),
    ("show-foreign-db", ["show", "x.db"], foreign_db, "holds no Optuna study tables"),
    ("report-foreign-db", ["report", "x.db", "-o", "rep"], foreign_db, "no Optuna study tables"),
    # the study: missing
    ("show-missing-db", ["show", "nope.db"], None, "nope.db: no such study file"),
    ("export-missing-db", ["export", "nope.db", "--trial", "0"], None, "no such study file"),
    ("report-missing-db", ["report", "nope.db", "-o", "rep"], None, "no such study file"),
    ("show-db-in-missing-folder", ["show", "nodir/x.db"], None, "nodir/x.db: no such study"),
    ("show-no-default-study", ["show", "pit"], None, "studies/pit.db does not exist"),
    # --storage
    (
        "show-storage-sqlite-missing-folder",
        ["show", "s", "--storage", "sqlite:///nodir/x.db"],
        None,
        "nodir/x.db: no such study file",
    ),
    (
        "show-storage-sqlite-missing-file",
        ["show", "s", "--storage", "sqlite:///new.db"],
        None,
        "new.db: no such study file",
    ),
    (
        "show-storage-garbage",
        ["show", "s", "--storage", "garbage://x"],
        None,
        "no database driver for 'garbage'",
    ),
    (
        "export-storage-not-a-url",
        ["export", "s", "--storage", "not a url", "--trial", "0"],
        None,
        "'not a url' is not a storage URL",
    ),
    (
        "report-storage-garbage",
        ["report", "s", "--storage", "garbage://x", "-o", "rep"],
        None,
        "no database driver",
    ),
    (
        "show-storage-server-unreachable",
        ["show", "s", "--storage", "postgresql://u@127.0.0.1:1/x"],
        None,
        "cannot read storage 'postgresql://u@127.0.0.1:1/x'",
    ),
    (
        "show-storage-missing-journal",
        ["show", "s", "--storage", "runs.log"],
        None,
        "runs.log: no such journal file",
    ),
    (
        "dashboard-storage-garbage",
        ["dashboard", "--storage", "garbage://x"],
        None,
        "no database driver",
    ),
    # user text: too long, or looking like console markup
    ("show-5000-char-name", ["show", LONG], None, "at most 255 characters"),
    ("show-markup-name", ["show", "[/bold]"], None, "no study '[/bold]'"),
    ("export-markup-db", ["export", "[/x].db", "--trial", "0"], None, "[/x].db: no such study"),
    (
        "report-markup-storage",
        ["report", "s", "--storage", "sqlite:///[/x].db", "-o", "rep"],
        None,
        "[/x].db: no such study file",
    ),
    ("describe-markup-file", ["describe", "[/x].yaml"], None, "[/x].yaml: no such file"),
    # output folders: refused before anything is written
    (
        "export-out-existing-file",
        ["export", "s.db", "--trial", "0", "-o", "afile"],
        a_file,
        "--out afile is an existing file",
    ),
    (
        "export-out-under-a-file",
        ["export", "s.db", "--trial", "0", "-o", "afile/out"],
        a_file,
        "afile is a file, so no folder can be made under it",
    ),
    (
        "export-out-5000-chars",
        ["export", "s.db", "--trial", "0", "-o", LONG],
        None,
        "a folder name is 5000 bytes long",
    ),
    (
        "export-out-unwritable",  # skipped as root, who may write into a 555 folder
        ["export", "s.db", "--trial", "0", "-o", "ro/out"],
        unwritable,
        "ro is not writable",
    ),
    ("report-out-existing-file", ["report", "s.db", "-o", "afile"], a_file, "is an existing file"),
    ("report-out-under-a-file", ["report", "s.db", "-o", "afile/x"], a_file, "afile is a file"),
    ("report-out-5000-chars", ["report", "s.db", "-o", LONG], None, "5000 bytes long"),
    (
        "report-reference-wrong-length",
        ["report", "s.db", "-o", "rep", "--reference", "1,2"],
        None,
        "one finite value per objective (3)",
    ),
    (
        "report-reference-nan",
        ["report", "s.db", "-o", "rep", "--reference", "0,nan,50"],
        None,
        "--reference must be finite numbers",
    ),
    ("compare-out-under-a-file", ["compare", "s.db", "s.db", "-o", "afile/x"], a_file, "afile"),
    # the dashboard: refused before it writes notes or artifacts
    (
        "dashboard-port-in-use",
        ["dashboard", "s.db", "--port", PORT],
        port_in_use,
        "cannot serve the dashboard on 127.0.0.1:",
    ),
    ("dashboard-port-out-of-range", ["dashboard", "s.db", "--port", "70000"], None, "'--port'"),
    # describe
    ("describe-malformed-yaml", ["describe", "bad.yaml"], bad_yaml, "bad.yaml: not valid YAML"),
    ("describe-non-utf8", ["describe", "latin.yaml"], non_utf8, "latin.yaml: not a UTF-8"),
    ("describe-binary", ["describe", "blob.yaml"], binary, "blob.yaml: not a UTF-8 text file"),
    ("describe-not-a-mapping", ["describe", "list.yaml"], list_yaml, "must be a mapping"),
    ("describe-negative-classes", ["describe", "pit_s", "--num-classes", "-5"], None, "--num-c"),
    ("describe-zero-img-size", ["describe", "pit_s", "--img-size", "0"], None, "'--img-size'"),
    ("zoo-huge-img-size", ["zoo", "--img-size", "100000"], None, "'--img-size'"),
    # data prepare
    ("data-prepare-binary-space", ["data", "prepare", "blob.yaml"], binary, "not a UTF-8"),
    (
        "data-prepare-absurd-train-per-class",
        ["data", "prepare", "--kind", "synthetic", "--train-per-class", "1000000000000"],
        None,
        "data.train_per_class must be a positive integer <= 1000000 or null",
    ),
    (
        "data-prepare-synthetic-over-memory",
        ["data", "prepare", "--kind", "synthetic", "--train-per-class", "900000"],
        None,
        "over the 16 GiB limit",
    ),
    (
        "data-prepare-absurd-workers",
        ["data", "prepare", "--kind", "synthetic", "--workers", "100000"],
        None,
        "data.workers must be a positive integer <= 1024 or null",
    ),
    # other numeric options with absurd values
    (
        "export-nan-limit",
        ["export", "s.db", "--pick", "knee", "--max-gflops", "nan"],
        None,
        "max_g",
    ),
    ("report-absurd-bins", ["report", "s.db", "-o", "rep", "--bins", "10000000"], None, "--bins"),
    ("latency-negative-seed", ["latency", "calibrate", SPACE, "--seed", "-1"], None, "'--seed'"),
    ("bench-generator-rounds", ["bench", "generator", "--rounds", "100000000"], None, "--rounds"),
    ("bench-train-zero-batch", ["bench", "train", "--batch", "0"], None, "'--batch'"),
    ("proxy-check-absurd-seeds", ["proxy-check", "--seeds", "1000000"], None, "'--seeds'"),
]


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real study ``s`` in ``s.db``, made once and copied into each test's folder."""
    path = tmp_path_factory.mktemp("study") / "s.db"
    make_study(path, samples=6, name="s")
    return path


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every path under ``root``: kind, size and modification time (ns)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        kind = "dir" if p.is_dir() else "file"
        out[str(p.relative_to(root))] = (kind, st.st_size if kind == "file" else 0, st.st_mtime_ns)
    return out


def one_error_line(res: Any) -> str:
    """The single stderr line of a refused command (asserting there is exactly one)."""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), res.stderr
    return lines[0]


ROOT_SKIPS = {"export-out-unwritable"}


def _params() -> list[Any]:
    skip = pytest.mark.skipif(ROOT, reason="root may write into a 555 folder")
    return [
        pytest.param(argv, setup, expected, id=id_, marks=[skip] if id_ in ROOT_SKIPS else [])
        for id_, argv, setup, expected in ROWS
    ]


@pytest.mark.parametrize(("argv", "setup", "expected"), _params())
def test_a_bad_input_is_one_line_exit_2_and_changes_nothing(
    argv: list[str],
    setup: Callable[[Path], Any] | None,
    expected: str,
    study_db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutil.copy2(study_db, tmp_path / "s.db")
    keep = setup(tmp_path) if setup else None  # e.g. the socket holding a port
    monkeypatch.chdir(tmp_path)
    if (tmp_path / "port").exists():
        argv = [a.replace(PORT, (tmp_path / "port").read_text()) for a in argv]
    before = snapshot(tmp_path)
    try:
        res = CliRunner().invoke(app, argv)
    finally:
        if keep is not None:
            keep.close()
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    line = one_error_line(res)
    assert expected in line, line
    assert snapshot(tmp_path) == before


def test_the_rows_are_many_and_distinct() -> None:
    ids = [r[0] for r in ROWS]
    assert len(ids) == len(set(ids)) >= 30


# -- what a study holds must not break the readers ----------------------------------------------


def test_infinite_and_nan_attrs_read_as_missing_and_json_stays_json(
    study_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Figures a tool wrote as inf/NaN (Optuna stores them): `show` prints the table,
    `show --json` and the report's data.json are JSON any parser reads (non-finite numbers as
    null), `export` writes the file."""
    shutil.copy2(study_db, tmp_path / "s.db")
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    done = next(t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    inf, nan = float("inf"), float("nan")
    attrs = {k: v for k, v in done.user_attrs.items() if k != "seed"}
    attrs.update(params=inf, gflops=nan, epochs=inf, latency_ms=-inf, curve=[1.0, inf])
    attrs.update(train_seed=inf, reason="[/bold] not markup")
    study.add_trial(
        optuna.trial.create_trial(
            params=done.params,
            distributions=done.distributions,
            values=[inf, 1e-6, 1e-6],  # the best accuracy: on the front
            user_attrs=attrs,
        )
    )
    number = len(study.trials) - 1
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    table = runner.invoke(app, ["show", "s.db", "--all"])
    assert table.exit_code == 0, table.output
    assert "[/bold] not markup" in " ".join(table.stdout.split())
    res = runner.invoke(app, ["show", "s.db", "--json"])
    assert res.exit_code == 0, res.output

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    rows = json.loads(res.stdout, parse_constant=refuse)
    row = next(r for r in rows if r["number"] == number)
    assert row["accuracy"] is None and row["train_seed"] is None
    assert row["params"] is None and row["gflops"] is None and row["latency_ms"] is None
    exported = runner.invoke(app, ["export", "s.db", "--trial", str(number), "-o", "out"])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "out" / f"s_trial{number}.py").is_file()
    report = runner.invoke(app, ["report", "s.db", "-o", "rep"])
    assert report.exit_code == 0, report.output
    json.loads((tmp_path / "rep" / "data.json").read_text(), parse_constant=refuse)


def test_a_study_named_like_markup_prints_as_written(tmp_path: Path, monkeypatch) -> None:
    """A study's own name is user text too: ``[bold]`` in it is printed, not parsed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    make_study(tmp_path / "studies" / "[bold]x.db", samples=2, name="[bold]x")
    res = CliRunner().invoke(app, ["show", "[bold]x"])
    assert res.exit_code == 0, res.output
    assert "[bold]x: Pareto front" in res.stdout
