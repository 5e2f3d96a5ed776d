"""Design-space statistics against hand-computed cases; figures, report and compare on a small
real study (see study_factory.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from study_factory import add_repeat, add_tampered_trial, make_study
from typer.testing import CliRunner

from dimsearch.analysis import edf
from dimsearch.analysis import figures as F
from dimsearch.analysis import points as P
from dimsearch.analysis.hypervolume import (
    hypervolume,
    hypervolume_history,
    reference_point,
)
from dimsearch.analysis.report import write_report
from dimsearch.cli import app
from dimsearch.search.study import front_trials, nondominated

SEEDS = {"PiT-Ti", "PiT-XS", "PiT-S"}


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp_path_factory.mktemp("studies") / "pit.db"
    make_study(db, samples=30)
    return db


@pytest.fixture(scope="module")
def study(study_db: Path) -> optuna.Study:
    return optuna.load_study(study_name="pit", storage=f"sqlite:///{study_db}")


def points(errors: list[float], gflops: list[float], values: list[dict]) -> P.DesignPoints:
    n = len(errors)
    return P.DesignPoints(
        np.arange(n), np.array(errors, float), np.array(gflops, float), values, [""] * n
    )


# -- the EDF -------------------------------------------------------------------------------------


def test_edf_counts_errors_at_or_below_e_with_normalised_weights() -> None:
    # weights 0, 1, 1, 2 normalise to 0, 1/4, 1/4, 1/2
    grid, f = edf.error_edf([30, 10, 20, 20], [0, 1, 1, 2])
    assert grid.tolist() == [10, 20, 30]
    assert f.tolist() == [0.25, 1.0, 1.0]
    _, f = edf.error_edf([30, 10, 20, 20], [0, 1, 1, 2], grid=[5, 10, 15, 25, 30, 35])
    assert f.tolist() == [0.0, 0.25, 0.25, 1.0, 1.0, 1.0]


def test_edf_strict_is_the_left_limit() -> None:
    _, f = edf.error_edf([30, 10, 20, 20], [0, 1, 1, 2], strict=True)
    assert f.tolist() == [0.0, 0.25, 1.0]
    _, f = edf.error_edf([10, 20, 20, 30])  # equal weights
    assert f.tolist() == [0.25, 0.75, 1.0]
    _, f = edf.error_edf([10, 20, 20, 30], strict=True)
    assert f.tolist() == [0.0, 0.25, 0.75]


def test_edf_rejects_bad_weights() -> None:
    with pytest.raises(P.AnalysisError, match="len"):
        edf.error_edf([1, 2], [1])
    with pytest.raises(P.AnalysisError, match="non-negative"):
        edf.error_edf([1, 2], [1, -1])
    with pytest.raises(P.AnalysisError, match="zero"):
        edf.error_edf([1, 2], [0, 0])


def test_quantiles_area_and_summary_by_hand() -> None:
    e = [10, 20, 20, 30]
    assert edf.weighted_quantile(e, 0.25) == 10
    assert edf.weighted_quantile(e, 0.5) == 20
    assert edf.weighted_quantile(e, 1.0) == 30
    assert edf.weighted_quantile(e, 0.5, [3, 0, 0, 1]) == 10
    # F = 1/2 on [10, 30): area 10 of 20
    assert edf.edf_area([10, 30], None, 10, 30) == pytest.approx(0.5)
    s = edf.summarize(e, [1, 1, 1, 5])
    assert s.n == 4
    assert s.mean == pytest.approx((10 + 20 + 20 + 150) / 8)
    assert s.min == 10
    assert s.n_effective == pytest.approx(64 / 28)
    assert s.quantiles == {0.1: 10, 0.25: 20, 0.5: 30}


# -- complexity normalisation --------------------------------------------------------------------


def test_complexity_weights_match_the_pooled_histogram_by_hand() -> None:
    # log10 GFLOPs over [0, 2] in two bins, edges 0, 1, 2 (1-10 and 10-100 GFLOPs)
    # A: 1, 2 | 50      B: 3 | 20, 30, 100      pooled: 3 | 4  ->  target 3/7, 4/7
    flops = [1, 2, 50, 3, 20, 30, 100]
    groups = ["A", "A", "A", "B", "B", "B", "B"]
    norm = edf.complexity_weights(flops, groups, bins=2, target="pooled")
    expected = [3 / 14, 3 / 14, 4 / 7, 3 / 7, 4 / 21, 4 / 21, 4 / 21]
    np.testing.assert_allclose(norm.weights, expected)
    assert norm.bin_index.tolist() == [0, 0, 1, 0, 1, 1, 1]
    np.testing.assert_allclose(norm.target, [3 / 7, 4 / 7])
    assert norm.dropped == {"A": 0, "B": 0}
    for g in "AB":
        mask = np.array(groups) == g
        hist = np.bincount(norm.bin_index[mask], weights=norm.weights[mask], minlength=2)
        np.testing.assert_allclose(hist, norm.target)


def test_complexity_weights_drop_bins_a_group_never_sampled() -> None:
    # three bins over log10 [0, log10 90]; A has nothing in the top bin, so B's 90 GFLOPs
    # model gets weight 0 and the target is the pooled share of the two common bins: 3/5, 2/5
    flops = [1, 1.5, 10, 1.2, 10, 90]
    groups = ["A", "A", "A", "B", "B", "B"]
    norm = edf.complexity_weights(flops, groups, bins=3, target="pooled")
    assert norm.common.tolist() == [True, True, False]
    np.testing.assert_allclose(norm.target, [3 / 5, 2 / 5, 0])
    np.testing.assert_allclose(norm.weights, [3 / 10, 3 / 10, 2 / 5, 3 / 5, 2 / 5, 0])
    assert norm.dropped == {"A": 0, "B": 1}


def test_complexity_weights_without_overlap_is_an_error() -> None:
    with pytest.raises(P.AnalysisError, match="do not overlap"):
        edf.complexity_weights([1, 1.1, 50, 60], ["A", "A", "B", "B"], bins=2)
    with pytest.raises(P.AnalysisError, match="> 0"):
        edf.complexity_weights([0, 1], ["A", "B"])


def test_edf_by_choice_splits_and_normalises() -> None:
    pts = points(
        [10, 20, 30, 15, 25, 35, 40],
        [1, 2, 50, 3, 20, 30, 100],
        [{"pool": "avg"}] * 3 + [{"pool": "max"}] * 3 + [{}],
    )
    ch = edf.edf_by_choice(pts, "pool", bins=2)
    assert ch.values == ["avg", "max"]
    assert ch.n_missing == 1
    assert ch.overall.raw.n == 7
    avg, mx = ch.groups
    assert avg.raw.n == 3 and avg.raw.mean == pytest.approx(20)
    assert mx.raw.min == 15
    assert avg.weights.sum() == pytest.approx(1) and mx.weights.sum() == pytest.approx(1)
    # pooled (of the six with a pool) 3 | 3 -> target 1/2, 1/2: avg 1/4, 1/4, 1/2
    np.testing.assert_allclose(avg.weights, [1 / 4, 1 / 4, 1 / 2])
    assert avg.normalized.mean == pytest.approx(10 / 4 + 20 / 4 + 30 / 2)
    assert json.loads(json.dumps(ch.to_dict()))["groups"][0]["value"] == "avg"


# -- trends --------------------------------------------------------------------------------------


def test_bootstrap_interval_contains_the_mean_and_is_seeded() -> None:
    e = [31.0, 35.5, 29.0, 40.2, 33.3, 36.1, 30.4]
    mean, lo, hi = edf.bootstrap_ci(e, rng=7)
    assert mean == pytest.approx(np.mean(e))
    assert lo < mean < hi
    assert edf.bootstrap_ci(e, rng=7) == (mean, lo, hi)
    assert edf.bootstrap_ci(e, rng=8) != (mean, lo, hi)
    assert edf.bootstrap_ci([3.0]) == (3.0, 3.0, 3.0)


def test_trend_by_value_is_deterministic_with_a_seed() -> None:
    depth = [1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    errors = [40, 42, 38, 35, 33, 36, 30, 29, 31, 28]
    pts = points(errors, [1.0] * 10, [{"s1.depth": d} for d in depth])
    tr = edf.trend_by_value(pts, "s1.depth", seed=3)
    assert tr.values == [1, 2, 3] and tr.n == [3, 3, 4]
    np.testing.assert_allclose(tr.center, [40, 104 / 3, 29.5])
    assert np.all(tr.lo <= tr.center) and np.all(tr.center <= tr.hi)
    again = edf.trend_by_value(pts, "s1.depth", seed=3)
    np.testing.assert_array_equal(tr.lo, again.lo)
    np.testing.assert_array_equal(tr.hi, again.hi)
    with pytest.raises(P.AnalysisError, match="not numeric"):
        edf.trend_by_value(points([1], [1], [{"pool": "avg"}]), "pool")


def test_compare_points_fractions_by_hand() -> None:
    a = points([10, 20, 30], [1, 1, 1], [{}] * 3)
    b = points([15, 25, 35, 45], [1, 1, 1, 1], [{}] * 4)
    cmp = edf.compare_points({"a": a, "b": b}, thresholds=[20, 40])
    assert [g.value for g in cmp.groups] == ["a", "b"]
    assert cmp.fractions["a"][20] == {
        "raw": pytest.approx(2 / 3),
        "normalized": pytest.approx(2 / 3),
    }
    assert cmp.fractions["b"][40]["raw"] == pytest.approx(3 / 4)


# -- hypervolume ---------------------------------------------------------------------------------


def test_hypervolume_by_hand() -> None:
    assert hypervolume([[1, 2], [2, 1]], [3, 3]) == pytest.approx(3)
    assert hypervolume([[0, 0, 0]], [1, 2, 3]) == pytest.approx(6)
    # boxes of 4 and 2 overlapping in a unit cube
    assert hypervolume([[0, 0, 1], [1, 1, 0]], [2, 2, 2]) == pytest.approx(5)
    assert hypervolume([[5, 5]], [3, 3]) == 0.0  # beyond the reference: no volume
    assert nondominated(np.array([[1, 2], [2, 1], [2, 2], [1, 2]])).tolist() == [
        True,
        True,
        False,
        True,
    ]


def test_hypervolume_agrees_with_optuna() -> None:
    from optuna._hypervolume import compute_hypervolume  # private: a cross-check only

    rng = np.random.default_rng(0)
    for d in (2, 3, 4):
        p = rng.random((25, d))
        ref = np.full(d, 1.1)
        assert hypervolume(p, ref) == pytest.approx(compute_hypervolume(p[nondominated(p)], ref))


def test_reference_point_pads_the_worst_values() -> None:
    values = np.array([[80.0, 1.0, 5.0], [70.0, 2.0, 3.0]])
    ref = reference_point(values, ["maximize", "minimize", "minimize"])
    np.testing.assert_allclose(ref, [69.0, 2.1, 5.2])


def test_hypervolume_history_grows_to_the_final_front(study: optuna.Study) -> None:
    hist = hypervolume_history(study, ["accuracy", "gflops", "latency_ms"])
    assert hist.numbers == sorted(t.number for t in study.trials)
    assert np.all(np.diff(hist.hypervolume) >= 0)
    assert np.all(np.diff(hist.seconds) >= 0)
    done = np.array([t.values for t in study.trials if t.state == TrialState.COMPLETE])
    sign = np.array([-1.0, 1.0, 1.0])
    assert hist.final == pytest.approx(hypervolume(done * sign, np.array(hist.reference) * sign))
    fixed = hypervolume_history(study, ["a", "g", "l"], reference=[0, 5, 50])
    assert fixed.reference == [0, 5, 50] and fixed.final > hist.final


# -- on a real study -----------------------------------------------------------------------------


def test_design_points_keep_complete_trials_only(study: optuna.Study) -> None:
    pts = P.study_points(study)
    states = [t.state for t in study.trials]
    assert len(pts) == states.count(TrialState.COMPLETE)
    assert pts.excluded["pruned"] == states.count(TrialState.PRUNED)
    assert pts.excluded["fail"] == states.count(TrialState.FAIL)
    assert set(pts.labels) - {""} == SEEDS
    i = pts.labels.index("PiT-Ti")
    assert pts.values[i]["s1.width"] == 64 and pts.values[i]["depth"] == 12
    categorical, numeric = P.choice_kinds(pts)
    assert categorical == ["pool", "pos"]
    assert {"stages", "heads", "head_dim", "s1.depth", "s1.width"} <= set(numeric)


def test_front_figures_show_the_seeds_and_the_front(study: optuna.Study, tmp_path: Path) -> None:
    figs = F.plot_fronts(study, tmp_path)
    assert [f.x for f in figs] == ["gflops", "latency_ms"]
    front = {t.number for t in front_trials(study)}
    for f in figs:
        assert f.path.stat().st_size > 10_000
        assert set(f.labels) == SEEDS
        assert {p["number"] for p in f.points if p["front"]} == front
        assert any(p["front_2d"] for p in f.points)
        json.dumps(f.to_dict())


def test_importances_per_objective_and_skipped_when_too_few(
    study: optuna.Study, tmp_path: Path
) -> None:
    fig = F.plot_importances(study, tmp_path / "imp.png")
    assert list(fig.importances) == ["accuracy", "gflops", "latency_ms"]
    for imp in fig.importances.values():
        assert sum(imp.values()) == pytest.approx(1.0)
        assert "pos" in imp
    tiny = optuna.create_study(directions=["maximize", "minimize"])
    for x in (1, 2):
        tiny.add_trial(
            optuna.trial.create_trial(
                values=[x, x],
                params={"x": x},
                distributions={"x": optuna.distributions.IntDistribution(0, 3)},
            )
        )
    skipped = F.plot_importances(tiny, tmp_path / "tiny.png")
    assert skipped.path is None and "at least" in skipped.notes[0]


def test_report_is_static_offline_and_complete(study: optuna.Study, tmp_path: Path) -> None:
    rep = write_report(study, tmp_path / "report")
    html = rep.index.read_text()
    for section in ("summary", "pareto", "fronts", "hypervolume", "importances", "design-space"):
        assert f'id="{section}"' in html
    for label in SEEDS:
        assert label in html
    srcs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert srcs and not [s for s in srcs if "//" in s or s.startswith("/")]  # relative only
    for s in srcs:
        assert (rep.out_dir / s).is_file(), s
    assert "<script" not in html
    assert {p.name for p in rep.images} >= {
        "front_gflops.png",
        "front_latency_ms.png",
        "hypervolume.png",
        "importances.png",
        "edf.png",
        "edf_pool.png",
        "edf_pos.png",
        "trends.png",
    }
    data = json.loads(rep.data.read_text())
    assert data["summary"]["states"]["complete"] == len(P.study_points(study))
    assert {p["label"] for p in data["figures"]["fronts"][0]["points"]} - {""} == SEEDS
    assert [c["param"] for c in data["figures"]["choices"]] == ["pool", "pos"]
    assert len(data["pareto"]) == len(front_trials(study))


def test_cli_report_and_compare(study_db: Path, tmp_path: Path) -> None:
    db = study_db
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(db), "-o", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and (tmp_path / "rep" / "index.html").is_file()
    assert "Pareto front" in res.output

    make_study(tmp_path / "hvit.db", "hvit.yaml", samples=16, seed=1)
    res = runner.invoke(
        app,
        [
            *("compare", str(db), str(tmp_path / "hvit.db"), "-o", str(tmp_path / "cmp")),
            *("--threshold", "20", "--threshold", "35"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "pit" in res.output and "hvit" in res.output and "≤ 35 %" in res.output
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [g["value"] for g in data["groups"]] == ["pit", "hvit"]
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000

    res = runner.invoke(app, ["report", "no_such_study", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["report", str(db), "-o", str(tmp_path / "y"), "--reference", "a,b"])
    assert res.exit_code == 2


def test_show_into_a_log_prints_the_whole_table(tmp_path: Path) -> None:
    """Not a terminal (a log, a pipe, CI): rich would fit the table into 80 columns and cut
    trial numbers and ``mean ± std (n) ~`` to an ellipsis, as the default run's log showed;
    `show` prints it at its own width instead."""
    db = tmp_path / "pit.db"
    study = make_study(db, samples=24)
    for t in front_trials(study):
        add_repeat(study, t, 0.5)
    res = CliRunner().invoke(app, ["show", str(db)], env={"COLUMNS": None})
    assert res.exit_code == 0, res.output
    assert "…" not in res.output, res.output
    for t in front_trials(study):
        assert f"│ {t.number:>2} │" in res.output or f"│ {t.number} │" in res.output
    assert "(2)" in res.output


def test_readers_show_figures_of_the_wrong_type_as_missing(tmp_path: Path) -> None:
    """`show` and `report` read a study other hands may have written into: a figure that is
    not a number reads as missing (None, "-"), never as a traceback."""
    db = tmp_path / "pit.db"
    number = add_tampered_trial(make_study(db, samples=8))
    runner = CliRunner()
    res = runner.invoke(app, ["show", str(db), "--all", "--json"])
    assert res.exit_code == 0, res.output
    row = next(r for r in json.loads(res.output) if r["number"] == number)
    assert row["pareto"] and row["accuracy"] == 99.0
    for key in ("params", "gflops", "latency_ms", "epochs", "node"):
        assert row[key] is None, key
    assert row["curve"] == [] and row["label"] == "['pit_ti']"
    res = runner.invoke(app, ["show", str(db)])
    assert res.exit_code == 0 and f"│ {number} │" in res.output, res.output
    res = runner.invoke(app, ["report", str(db), "-o", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "rep" / "data.json").read_text())
    assert data["summary"]["best"]["number"] == number
    # the design-space statistics need a FLOPs figure: the trial is counted out, by name
    points = P.study_points(optuna.load_study(study_name="pit", storage=f"sqlite:///{db}"))
    assert number not in points.numbers and points.excluded["no gflops"] == 1


def test_report_without_completed_trials_says_why(tmp_path: Path) -> None:
    st = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    st.set_user_attr("objectives", ["accuracy", "gflops", "latency_ms"])
    st.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={"reason": "x"}))
    rep = write_report(st, tmp_path)
    assert any("no completed trial" in n for n in rep.notes)
    assert "No completed trial yet" in rep.index.read_text()
    assert json.loads(rep.data.read_text())["summary"]["best"] is None


def test_arch_line_names_every_transition_kind() -> None:
    from dimsearch import zoo
    from dimsearch.analysis._describe import arch_line
    from dimsearch.config import TransitionConfig

    pit = zoo.get("pit_s")
    assert " · dwconv · " in arch_line(pit)
    mixed = pit.replace(transitions=(pit.transitions[0], TransitionConfig("avg")))
    assert " · dwconv/avg · " in arch_line(mixed)


def test_the_report_front_gives_mean_and_spread_of_repeated_architectures(tmp_path: Path) -> None:

    study = make_study(tmp_path / "pit.db", samples=6)
    first = front_trials(study)[0]
    acc = first.values[0]
    add_repeat(study, first, 1.0)  # another training seed
    html = write_report(study, tmp_path / "report").index.read_text()
    assert f"{acc + 0.5:.2f} ± 0.71 (2)" in html
