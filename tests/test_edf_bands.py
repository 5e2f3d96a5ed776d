"""Error EDFs with bootstrap bands, pycls's complexity normalisation by hand, and the design-space
statistics drawn from a sample (table or tagged study) rather than from a search's trials."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import numpy as np
import pytest
from sample_factory import arch, record, table
from study_factory import make_study
from typer.testing import CliRunner

from dimsearch.analysis import edf
from dimsearch.analysis import points as P
from dimsearch.analysis.report import write_report
from dimsearch.cli import app
from dimsearch.search.study import SAMPLE_TAG
from dimsearch.stats import bootstrap_band

POOLS = ("dwconv", "avg", "max")
POSES = ("le", "none")


def tiny_sample():
    """18 architectures: pool and pos cycle, costs and accuracies vary; the third is repeated."""
    recs = []
    for i in range(18):
        pool, pos = POOLS[i % 3], POSES[i % 2]
        final = 70.0 + (i % 7) + (3.0 if pool == "dwconv" else 0.0)
        params = {"stages": 3, "s1.depth": 1 + i, "pool": pool, "pos": pos}
        kw = {"optuna_params": params, "gflops": 0.5 + 0.1 * (i % 5), "params": 3_000_000 + i}
        recs.append(record(i, arch(depth=1 + i), [50.0, 60.0, final], **kw))
    recs.append(
        record(
            18,
            arch(depth=3),
            [50.0, 60.0, recs[2].accuracy - 2.0],
            1,
            **kw
            | {
                "optuna_params": recs[2].optuna_params,
                "gflops": recs[2].gflops,
                "params": recs[2].params,
            },
        )
    )
    return table(recs)


# -- the bootstrap band ------------------------------------------------------------------------


def test_band_is_deterministic_for_a_seed_and_covers_the_empirical_edf() -> None:
    rng = np.random.default_rng(7)
    errors = np.round(rng.normal(30, 3, 40), 2)
    groups = ["a"] * 20 + ["b"] * 20
    one = edf.banded_edfs(errors, groups, n_boot=300, seed=3)
    two = edf.banded_edfs(errors, groups, n_boot=300, seed=3)
    other = edf.banded_edfs(errors, groups, n_boot=300, seed=4)
    for g1, g2, g3 in zip(one.groups, two.groups, other.groups, strict=True):
        np.testing.assert_array_equal(g1.lo, g2.lo)
        np.testing.assert_array_equal(g1.hi, g2.hi)
        assert g1.median == g2.median and g1.shares == g2.shares
        assert not np.array_equal(g1.lo, g3.lo) or not np.array_equal(g1.hi, g3.hi)
    for g in one.groups:
        mask = np.array(groups) == g.value
        _, f = edf.error_edf(errors[mask], None, one.grid)
        np.testing.assert_allclose(g.f, f)  # the centre is the group's own EDF
        assert np.all(g.lo <= f + 1e-12) and np.all(f <= g.hi + 1e-12)
        assert np.any(g.hi - g.lo > 0.1)  # a band, not a line
        m, lo, hi = g.median
        assert lo <= m <= hi


def test_bootstrap_band_resamples_within_strata() -> None:
    sizes = []
    bootstrap_band(
        ["x"] * 3 + ["y"] * 5,
        lambda idx: sizes.append((int(np.sum(idx < 3)), int(np.sum(idx >= 3)))) or np.zeros(1),
        n_boot=20,
    )
    assert set(sizes) == {(3, 5)}


# -- pycls's complexity normalisation, by hand --------------------------------------------------


def test_normalised_edf_gives_every_group_the_same_complexity_mix_by_hand() -> None:
    # two bins in log10 GFLOPs (1 and 10 GFLOPs). A: three small models at 10 % error and one
    # big at 30 %; B: two small (20, 25 %), two big (40 %). pycls: weight 1 / (count in its
    # bin) within the group, normalised, so each group is half small, half big: A's small ones
    # 1/6 each and its big one 1/2, B's all 1/4. (The pooled mix, 5 small : 3 big, would give
    # F_A(10) = 5/8 instead.)
    errors = [10, 10, 10, 30, 20, 25, 40, 40]
    gflops = [1, 1, 1, 10, 1, 1, 10, 10]
    groups = ["A"] * 4 + ["B"] * 4
    norm = edf.complexity_weights(gflops, groups, bins=2)
    np.testing.assert_allclose(norm.weights, [1 / 6] * 3 + [1 / 2] + [1 / 4] * 4)
    b = edf.banded_edfs(errors, groups, complexity=gflops, weighting="gflops", bins=2, n_boot=50)
    a_, b_ = b.groups
    np.testing.assert_array_equal(b.grid, [10, 20, 25, 30, 40])
    np.testing.assert_allclose(a_.f, [0.5, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(b_.f, [0, 0.25, 0.5, 0.5, 1])
    assert (a_.median[0], b_.median[0]) == (10, 25)
    assert a_.n_effective == pytest.approx(3.0) and b_.n_effective == pytest.approx(4.0)
    plain = edf.banded_edfs(errors, groups, n_boot=50)
    np.testing.assert_allclose(plain.groups[0].f, [0.75, 0.75, 0.75, 1, 1])  # unweighted


def test_pooled_target_is_still_available() -> None:
    norm = edf.complexity_weights(
        [1, 1, 1, 10, 1, 10, 10, 10], ["A"] * 4 + ["B"] * 4, bins=2, target="pooled"
    )
    np.testing.assert_allclose(norm.target, [0.5, 0.5])  # 4 small, 4 big pooled


# -- the sample path ----------------------------------------------------------------------------


def test_sample_points_count_an_architecture_once_at_its_mean() -> None:
    t = tiny_sample()
    pts = P.points_of(t)
    assert pts.is_sample and len(pts) == 18  # the repeat joins its architecture
    third = [r.accuracy for r in t.records if r.optuna_params == t.records[2].optuna_params]
    assert pts.errors[2] == pytest.approx(100 - np.mean(third))
    assert pts.values[0]["pool"] == "dwconv" and np.all(pts.params > 0)
    assert "design-space sample" in P.source_note(pts)


def test_a_study_tagged_as_a_sample_gives_its_sample_and_a_search_its_trials(
    tmp_path: Path,
) -> None:
    study = make_study(tmp_path / "pit.db", samples=8)
    pts = P.points_of(study)
    assert not pts.is_sample and P.source_note(pts) == P.TRIALS_NOTE
    study.set_user_attr(SAMPLE_TAG, {"n": 8, "repeats": 1})
    assert P.points_of(study).is_sample


def test_cli_edf_uses_the_sample_and_warns_on_trials(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    tiny_sample().save(path)
    runner = CliRunner()
    res = runner.invoke(
        app, ["edf", str(path), "--by", "pool,pos", "--boot", "50"], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.output
    assert "design-space sample: 18 architectures" in res.output
    assert "warning" not in res.output and "not a uniform sample" not in res.output
    for text in (
        "by pool: error EDF, plain",
        "by pos: error EDF, normalised by GFLOPs",
        "normalised by params",
        "median error %",
        "verdict:",
        "dwconv",
        "none",
    ):
        assert text in res.output, text
    res = runner.invoke(app, ["edf", str(path), "--by", "pool", "--boot", "20", "--json"])
    data = json.loads(res.output)
    assert data["source"]["kind"] == "sample"
    assert [b["weighting"] for b in data["by"]["pool"]] == ["plain", "gflops", "params"]

    make_study(tmp_path / "pit.db", samples=10)
    res = runner.invoke(
        app,
        ["edf", str(tmp_path / "pit.db"), "--by", "pool", "--boot", "20"],
        env={"COLUMNS": "300"},
    )
    assert res.exit_code == 0, res.output
    assert (
        "drawn from the optimizer's trials (TPE-biased, early-stopped excluded): not a "
        "uniform sample; use `dimsearch sample`" in res.output
    )
    res = runner.invoke(app, ["edf", str(path), "--weighting", "flops"])
    assert res.exit_code == 2 and "--weighting" in res.output

    res = runner.invoke(
        app,
        [
            "compare",
            str(path),
            str(tmp_path / "pit.db"),
            "-o",
            str(tmp_path / "cmp"),
            "--boot",
            "20",
        ],
        env={"COLUMNS": "300"},
    )
    assert res.exit_code == 0, res.output
    assert "hand: drawn from a design-space sample" in res.output
    assert "warning: pit: drawn from the optimizer's trials" in res.output
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [b["weighting"] for b in data["bands"]] == ["plain", "gflops", "params"]


def test_report_builds_from_a_sample_and_says_when_it_has_none(tmp_path: Path) -> None:
    study = make_study(tmp_path / "pit.db", samples=8)
    rep = write_report(study, tmp_path / "with", sample=tiny_sample(), n_boot=30)
    html = rep.index.read_text()
    assert "drawn from a design-space sample: 18 architectures" in html
    assert "not a uniform sample" not in html
    data = json.loads(rep.data.read_text())
    assert data["summary"]["edf_source"]["kind"] == "sample"
    by = {c["param"]: c for c in data["figures"]["choices"]}
    assert {"pool", "pos"} <= set(by)
    pool = by["pool"]["bands"]
    assert [b["weighting"] for b in pool] == ["plain", "gflops", "params"]
    assert sum(g["n"] for g in pool[0]["groups"]) == 18
    assert (tmp_path / "with" / "edf_pool.png").is_file()

    rep = write_report(study, tmp_path / "without", n_boot=30)
    assert escape(P.TRIALS_NOTE) in rep.index.read_text()
    assert any(P.TRIALS_NOTE in n for n in rep.notes)
