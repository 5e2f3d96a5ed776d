"""`dimsearch run` and `dimsearch sample` refuse what cannot work before a study exists.

One row per bad edit of a tiny space: the command exits 2 with one line naming the file (or
variable), the key and the rule, no traceback, and the studies folder is as it was: no
database when there was none, an existing study (with trials) byte for byte the same.
Real parts throughout: the CLI in-process, real sqlite studies, a real (shared) local Ray for
the rows about resources.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from PIL import Image
from tiny_space import tiny_space_text
from typer.testing import CliRunner

from dimsearch.cli import app

RAY_CPUS = 2  # the shared Ray of the resource rows: a 2-CPU node with no GPU


# -- data folders the rows point at ------------------------------------------------------------


def _png(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 20, 3), value, np.uint8)).save(path)


def _imagefolder(root: Path, classes: list[str], images: int = 2) -> Path:
    for split in ("train", "val"):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(images):
                _png(root / split / name / f"{i}.png", 40 * i)
    return root


def _idx(root: Path, labels: list[int]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    for prefix in ("train", "t10k"):
        images = (0x0803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(images + bytes(n * 28 * 28))
        header = (0x0801).to_bytes(4, "big") + n.to_bytes(4, "big")
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(header + bytes(labels))
    return root


def _data(**changes: Any) -> Callable[[dict, Path], None]:
    """An edit replacing the ``data:`` section (``root`` may be a function of the tmp dir)."""

    def edit(d: dict, tmp: Path) -> None:
        section = {"img_size": 16, **changes}
        if callable(section.get("root")):
            section["root"] = str(section["root"](tmp))
        d["data"] = section

    return edit


def _set(section: str | None, key: str, value: Any) -> Callable[[dict, Path], None]:
    def edit(d: dict, tmp: Path) -> None:
        (d.setdefault(section, {}) if section else d)[key] = value

    return edit


def _no_seeds(**top: Any) -> Callable[[dict, Path], None]:
    """Seeds off (they are built when the space loads) and top-level or data keys changed."""

    def edit(d: dict, tmp: Path) -> None:
        d["seeds"] = []
        for key, value in top.items():
            if key == "data_img_size":
                d["data"]["img_size"] = value
            else:
                d[key] = value

    return edit


def _ray_dir_under_a_file(d: dict, tmp: Path) -> None:
    (tmp / "plain-file").write_text("not a folder")


def _existing_study(tmp: Path, name: str = "tiny", path: str = "studies/tiny.db") -> list[str]:
    """A real study with two finished trials, as a search leaves it; returns no CLI args."""
    db = tmp / path
    db.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=name,
        storage=f"sqlite:///{db}",
        directions=["maximize", "minimize", "minimize"],
    )
    for acc in (50.0, 60.0):
        study.add_trial(
            optuna.trial.create_trial(
                params={}, distributions={}, values=[acc, 0.1, 1.0], user_attrs={"seed": None}
            )
        )
    return []


def _other_study_in_storage(tmp: Path) -> list[str]:
    """A shared storage that holds another study; the run names it with --storage."""
    _existing_study(tmp, name="other", path="shared.db")
    return ["--storage", f"sqlite:///{tmp / 'shared.db'}"]


@dataclass(frozen=True)
class Row:
    id: str
    edit: Callable[[dict, Path], None]
    expect: str  # a regular expression the error line must match
    cmd: str = "run"
    ray: bool = False  # needs the shared Ray (the resource rows)
    setup: Callable[[Path], list[str]] | None = None  # storage there before; extra CLI args
    env: dict[str, str] | None = None


ROWS = [
    # -- the data: loadable, with at least two classes ------------------------------------------
    Row(
        "imagefolder-root-missing",
        _data(kind="imagefolder", root=lambda t: t / "nope"),
        r"tiny\.yaml: data: imagefolder root .*nope is not a directory",
    ),
    Row(
        "imagefolder-root-empty",
        _data(kind="imagefolder", root=lambda t: (t / "empty").mkdir() or t / "empty"),
        r"data: .*empty/train not found: an imagefolder root needs train/ and val/",
    ),
    Row(
        "imagefolder-one-class",
        _data(kind="imagefolder", root=lambda t: _imagefolder(t / "one", ["cat"])),
        r"tiny\.yaml: data: data \(imagefolder in .*one\) has 1 class; .* needs at least 2",
    ),
    Row(
        "imagefolder-no-images",
        _data(kind="imagefolder", root=lambda t: _imagefolder(t / "bare", ["a", "b"], 0)),
        r"data: .*bare/train/a holds no images",
    ),
    Row(
        "imagefolder-undecodable",
        _data(
            kind="imagefolder",
            on_corrupt="error",
            root=lambda t: (
                (
                    _imagefolder(t / "bad", ["a", "b"]),
                    (t / "bad/train/a/0.png").write_bytes(b"not a png"),
                )
                and t / "bad"
            ),
        ),
        r"data: cannot decode image .*bad/train/a/0\.png",
    ),
    Row(
        "idx-root-missing",
        _data(kind="idx", root=lambda t: t / "nope"),
        r"tiny\.yaml: data: idx root .*nope is not a directory",
    ),
    Row(
        "idx-root-empty",
        _data(kind="idx", root=lambda t: (t / "e").mkdir() or t / "e"),
        r"data: .*e has no train-images-idx3-ubyte or train-images-idx3-ubyte\.gz",
    ),
    Row(
        "idx-one-class",
        _data(kind="idx", root=lambda t: _idx(t / "mono", [3, 3, 3])),
        r"data: data \(idx in .*mono\) has 1 class",
    ),
    Row(
        "synthetic-one-class",
        _set("data", "num_classes", 1),
        r"tiny\.yaml: data\.num_classes must be null or an integer in \[2, 100000\], got 1",
    ),
    # -- resources: one trial must fit on one node ------------------------------------------------
    Row(
        "cpus-more-than-any-node",
        _set("resources", "cpus", 100),
        rf"tiny\.yaml: resources\.cpus is 100 but the largest Ray node has {RAY_CPUS} CPU",
        ray=True,
    ),
    Row(
        "gpus-without-a-gpu",
        _set("resources", "gpus", 1),
        r"resources\.gpus (asks for a GPU but torch sees none|is 1 but the largest Ray node has 0)",
        ray=True,
    ),
    Row(
        "latency-cuda-with-no-gpu-per-trial",
        _set("latency", "device", "cuda"),
        r"tiny\.yaml: latency\.device is 'cuda' but resources\.gpus is 0",
    ),
    Row(
        "latency-cuda-without-a-gpu",
        lambda d, t: d.update(latency={"device": "cuda"}, resources={"cpus": 1, "gpus": 1}),
        r"latency\.device is 'cuda' asks for a GPU|resources\.gpus is 1 but the largest Ray node",
        ray=True,
    ),
    # -- bounds of numeric settings: the rule and the value ---------------------------------------
    Row(
        "epochs-1e30",
        _set("train", "epochs", 10**30),
        r"tiny\.yaml: train\.epochs must be an integer in \[1, 1000\], got 1000000000000000",
    ),
    Row(
        "train-per-class-1e12",
        _set("data", "train_per_class", 10**12),
        r"data\.train_per_class must be a positive integer <= 1000000 or null, got 1000000000000",
    ),
    Row(
        "trials-1e9",
        _set("search", "trials", 10**9),
        r"tiny\.yaml: search\.trials must be an integer in \[0, 1000000\], got 1000000000",
    ),
    Row(
        "cpus-1e9",
        _set("resources", "cpus", 1e9),
        r"tiny\.yaml: resources\.cpus must be a number in \(0, 1024\], got 1000000000\.0",
    ),
    Row(
        "sampler-seed-2-to-the-40",
        _set("sampler", "seed", 2**40),
        r"sampler\.seed must be null or an integer in \[0, 2147483647\], got 1099511627776",
    ),
    Row(
        "latency-batch-1e6",
        _set("latency", "batch_size", 10**6),
        r"latency\.batch_size must be an integer in \[1, 4096\], or null .*got 1000000",
    ),
    # -- resolutions at which nothing can be built --------------------------------------------------
    Row(
        "target-img-size-7",
        _set(None, "target_img_size", 7),
        r"tiny\.yaml: target_img_size must be an integer in \[8, 4096\], got 7",
    ),
    Row(
        "target-img-size-8-no-seeds",
        _no_seeds(target_img_size=8),
        r"tiny\.yaml: target_img_size=8, data\.img_size=16: no architecture of the space can be "
        r"built .*token grid collapses",
    ),
    Row(
        "proxy-img-size-8-no-seeds",
        _no_seeds(data_img_size=8),
        r"target_img_size=64, data\.img_size=8: no architecture of the space can be built",
    ),
    # -- the study name, the Ray folder -------------------------------------------------------------
    Row(
        "name-300-characters",
        _set(None, "name", "a" * 300),
        r"tiny\.yaml: name must be 1 to 64 characters of \[a-z0-9_-\] \(it names the study "
        r"file\), got 'a{59}\.\.\. \(300 characters\)$",
    ),
    Row(
        "ray-dir-unwritable",
        _ray_dir_under_a_file,
        r"DIMSEARCH_RAY_DIR=.*plain-file/ray: cannot write there",
        env={"DIMSEARCH_RAY_DIR": "plain-file/ray"},
    ),
    # -- what is stored already stays as it was ----------------------------------------------------
    Row(
        "resume-refused-leaves-the-study",
        _data(kind="imagefolder", root=lambda t: t / "gone"),
        r"data: imagefolder root .*gone is not a directory",
        setup=_existing_study,
    ),
    Row(
        "shared-storage-gets-no-study",
        _set("data", "num_classes", 1),
        r"data\.num_classes must be null or an integer in \[2, 100000\], got 1",
        setup=_other_study_in_storage,
    ),
    Row(
        "sample-data-missing",
        _data(kind="idx", root=lambda t: t / "nope"),
        r"tiny\.yaml: data: idx root .*nope is not a directory",
        cmd="sample",
    ),
    Row(
        "sample-resume-refused-leaves-the-study",
        _set("resources", "cpus", 100),
        r"resources\.cpus is 100 but the largest Ray node has",
        cmd="sample",
        ray=True,
        setup=_existing_study,
    ),
]


@pytest.fixture(scope="module")
def shared_ray():
    """One local Ray for the resource rows: 2 CPUs, no GPU, whatever the machine has.

    ``address="local"`` as in ``init_ray``: without it Ray joins any cluster it finds alive
    on the machine (a CI box running another job, a test's leftover head) and refuses
    ``num_cpus`` (the CI failure of stop 15).
    """
    import ray

    ray.init(
        address="local",
        num_cpus=RAY_CPUS,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    yield
    ray.shutdown()


def _snapshot(tmp: Path) -> dict[str, str]:
    """Every database and journal file under ``tmp``, by content."""
    return {
        str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in tmp.rglob("*")
        if p.is_file() and p.suffix in {".db", ".log", ".journal"}
    }


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_refused_before_the_study_exists(
    row: Row, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if row.ray:
        request.getfixturevalue("shared_ray")
    monkeypatch.chdir(tmp_path)
    space = yaml.safe_load(tiny_space_text(epochs=1, trials=1, concurrent=1))
    row.edit(space, tmp_path)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    args = row.setup(tmp_path) if row.setup else []
    before = _snapshot(tmp_path)
    env = {"COLUMNS": "400", "DIMSEARCH_RAY_DIR": str(tmp_path / "ray"), **(row.env or {})}
    cmd = [row.cmd, str(path), *(["--n", "2"] if row.cmd == "sample" else []), *args]

    result = CliRunner().invoke(app, cmd, env=env)

    output = result.output
    assert result.exit_code == 2, output[-2000:]
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert re.search(row.expect, lines[0]), lines[0]
    assert _snapshot(tmp_path) == before  # no new database, the old ones byte for byte
    assert not (tmp_path / "studies").exists() or row.setup is _existing_study


def test_every_row_is_distinct() -> None:
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids)) and len(ids) >= 15
