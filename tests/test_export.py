"""`dimsearch export`: trials of real studies as standalone PyTorch files.

The studies are real Optuna studies (sqlite) whose trials are real `ArchConfig`s: seeds and
samples of the shipped spaces (asked through Optuna, as a search asks them) and a hand-made
mixed architecture, with cost attrs from `dimsearch.cost.estimate`. The exported files are run
in a subprocess where dimsearch cannot be imported: with the library model's weights they must
give its outputs, and their parameters and FLOPs must equal the trial's record.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch
from conftest import random_archs
from optuna.trial import TrialState
from study_factory import add_repeat, add_tampered_trial, make_study, new_study
from typer.testing import CliRunner

from dimsearch import build_model, cost, zoo
from dimsearch.cli import app
from dimsearch.config import (
    KV_REDUCTIONS,
    POS_ENCODINGS,
    STEMS,
    TRANSITIONS,
    ArchConfig,
    HeadConfig,
    StageConfig,
    StemConfig,
    TransitionConfig,
)
from dimsearch.export import (
    ExportError,
    TrialRecord,
    export_trials,
    generate_source,
    knee_index,
    select_trials,
    trial_record,
)
from dimsearch.search.study import Attr

ROOT = Path(__file__).resolve().parents[1]
SITE = sysconfig.get_paths()["purelib"]  # torch lives here; dimsearch only via an editable hook
RUFF = Path(sys.executable).with_name("ruff")
LATENCY_INFO = {"device": "cpu", "device_name": "test cpu", "batch_size": 1, "num_threads": 1}

optuna.logging.set_verbosity(optuna.logging.WARNING)

# small samples of the shipped spaces, as Optuna parameters (asked through enqueue_trial)
PIT_SMALL = {
    "stages": 2,
    "heads": 1,
    "head_dim": 32,
    "s1.depth": 1,
    "s2.head_mult": 2,
    "s2.depth": 2,
    "pool": "max",
    "pos": "gl",
}
PIT_MEDIUM = {
    "stages": 3,
    "heads": 2,
    "head_dim": 32,
    "s1.depth": 1,
    "s2.head_mult": 1,
    "s2.depth": 2,
    "s3.head_mult": 2,
    "s3.depth": 1,
    "pool": "avg",
    "pos": "pa",
}
PIT_DOMINATED = {  # PiT-Ti with a deeper stage 1 and no positions: costs more, scores less
    "stages": 3,
    "heads": 2,
    "head_dim": 32,
    "s1.depth": 3,
    "s2.head_mult": 2,
    "s2.depth": 6,
    "s3.head_mult": 2,
    "s3.depth": 4,
    "pool": "dwconv",
    "pos": "none",
}


def mixed_arch() -> ArchConfig:
    """Neither PiT nor ResT: patch stem, PA on every stage, avg-pooled keys/values (with head
    interaction in stage 1), max-pool transitions and a distilled token head."""
    return ArchConfig(
        stem=StemConfig("patch", patch_size=16, stride=8),
        stages=(
            StageConfig(2, 64, 2, sr_ratio=2, sr_kind="avg", head_interaction=True, pos="pa"),
            StageConfig(2, 128, 4, sr_ratio=2, sr_kind="avg", pos="pa"),
            StageConfig(2, 256, 8, pos="pa"),
        ),
        transitions=(TransitionConfig("max"), TransitionConfig("max")),
        head=HeadConfig("token", distilled=True),
        name="mixed",
    )


# -- building studies ----------------------------------------------------------------------------


def cost_attrs(cfg: ArchConfig, space, latency: float) -> tuple[dict, float]:
    est = cost.estimate(cfg, space.target_img_size, space.num_classes)
    gflops = est.gflops
    attrs = {
        Attr.ARCH: cfg.to_dict(),
        Attr.PARAMS: est.params,
        Attr.GFLOPS: gflops,
        Attr.TARGET_IMG: space.target_img_size,
        Attr.PROXY_IMG: space.data.img_size,
        Attr.LATENCY_MS: latency,
        Attr.LATENCY: LATENCY_INFO,
    }
    return attrs, gflops


def add_sampled(study, space, params: dict, acc: float, latency: float, seed: str | None = None):
    """Ask the study for ``params`` (as a search does for seeds), sample, record, tell."""
    study.enqueue_trial(params, user_attrs={Attr.SEED: seed} if seed else None)
    trial = study.ask()
    cfg = space.sample(trial).replace(name=seed or f"trial{trial.number}")
    attrs, gflops = cost_attrs(cfg, space, latency)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    study.tell(trial, [acc, gflops, latency])
    return trial.number


def add_config(study, space, cfg: ArchConfig, acc: float, latency: float, **extra) -> int:
    """A hand-made architecture as a COMPLETE trial."""
    attrs, gflops = cost_attrs(cfg, space, latency)
    study.add_trial(
        optuna.trial.create_trial(values=[acc, gflops, latency], user_attrs={**attrs, **extra})
    )
    return study.trials[-1].number


@dataclass
class Studies:
    pit: Path
    rest: Path
    hvit: Path
    pit_ti: int
    small: int
    medium: int
    dominated: int
    pruned: int
    rest_lite: int
    mixed: int


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Studies:
    root = tmp_path_factory.mktemp("studies")
    pit, pit_space = new_study(root / "pit.db", "pit.yaml")
    ti = pit_space.params_of(zoo.get("pit_ti"))
    numbers = {
        # accuracy and latency grow with GFLOPs: all three on the front
        "small": add_sampled(pit, pit_space, PIT_SMALL, 60.0, 3.0),
        "medium": add_sampled(pit, pit_space, PIT_MEDIUM, 66.0, 6.0),
        "pit_ti": add_sampled(pit, pit_space, ti, 72.0, 10.0, seed="pit_ti"),
        "dominated": add_sampled(pit, pit_space, PIT_DOMINATED, 50.0, 15.0),
    }
    trial = pit.ask()  # a pruned trial that recorded its architecture but no values
    cfg = pit_space.sample(trial)
    trial.set_user_attr(Attr.ARCH, cfg.to_dict())
    pit.tell(trial, state=TrialState.PRUNED)
    numbers["pruned"] = trial.number

    rest, rest_space = new_study(root / "rest.db", "rest.yaml")
    lite = rest_space.params_of(zoo.get("rest_lite_paper"))
    numbers["rest_lite"] = add_sampled(rest, rest_space, lite, 70.0, 12.0, seed="rest_lite_paper")

    hvit, hvit_space = new_study(root / "hvit.db", "hvit.yaml")
    numbers["mixed"] = add_config(hvit, hvit_space, mixed_arch(), 65.0, 8.0)
    return Studies(root / "pit.db", root / "rest.db", root / "hvit.db", **numbers)


def cli(*args: str | Path):
    return CliRunner().invoke(app, ["export", *map(str, args)], env={"COLUMNS": "200"})


def load_trial(db: Path, number: int) -> optuna.trial.FrozenTrial:
    study = optuna.load_study(study_name=db.stem, storage=f"sqlite:///{db}")
    return study.trials[number]


def import_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ruff(*args: str | Path) -> subprocess.CompletedProcess:
    cmd = [str(RUFF), *map(str, args), "--config", str(ROOT / "pyproject.toml")]
    return subprocess.run(cmd, capture_output=True, text=True)


# -- exporting, then running in a clean interpreter ----------------------------------------------


@pytest.fixture(scope="module")
def exported(studies: Studies, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    """CLI exports: the three architectures by number, and the pit study's whole front."""
    out = tmp_path_factory.mktemp("exports")
    asks = {
        "pit": (studies.pit, ["--trial", studies.pit_ti]),
        "rest": (studies.rest, ["--trial", studies.rest_lite]),
        "mixed": (studies.hvit, ["--trial", studies.mixed]),
        "pareto": (studies.pit, ["--pareto"]),
    }
    files = {}
    for key, (db, args) in asks.items():
        res = cli(db, *args, "-o", out / key)
        assert res.exit_code == 0, res.output
        assert "wrote" in res.output
        files[key] = [(db, p) for p in sorted((out / key).glob("*.py"))]
    return files


DRIVER = """
import contextlib, importlib.util, io, json, runpy, sys

jobs = json.loads(open(sys.argv[1]).read())
sys.path.append(jobs["site"])  # torch's folder, without running the editable-install hooks
result = {"files": {}}
try:
    import dimsearch
    result["dimsearch"] = dimsearch.__file__
except ImportError as err:
    result["dimsearch_error"] = str(err)
import torch

for n, job in enumerate(jobs["files"]):
    spec = importlib.util.spec_from_file_location(f"exported{n}", job["file"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.create_model(num_classes=job["num_classes"], img_size=job["img_size"]).eval()
    model.load_state_dict(torch.load(job["state"], weights_only=True), strict=True)
    with torch.no_grad():
        torch.save(model(torch.load(job["input"], weights_only=True)), job["output"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        runpy.run_path(job["file"], run_name="__main__")
    result["files"][job["file"]] = {
        "params": sum(p.numel() for p in model.parameters()),
        "main": printed.getvalue(),
    }
result["foreign"] = sorted(m for m in sys.modules if m.split(".")[0] in ("dimsearch", "timm"))
json.dump(result, open(jobs["result"], "w"))
"""


def randomised(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every float tensor of the state dict random, so a misplaced weight cannot hide."""
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            value = torch.randn_like(value) * 0.1
            if key.endswith("running_var"):
                value = value.abs() + 0.5
        state[key] = value
    return state


@pytest.fixture(scope="module")
def clean_run(exported: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run every exported file in one interpreter where dimsearch is not importable."""
    work = tmp_path_factory.mktemp("clean")
    torch.manual_seed(0)
    jobs, expected, same = [], {}, {}
    first: dict[str, str] = {}  # identical files (a trial exported twice) run once
    pairs = sorted({pair for group in exported.values() for pair in group})
    for _, path in pairs:
        same[str(path)] = first.setdefault(path.read_text(), str(path))
    for n, (db, path) in enumerate(p for p in pairs if same[str(p[1])] == str(p[1])):
        number = int(path.stem.rsplit("trial", 1)[1])
        trial = load_trial(db, number)
        img = trial.user_attrs[Attr.TARGET_IMG]
        cfg = ArchConfig.from_dict(trial.user_attrs[Attr.ARCH])
        model = build_model(cfg, num_classes=1000, img_size=img).eval()
        model.load_state_dict(randomised(model))
        x = torch.randn(1, cfg.in_chans, img, img)
        with torch.no_grad():
            expected[str(path)] = model(x)
        torch.save(model.state_dict(), work / f"state{n}.pt")
        torch.save(x, work / f"input{n}.pt")
        jobs.append(
            {
                "file": str(path),
                "num_classes": 1000,
                "img_size": img,
                "state": str(work / f"state{n}.pt"),
                "input": str(work / f"input{n}.pt"),
                "output": str(work / f"output{n}.pt"),
            }
        )
    spec = {"site": SITE, "files": jobs, "result": str(work / "result.json")}
    (work / "jobs.json").write_text(json.dumps(spec))
    (work / "driver.py").write_text(DRIVER)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(work / "driver.py"), str(work / "jobs.json")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((work / "result.json").read_text())
    for job in jobs:
        out = torch.load(job["output"], weights_only=True)
        result["files"][job["file"]]["diff"] = (out - expected[job["file"]]).abs().max().item()
    for path, canonical in same.items():
        result["files"][path] = result["files"][canonical]
    return result


def test_the_clean_interpreter_cannot_import_dimsearch(clean_run: dict) -> None:
    assert "dimsearch" not in clean_run and "No module named 'dimsearch'" in clean_run.get(
        "dimsearch_error", ""
    )
    assert clean_run["foreign"] == []  # neither dimsearch nor timm was loaded by any file


def check_file(db: Path, path: Path, clean_run: dict) -> None:
    """Outputs, parameters and FLOPs of an exported file against the trial's record."""
    number = int(path.stem.rsplit("trial", 1)[1])
    trial = load_trial(db, number)
    ran = clean_run["files"][str(path)]
    assert ran["diff"] < 1e-5
    assert ran["params"] == trial.user_attrs[Attr.PARAMS]
    img = trial.user_attrs[Attr.TARGET_IMG]
    assert f"output (1, 1000), {trial.user_attrs[Attr.PARAMS]:,} parameters" in ran["main"]
    model = import_file(path).create_model()
    assert cost.count_flops(model, img) == round(trial.user_attrs[Attr.GFLOPS] * 1e9)


@pytest.mark.parametrize("kind", ["pit", "rest", "mixed"])
def test_exported_file_matches_the_library_model(
    kind: str, exported: dict, clean_run: dict
) -> None:
    [(db, path)] = exported[kind]
    check_file(db, path, clean_run)
    source = path.read_text()
    imports = re.findall(r"^(?:import|from) (\S+)", source, flags=re.MULTILINE)
    assert set(imports) <= {"__future__", "torch", "torch.nn.functional"}, imports
    if kind == "pit":  # only what PiT uses: no ResT code, no learned-kind dispatch
        for absent in ("transform_conv", "kv_reduction", "PixelAttentionPos", "ConvEmbed"):
            assert absent not in source
        assert "LearnedPos(64, sides[0])" in source and "DWConvPool(64, 128, stride=2)" in source
    if kind == "rest":
        assert "Conv7Stem(in_chans, 64)" in source and "NUM_TOKENS" not in source
        assert "nn.Conv2d(64, 64, 9, stride=8, padding=4, groups=64)" in source
    if kind == "mixed":
        assert "head_dist" in source and "nn.MaxPool2d(3, stride=2, padding=1)" in source
    doc = import_file(path).__doc__
    cfg = ArchConfig.from_dict(
        load_trial(db, int(path.stem.rsplit("trial", 1)[1])).user_attrs[Attr.ARCH]
    )
    assert json.loads(doc[doc.index("{\n") :]) == cfg.to_dict()


def test_pareto_writes_one_file_per_front_trial(
    studies: Studies, exported: dict, clean_run: dict
) -> None:
    names = {p.name for _, p in exported["pareto"]}
    front = (studies.small, studies.medium, studies.pit_ti)
    assert names == {f"pit_trial{n}.py" for n in front}  # not the dominated or pruned one
    for db, path in exported["pareto"]:
        check_file(db, path, clean_run)


def test_exported_files_are_ruff_clean(exported: dict) -> None:
    files = [p for group in exported.values() for _, p in group]
    check = ruff("check", *files)
    assert check.returncode == 0, check.stdout
    fmt = ruff("format", "--check", *files)
    assert fmt.returncode == 0, fmt.stdout


def test_docstring_records_the_trial(studies: Studies, exported: dict) -> None:
    [(_, path)] = exported["pit"]
    doc = import_file(path).__doc__
    trial = load_trial(studies.pit, studies.pit_ti)
    assert f'Study "pit", trial {studies.pit_ti} (COMPLETE), seed "pit_ti".' in doc
    assert "accuracy:   72.00 % (proxy top-1)" in doc
    assert f"GFLOPs:     {trial.user_attrs[Attr.GFLOPS]:.4f}" in doc
    assert "latency:    10.00 ms median (cpu, test cpu, batch 1, 1 thread)" in doc
    assert f"parameters: {trial.user_attrs[Attr.PARAMS]:,}" in doc


# -- picking -------------------------------------------------------------------------------------


def test_pick_accuracy_meets_the_limits(studies: Studies, tmp_path: Path) -> None:
    pit = optuna.load_study(study_name="pit", storage=f"sqlite:///{studies.pit}")
    gflops = {t.number: t.user_attrs.get(Attr.GFLOPS) for t in pit.trials}
    assert gflops[studies.small] < gflops[studies.medium] < gflops[studies.pit_ti]
    limit = (gflops[studies.medium] + gflops[studies.pit_ti]) / 2
    res = cli(studies.pit, "--pick", "accuracy", "--max-gflops", limit, "-o", tmp_path / "a")
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "a").iterdir()] == [f"pit_trial{studies.medium}.py"]
    # no limit: the most accurate front trial; latency and params limits read their attrs
    [best] = select_trials(pit, pick="accuracy")
    assert best.number == studies.pit_ti
    res = cli(studies.pit, "--pick", "accuracy", "--max-latency-ms", 5, "-o", tmp_path / "b")
    assert res.exit_code == 0 and (tmp_path / "b" / f"pit_trial{studies.small}.py").is_file()
    res = cli(studies.pit, "--pick", "accuracy", "--max-params", 0.01, "-o", tmp_path / "c")
    assert res.exit_code == 2 and "no Pareto-front trial of study 'pit' meets" in res.output
    assert "--max-params 0.01" in res.output


def test_knee_of_a_hand_made_front() -> None:
    # normalised: (0, 0), (1/7, 30/38), (3/7, 35/38), (1, 1): the second rises most above y = x
    points = [(1.0, 50.0), (2.0, 80.0), (4.0, 85.0), (8.0, 88.0)]
    assert knee_index(points) == 1
    # a dominated point is never the knee; the answer follows the point, not the position
    assert knee_index([(3.0, 79.0), *points]) == 2
    assert knee_index(list(reversed(points))) == 2
    assert knee_index([(1.0, 50.0), (2.0, 80.0)]) == 1  # no interior point: the most accurate
    with pytest.raises(ExportError):
        knee_index([])


def test_pick_knee_is_deterministic(tmp_path: Path) -> None:
    study, space = new_study(tmp_path / "knee.db", "pit.yaml", name="knee")
    # real GFLOPs (0.70, 1.40, 2.88); accuracy jumps at PiT-XS and then flattens
    picks = {}
    for name, acc, latency in (
        ("pit_ti", 60.0, 30.0),
        ("pit_xs", 76.0, 20.0),
        ("pit_s", 78.0, 10.0),
    ):
        picks[name] = add_sampled(study, space, space.params_of(zoo.get(name)), acc, latency, name)
    runs = []
    for out in ("one", "two"):
        res = cli(tmp_path / "knee.db", "--pick", "knee", "-o", tmp_path / out)
        assert res.exit_code == 0, res.output
        [path] = (tmp_path / out).iterdir()
        runs.append((path.name, path.read_text()))
    assert runs[0] == runs[1]
    assert runs[0][0] == f"knee_trial{picks['pit_xs']}.py"


# -- refusing --------------------------------------------------------------------------------------


def tampered_study(tmp_path: Path) -> Path:
    study, space = new_study(tmp_path / "bad.db", "pit.yaml", name="bad")
    add_sampled(study, space, PIT_SMALL, 60.0, 3.0)
    arch = zoo.get("pit_ti").to_dict()
    arch["stem"]["kind"] = 'patch"); import os; os.system("touch pwned'
    attrs, _ = cost_attrs(zoo.get("pit_ti"), space, 1.0)
    study.add_trial(
        optuna.trial.create_trial(values=[99.0, 0.1, 1.0], user_attrs={**attrs, Attr.ARCH: arch})
    )
    return tmp_path / "bad.db"


def test_a_tampered_architecture_never_reaches_a_file(tmp_path: Path) -> None:
    db = tampered_study(tmp_path)
    for args in (["--trial", "1"], ["--pareto"], ["--pick", "accuracy"]):
        res = cli(db, *args, "-o", tmp_path / "out")
        assert res.exit_code == 2, res.output
        assert "records an invalid architecture, refusing to export it" in res.output
        assert "stem.kind must be one of ['patch', 'conv3', 'conv7']" in res.output
    assert not (tmp_path / "out").exists()  # nothing written, not even the valid trial
    assert not (tmp_path / "pwned").exists()
    # the valid trial alone still exports
    assert cli(db, "--trial", "0", "-o", tmp_path / "ok").exit_code == 0


def test_tampered_numbers_and_names_are_refused_or_escaped(tmp_path: Path) -> None:
    nasty = 'x"""\\\nimport os  # \x07'
    study, space = new_study(tmp_path / "odd.db", "pit.yaml", name=nasty)
    number = add_sampled(study, space, PIT_SMALL, 60.0, 3.0, seed='pit"""\\')
    trial = study.trials[number]
    cfg = ArchConfig.from_dict(trial.user_attrs[Attr.ARCH]).replace(name=nasty)
    record = trial_record(study, trial)
    source = generate_source(TrialRecord(**{**record.__dict__, "arch": cfg}))
    compile(source, "odd.py", "exec")  # the docstring stayed a docstring
    path = tmp_path / "odd.py"
    path.write_text(source)
    module = import_file(path)
    assert [n for n in vars(module) if n.endswith("Trial0")] == ["XImportOsTrial0"]
    doc = module.__doc__
    assert json.loads(doc[doc.index("{\n") :]) == cfg.to_dict()  # the config, verbatim
    [written] = export_trials(study, [trial], tmp_path / "out")
    assert written.path.name == "x_import_os_trial0.py"
    bad = dict(trial.user_attrs, **{Attr.GFLOPS: "1; import os"})
    study.add_trial(optuna.trial.create_trial(values=[1.0, 1.0, 1.0], user_attrs=bad))
    with pytest.raises(ExportError, match="user attr 'gflops' must be a number"):
        trial_record(study, study.trials[-1])


def test_limits_never_admit_a_figure_that_is_not_a_number(tmp_path: Path) -> None:
    """A front trial whose cost attrs are not numbers meets no limit, however loose, and the
    refusal shows its figures as unknown."""
    db = tmp_path / "pit.db"
    number = add_tampered_trial(make_study(db, samples=6))  # the whole front
    res = cli(db, "--pick", "accuracy", "--max-gflops", 1e9, "-o", tmp_path / "out")
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())
    assert f"#{number}: ? GFLOPs, ? ms, ? M params" in said
    assert not (tmp_path / "out").exists()


def test_missing_study_trial_or_choice_is_a_clear_error(studies: Studies, tmp_path: Path) -> None:
    res = cli(tmp_path / "nope.db", "--trial", "0")
    assert res.exit_code == 2 and "nope.db: no such study file" in res.output
    res = cli(studies.pit, "--trial", "99", "-o", tmp_path)
    assert res.exit_code == 2 and "study 'pit' has no trial 99 (trials 0..4)" in res.output
    res = cli("nostudy", "--storage", f"sqlite:///{studies.pit}", "--pareto")
    assert res.exit_code == 2 and "no study named 'nostudy'" in res.output
    res = cli(studies.pit, "-o", tmp_path)
    assert (
        res.exit_code == 2
        and "choose exactly one of --trial N, --pick RULE or --pareto" in res.output
    )
    res = cli(studies.pit, "--pick", "fastest", "-o", tmp_path)
    assert res.exit_code == 2 and "--pick must be one of ['accuracy', 'knee']" in res.output
    res = cli(studies.pit, "--trial", studies.pruned, "--weights", "-o", tmp_path)
    assert res.exit_code == 2 and "has no proxy-trained weights" in res.output
    assert list(tmp_path.glob("*.py")) == []


def test_default_folder_is_exports_study(studies: Studies, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = cli(studies.rest, "--trial", studies.rest_lite)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "exports" / "rest" / f"rest_trial{studies.rest_lite}.py").is_file()


# -- weights ---------------------------------------------------------------------------------------


def test_weights_travel_with_the_file(tmp_path: Path) -> None:
    study, space = new_study(tmp_path / "w.db", "pit.yaml", name="w")
    number = add_sampled(study, space, PIT_SMALL, 60.0, 3.0)
    trial = study.trials[number]
    cfg = ArchConfig.from_dict(trial.user_attrs[Attr.ARCH])
    # the proxy task: 1-channel 32 px images, 4 classes; the path is relative to the study
    proxy = build_model(cfg.replace(in_chans=1), num_classes=4, img_size=32)
    torch.save(randomised(proxy), tmp_path / "trial0.pt")
    extra = {Attr.WEIGHTS: "trial0.pt", Attr.PROXY_CLASSES: 4, Attr.PROXY_CHANNELS: 1}
    attrs = {**trial.user_attrs, **extra, Attr.PROXY_IMG: 32}
    study.add_trial(optuna.trial.create_trial(values=trial.values, user_attrs=attrs))
    res = cli(tmp_path / "w.db", "--trial", 1, "--weights", "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    path = tmp_path / "out" / "w_trial1.py"
    assert path.with_suffix(".pt").is_file() and "w_trial1.pt" in res.output
    run = tmp_path / "run"
    run.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SITE}
    # -S: site-packages only through PYTHONPATH, so dimsearch's editable hook never loads
    proc = subprocess.run(
        [sys.executable, "-S", str(path)], cwd=run, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded w_trial1.pt" in proc.stdout
    assert (
        f"output (1, 4), {sum(p.numel() for p in proxy.parameters()):,} parameters" in proc.stdout
    )
    # weights that do not fit the architecture are refused
    torch.save(randomised(build_model(zoo.get("pit_ti"), 4, 32)), tmp_path / "trial0.pt")
    res = cli(tmp_path / "w.db", "--trial", 1, "--weights", "-o", tmp_path / "out2")
    assert res.exit_code == 2 and "does not fit trial 1's architecture" in res.output


# -- every combination of choices, in process ------------------------------------------------------

RANDOM = random_archs(8, seed=7)
TINY_ZOO = ["pit_ti", "pit_ti_distilled", "rest_lite", "rest_lite_paper"]


def kinds_of(cfg: ArchConfig) -> set[tuple]:
    """Every named choice ``cfg`` makes, and which attention each stage needs."""
    return (
        {("stem", cfg.stem.kind), ("head", cfg.head.pool, cfg.head.distilled)}
        | {("pos", s.pos) for s in cfg.stages}
        | {("sr_kind", s.sr_kind) for s in cfg.stages if s.sr_ratio > 1}
        | {("attention", s.sr_ratio > 1, s.head_interaction) for s in cfg.stages}
        | {("transition", t.kind) for t in cfg.transitions}
    )


def test_round_trips_cover_every_kind() -> None:
    every = (
        {("stem", k) for k in STEMS}
        | {("head", "avg", False), ("head", "token", False), ("head", "token", True)}
        | {("pos", k) for k in POS_ENCODINGS}
        | {("sr_kind", k) for k in KV_REDUCTIONS}
        | {("attention", r, h) for r in (False, True) for h in (False, True)}
        | {("transition", k) for k in TRANSITIONS}
    )
    assert set().union(*map(kinds_of, RANDOM)) == every


def record_of(cfg: ArchConfig, index: int, img_size: int = 64) -> TrialRecord:
    return TrialRecord(
        study="rand",
        number=index,
        state="COMPLETE",
        arch=cfg,
        seed=None,
        objectives={},
        params=None,
        gflops=None,
        latency_ms=None,
        latency_device=None,
        img_size=img_size,
        num_classes=10,
    )


def round_trip(cfg: ArchConfig, index: int, tmp_path: Path) -> None:
    """Export ``cfg``; the file's model takes the library model's weights and equals it."""
    path = tmp_path / f"rand_trial{index}.py"
    path.write_text(generate_source(record_of(cfg, index)))
    lib = build_model(cfg, num_classes=10, img_size=64).eval()
    lib.load_state_dict(randomised(lib))
    model = import_file(path).create_model().eval()
    model.load_state_dict(lib.state_dict(), strict=True)
    x = torch.randn(2, cfg.in_chans, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), lib(x), atol=1e-5, rtol=0)
    assert cost.count_flops(model, 64) == cost.estimate(cfg, 64, 10).flops
    assert ruff("check", path).returncode == 0
    assert ruff("format", "--check", path).returncode == 0


@pytest.mark.parametrize("index", range(8))
def test_random_architectures_round_trip(index: int, tmp_path: Path) -> None:
    round_trip(RANDOM[index], index, tmp_path)


@pytest.mark.parametrize("name", TINY_ZOO)
def test_zoo_fixed_points_round_trip(name: str, tmp_path: Path) -> None:
    round_trip(zoo.get(name), 0, tmp_path)


def test_a_non_square_learned_position_map_matches_the_library(tmp_path: Path) -> None:
    """A 64x48 image gives non-square grids; the exported model sizes its learned maps for
    them as the library does (and resizes them for yet another shape the same way)."""
    cfg = ArchConfig(
        stem=StemConfig("patch", patch_size=4, stride=4),
        stages=(StageConfig(1, 32, 2, pos="le"), StageConfig(1, 64, 4, sr_ratio=2, pos="le")),
        transitions=(TransitionConfig("avg"),),
        head=HeadConfig("token"),
    )
    lib = build_model(cfg, num_classes=10, img_size=(64, 48)).eval()
    assert lib.stages[1].pos.pos_embed.shape[-2:] == (8, 6)
    lib.load_state_dict(randomised(lib))
    path = tmp_path / "rand_trial0.py"
    path.write_text(generate_source(record_of(cfg, 0)))
    model = import_file(path).create_model(img_size=(64, 48)).eval()
    model.load_state_dict(lib.state_dict(), strict=True)
    with torch.no_grad():
        for shape in ((64, 48), (40, 72)):
            x = torch.randn(2, 3, *shape)
            torch.testing.assert_close(model(x), lib(x), atol=1e-5, rtol=0)


# the class each named choice is written as; other classes an export always has
CLASS_OF = {
    "stem": {"patch": "PatchStem", "conv3": "Conv3Stem", "conv7": "Conv7Stem"},
    "pos": {"le": "LearnedPos", "gl": "GroupLinearPos", "pa": "PixelAttentionPos", "none": None},
    "transition": {
        "dwconv": "DWConvPool",
        "avg": "PoolProject",
        "max": "PoolProject",
        "conv": "ConvEmbed",
    },
}
ALWAYS = {"Mlp", "DropPath", "Block", "Stage", "HViT"}


@pytest.mark.parametrize("cfg", [*RANDOM, mixed_arch()], ids=lambda c: c.name or "rand")
def test_an_export_holds_only_the_layers_its_architecture_uses(cfg: ArchConfig) -> None:
    source = generate_source(record_of(cfg, 0))
    want = {CLASS_OF["stem"][cfg.stem.kind], "RandTrial0", *ALWAYS}
    want |= {CLASS_OF["pos"][s.pos] for s in cfg.stages} - {None}
    want |= {CLASS_OF["transition"][t.kind] for t in cfg.transitions}
    want |= {"Transition"} if cfg.transitions else set()
    want |= {
        "EfficientAttention" if s.sr_ratio > 1 or s.head_interaction else "Attention"
        for s in cfg.stages
    }
    assert set(re.findall(r"^class (\w+)", source, flags=re.MULTILINE)) == want
    functions = set(re.findall(r"^def (\w+)", source, flags=re.MULTILINE))
    assert functions == {
        "conv_out",
        "drop_path_rates",
        "_init_weights",
        "token_sides",
        "create_model",
    }


def _uses_a_constant() -> str:
    return json.dumps(LATENCY_INFO)


def test_layer_code_that_a_file_cannot_define_is_refused() -> None:
    from dimsearch.export._source import layer_sources

    with pytest.raises(ExportError, match="uses 'LATENCY_INFO', which an exported file cannot"):
        layer_sources([_uses_a_constant])


def test_docstring_gives_mean_and_spread_when_the_architecture_was_trained_again(
    tmp_path: Path,
) -> None:
    from dimsearch.search.study import front_trials

    db = tmp_path / "pit.db"
    study = make_study(db, samples=6)
    first = front_trials(study)[0]
    acc = first.values[0]
    add_repeat(study, first, 1.0)  # another training seed
    res = cli(db, "--trial", first.number, "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    [path] = (tmp_path / "out").iterdir()
    doc = import_file(path).__doc__
    each = f"{acc:.2f}, {acc + 1.0:.2f}"
    assert f"accuracy:   {acc + 0.5:.2f} ± 0.71 %" in doc and f"2 training seeds: {each}" in doc
