"""Fidelity statistics against hand-computed cases, on small hand-made sample tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sample_factory import arch, record, table
from typer.testing import CliRunner

from dimsearch.analysis import fidelity as F
from dimsearch.analysis.points import AnalysisError
from dimsearch.cli import app
from dimsearch.search.sample import SampleTable


def curves_table(curves: list[list[float]], *, first: int = 0, **kw) -> SampleTable:
    """One architecture per curve (architecture i has stage-1 depth first + i)."""
    recs = [record(i, arch(first + i), c, **kw) for i, c in enumerate(curves)]
    return table(recs, epochs=len(curves[0]))


# -- Kendall tau -------------------------------------------------------------------------------


def test_tau_of_identical_and_reversed_rankings() -> None:
    final = [50.0, 60.0, 55.0, 70.0, 65.0]
    assert F.kendall_tau([1, 3, 2, 5, 4], final) == pytest.approx(1.0)
    assert F.kendall_tau([5, 3, 4, 1, 2], final) == pytest.approx(-1.0)
    assert F.kendall_tau([1.0], [2.0]) is None
    assert F.kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None  # one side all tied


def test_tau_b_with_a_tie_by_hand() -> None:
    # pairs of 4 items: (1,2) discordant, (3,4) tied in y, the other 4 concordant;
    # tau-b = (4 - 1) / sqrt(6 * (6 - 1))
    assert F.kendall_tau([1, 2, 3, 4], [2, 1, 3, 3]) == pytest.approx(3 / math.sqrt(30))


def test_bootstrap_interval_holds_the_estimate_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    final = rng.normal(70, 5, size=30)
    early = final + rng.normal(0, 4, size=30)
    tau = F.kendall_tau(early, final)
    low, high = F.bootstrap_tau(early, final, boot=300, seed=1)
    assert low < tau < high and high - low > 0.05
    assert F.bootstrap_tau(early, final, boot=300, seed=1) == (low, high)
    assert F.bootstrap_tau(early, final, boot=300, seed=2) != (low, high)
    assert F.bootstrap_tau(final, final, boot=50) == pytest.approx((1.0, 1.0))


# -- top overlap -------------------------------------------------------------------------------


def test_top_share_counts_round_up() -> None:
    assert [F.top_k(n, 0.1) for n in (1, 10, 25, 30, 150)] == [1, 1, 3, 3, 15]
    assert F.top_k(100, 0.07) == 7  # 0.07 * 100 is 7.000000000000001 in floating point
    with pytest.raises(AnalysisError, match=r"in \(0, 1\]"):
        F.top_k(10, 0.0)


def test_top_overlap_by_hand() -> None:
    final = list(range(20))  # top 10% = items 19 and 18
    early = [float(v) for v in range(20)]
    early[18], early[5] = 5.0, 18.0  # item 18 drops out of the early top 2, item 5 enters
    assert F.top_overlap(early, final) == 0.5
    assert F.top_overlap(final, final) == 1.0
    assert F.top_overlap(list(reversed(final)), final) == 0.0
    assert F.top_overlap(early, final, share=0.25) == 0.8  # top 5: 15..19 vs 5, 15, 16, 17, 19


# -- seed noise --------------------------------------------------------------------------------


def test_seed_noise_by_hand() -> None:
    # A: seeds 0, 1 -> 70, 72;  B: seeds 0, 1, 2 -> 60, 63, 62;  C: one run, 80;
    # D: one run, 73, plus a second record with seed 0 again (counts as the same run)
    recs = [
        record(0, arch(1), [50, 70], train_seed=0),
        record(1, arch(1), [51, 72], train_seed=1),
        record(2, arch(2), [40, 60], train_seed=0),
        record(3, arch(2), [41, 63], train_seed=1),
        record(4, arch(2), [42, 62], train_seed=2),
        record(5, arch(3), [60, 80]),
        record(6, arch(4), [55, 73]),
        record(7, arch(4), [55, 73]),
    ]
    n = F.seed_noise(table(recs, epochs=2))
    assert (n.archs, n.runs) == (2, 5)
    assert n.mean_spread == pytest.approx(2.5) and n.max_spread == pytest.approx(3.0)
    # within-architecture sums of squares: A 2, B 14/3, over 1 + 2 degrees of freedom
    pooled = math.sqrt((2 + 14 / 3) / 3)
    assert n.pooled_std == pytest.approx(pooled)
    assert n.threshold == pytest.approx(1.959964 * math.sqrt(2) * pooled)  # 4.13
    # per-architecture finals 71, 61.67, 80, 73: of 6 pairs only A-D (2 points) is under 4.13
    assert n.within_noise == pytest.approx(1 / 6)
    assert F.seed_noise(curves_table([[1, 2], [3, 4]])) is None


# -- the cheapest rung -------------------------------------------------------------------------


def test_cheapest_rung_is_the_first_from_which_tau_holds() -> None:
    epochs = [1, 2, 3, 4, 5, 6]
    taus = [0.5, 0.85, 0.7, 0.82, 0.9, 1.0]
    assert F.cheapest_rung(epochs, taus, 0.8) == 4  # epoch 2 holds, but epoch 3 dips
    assert F.cheapest_rung(epochs, taus, 0.95) == 6
    assert F.cheapest_rung(epochs, [*taus[:-1], None], 0.8) is None
    assert F.cheapest_rung(epochs, [0.9] * 5 + [0.7], 0.8) is None


def test_fidelity_of_a_hand_sample() -> None:
    # 10 architectures, 3 epochs: epoch 1 ranks them in reverse; epoch 2 swaps two pairs
    # (tau 1 - 2 * 2 / 45 = 0.911, but a wide interval); epoch 3 is final
    final = [60.0 + i for i in range(10)]
    e2 = [60.0 + i for i in (1, 0, 2, 3, 4, 5, 6, 7, 9, 8)]
    e1 = [70.0 - i for i in range(10)]
    t = curves_table([[a, b, c] for a, b, c in zip(e1, e2, final, strict=True)])
    rep = F.fidelity(t, boot=400, seed=0)
    assert (rep.archs, rep.records, rep.epochs, rep.top_k) == (10, 10, 3, 1)
    r1, r2, r3 = rep.rungs
    assert r1.tau == pytest.approx(-1) and r1.top_overlap == 0.0
    assert r2.tau == pytest.approx(41 / 45) and r2.top_overlap == 0.0  # 68 tops epoch 2
    assert r3.tau == pytest.approx(1) and r3.low == pytest.approx(1) and r3.top_overlap == 1
    assert r2.low < 0.8 <= r2.tau <= r2.high
    assert (rep.cheapest_by_tau, rep.cheapest_by_low) == (2, 3)
    # costs from the records' CPU seconds: equal per epoch here
    assert [r.cost for r in rep.rungs] == pytest.approx([1 / 3, 2 / 3, 1])
    assert rep.cost_basis == "cpu seconds" and rep.noise is None and rep.cross is None
    assert F.fidelity(t, boot=400, seed=0) == rep


def test_costs_follow_the_recorded_seconds() -> None:
    recs = [
        record(0, arch(1), [1, 2, 3], epoch_cpu_seconds=(2, 1, 1)),
        record(1, arch(2), [3, 2, 1], epoch_cpu_seconds=(4, 1, 1)),
    ]
    rep = F.fidelity(table(recs), boot=10)
    assert [r.cost for r in rep.rungs] == pytest.approx([0.6, 0.8, 1.0])
    untimed = [record(i, arch(i), [i, i], epoch_seconds=(), epoch_cpu_seconds=()) for i in (1, 2)]
    rep = F.fidelity(table(untimed, epochs=2), boot=10)
    assert rep.cost_basis == "epochs" and [r.cost for r in rep.rungs] == [0.5, 1.0]


def test_repeats_are_averaged_into_one_architecture() -> None:
    recs = [
        record(0, arch(1), [10, 60]),
        record(1, arch(2), [20, 50]),
        record(2, arch(2), [40, 70], train_seed=1),  # arch 2 averages to [30, 60]...
        record(3, arch(3), [25, 65]),
    ]
    rep = F.fidelity(table(recs, epochs=2), boot=50)
    assert (rep.archs, rep.records) == (3, 4)
    # ... so epoch 1 (10, 30, 25) vs final (60, 60, 65): one concordant, one discordant pair
    assert rep.rungs[0].tau == pytest.approx(F.kendall_tau([10, 30, 25], [60, 60, 65]))
    assert rep.noise.archs == 1 and rep.noise.max_spread == pytest.approx(20)


def test_too_small_a_sample_is_an_analysis_error() -> None:
    with pytest.raises(AnalysisError, match="1 architecture"):
        F.fidelity(curves_table([[1, 2]]))


# -- two samples of the same architectures -----------------------------------------------------


def test_cross_sample_matches_architectures_not_positions() -> None:
    # here: architectures depth 1..5; there: depth 2..6, in another order, other trial numbers.
    here = curves_table([[0, 60], [0, 61], [0, 62], [0, 63], [0, 64]], first=1)
    there_finals = {2: 70.0, 3: 75.0, 4: 72.0, 5: 71.0, 6: 50.0}  # depth -> final accuracy
    recs = [
        record(100 + d, arch(d, name=f"trial{100 + d}"), [0.0, acc])
        for d, acc in sorted(there_finals.items(), reverse=True)
    ]
    there = table(recs, epochs=2)
    c = F.compare_samples(here, there, boot=200, top=0.25)
    assert (c.matched, c.only_here, c.only_there) == (4, 1, 1)
    # shared depths 2..5: here 61, 62, 63, 64; there 70, 75, 72, 71 -> 3 C, 3 D... by hand:
    assert c.tau == pytest.approx(F.kendall_tau([61, 62, 63, 64], [70, 75, 72, 71]))
    assert c.tau == pytest.approx(0.0)
    assert c.top_overlap == 0.0  # top 1 of 4: depth 5 here, depth 3 there
    assert c.low <= c.tau <= c.high
    rep = F.fidelity(here, other=there, boot=50)
    assert rep.cross.matched == 4 and rep.cross.other == "hand"
    with pytest.raises(AnalysisError, match="share 0 architecture"):
        F.compare_samples(here, curves_table([[0, 1], [0, 2]], first=7))


# -- the command -------------------------------------------------------------------------------


def test_cli_fidelity_reads_a_table_file(tmp_path: Path) -> None:
    final = [60.0 + i for i in range(10)]
    t = curves_table([[70.0 - i, 60.0 + i, f] for i, f in enumerate(final)])
    t.save(tmp_path / "a.json.gz")
    runner = CliRunner(env={"COLUMNS": "200"})
    res = runner.invoke(app, ["fidelity", str(tmp_path / "a.json.gz"), "--boot", "100"])
    assert res.exit_code == 0, res.output
    assert "hand: ranking at each epoch vs epoch 3" in res.output
    assert "10 architectures, 10 runs. Kendall tau-b" in res.output
    assert "cheapest rung holding tau >= 0.8: epoch 2 (67% of the budget)" in res.output
    assert "seed noise: unknown" in res.output

    res = runner.invoke(
        app,
        [
            *("fidelity", str(tmp_path / "a.json.gz"), "--other", str(tmp_path / "a.json.gz")),
            *("--json", "--boot", "100", "--tau", "0.95"),
        ],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["threshold"] == 0.95 and [r["epoch"] for r in d["rungs"]] == [1, 2, 3]
    assert d["cross"]["matched"] == 10 and d["cross"]["tau"] == pytest.approx(1)

    (tmp_path / "bad.json").write_text('{"format": "dimsearch-sample", "version": 99}')
    res = runner.invoke(app, ["fidelity", str(tmp_path / "bad.json")])
    assert res.exit_code == 2
    assert res.output.strip().endswith(
        "`version` is 99, but this dimsearch reads dimsearch-sample version 1 only"
    )
