"""`dimsearch dashboard`: notes and artifacts written once, and the real server answering.

The server test starts the command in a subprocess on a free local port against a small real
study, reads optuna-dashboard's JSON API, and stops the server at the end; where a Chromium is
installed it also loads the study page, counts the markers drawn in its Pareto-front plot
(one per COMPLETE trial) and checks a screenshot is not blank.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from procs import start_dashboard, stop
from study_factory import OBJECTIVES, add_repeat, add_tampered_trial, make_study, new_study
from typer.testing import CliRunner

from dimsearch.analysis.dashboard import BEGIN, END, _merge, prepare_dashboard
from dimsearch.cli import app
from dimsearch.search.study import front_trials, study_system_attrs, trial_handle, trial_id

# the command as a user runs it


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp_path_factory.mktemp("dash") / "pit.db"
    make_study(db, samples=12)
    return db


def _load(db: Path) -> optuna.Study:
    return optuna.load_study(study_name="pit", storage=f"sqlite:///{db}")


def _note(study: optuna.Study, trial: optuna.trial.FrozenTrial | None) -> str:
    from optuna_dashboard import get_note

    return get_note(study if trial is None else trial_handle(study, trial))


def test_merge_replaces_only_the_dimsearch_block() -> None:
    block = f"{BEGIN}\nnew\n{END}"
    assert _merge("", block) == block
    assert _merge("my words", block) == f"{block}\n\nmy words"
    old = f"{BEGIN}\nold\n{END}\n\nmy words"
    assert _merge(old, block) == f"{block}\n\nmy words"
    assert _merge(_merge(old, block), block) == _merge(old, block)


def test_prepare_is_idempotent_and_keeps_what_people_wrote(tmp_path: Path) -> None:
    db = tmp_path / "pit.db"
    make_study(db, samples=6)
    study = _load(db)
    art = tmp_path / "pit.artifacts"
    first = prepare_dashboard(study, art)
    n = len(study.trials)
    assert first.notes_written == n + 1 and first.notes_unchanged == 0
    assert study.metric_names == OBJECTIVES
    front = front_trials(study)
    assert first.front == sorted(t.number for t in front)
    assert first.artifacts_uploaded == 2 * len(front)  # model code + architecture JSON
    assert first.skipped == []

    seed = next(t for t in study.trials if t.user_attrs.get("seed") == "pit_ti")
    note = _note(study, seed)
    assert "### Trial 0 · PiT-Ti (seed)" in note
    assert "| 1 | 27×27 | 64 | 2 | 2 | full | le |" in note  # PiT-Ti's first stage at 224 px
    pruned = [t for t in study.trials if t.state.name in ("PRUNED", "FAIL")]
    for t in pruned:
        assert "because:**" in _note(study, t)

    from optuna_dashboard import save_note

    save_note(trial_handle(study, seed), note + "\n\nlooks promising")
    again = prepare_dashboard(_load(db), art)
    assert again.notes_written == 0 and again.notes_unchanged == n + 1
    assert again.artifacts_uploaded == 0 and again.artifacts_unchanged == 2 * len(front)
    kept = _note(study, seed)
    assert kept.count(BEGIN) == 1 and kept.endswith("looks promising")


def test_a_front_trial_the_exporter_refuses_keeps_its_json_and_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record the exporter refuses (attrs of the wrong type) must not stop the dashboard:
    the trial's note shows those figures as missing, it gets its architecture JSON, and the
    command says why it has no model code."""
    import dimsearch.analysis.dashboard as dashboard

    db = tmp_path / "pit.db"
    number = add_tampered_trial(make_study(db, samples=6))
    served = []
    monkeypatch.setattr(dashboard, "serve", lambda storage, **kw: served.append(kw))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["dashboard", str(db), "--port", "0"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert f"trial {number}: no model code" in said and "'params' must be a number" in said
    assert len(served) == 1
    study = _load(db)
    again = prepare_dashboard(study, tmp_path / "pit.artifacts")
    assert len(again.skipped) == 1 and again.skipped[0].startswith(f"trial {number}: no model")
    attrs = study_system_attrs(study)
    attached = dashboard._trial_artifacts(attrs, trial_id(study.trials[number]))
    assert set(attached) == {f"trial{number}_arch.json"}
    note = _note(study, study.trials[number])
    assert "top-1 99.00 % · – GFLOPs · – M params · – ms\n" in note
    assert "| 1 | 27×27 | 64 | 2 | 2 | full | le |" in note  # grids at 224 px


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium_headless(url: str, profile: Path, *output: str) -> str:
    """Load ``url`` in headless Chromium, let its scripts run (8 s of virtual time, so the
    React app has fetched the study and plotly has drawn), then do ``output`` (a screenshot
    or a DOM dump); returns Chromium's stdout."""
    proc = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *output,
            "--window-size=1280,900",
            "--virtual-time-budget=8000",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout


def _screenshot(url: str, png: Path, profile: Path) -> None:
    _chromium_headless(url, profile, f"--screenshot={png}")


def pareto_points(url: str, profile: Path) -> int:
    """Markers plotly drew in the study page's Pareto-front plot (optuna-dashboard's
    ``#graph-pareto-front``), counted in the DOM as it stands after the scripts ran."""
    dom = _chromium_headless(url, profile, "--dump-dom")
    start = dom.find('id="graph-pareto-front"')
    if start < 0:
        return 0
    end = dom.find("js-plotly-plot", start)  # the next plot on the page, if any
    return dom[start : end if end > 0 else len(dom)].count('class="point"')


def _is_blank(png: Path) -> bool:
    from PIL import Image

    with Image.open(png) as im:
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 16)
        lo, hi = zip(*rgb.getextrema(), strict=True)
    # a blank page is one colour (white) or a handful (a bare frame); the dashboard draws
    # text, a header bar and a plot: many colours and the full range from dark to light
    return (colours is not None and len(colours) < 50) or max(hi) - min(lo) < 100


@contextlib.contextmanager
def _serving(db: Path, cwd: Path) -> Iterator[str]:
    """`dimsearch dashboard DB` running on a free port; yields its URL, stops it at the end."""
    proc, url = start_dashboard(db, cwd)
    assert url.startswith("http://127.0.0.1:"), url
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def server(study_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _serving(study_db, tmp_path_factory.mktemp("cwd")) as url:
        yield url


def test_dashboard_serves_the_study_with_names_and_notes(study_db: Path, server: str) -> None:
    base = server.split("/dashboard")[0]
    summaries = _get(f"{base}/api/studies")["study_summaries"]
    (entry,) = [s for s in summaries if s["study_name"] == "pit"]
    assert entry["directions"] == ["maximize", "minimize", "minimize"]
    assert server.endswith(f"/dashboard/studies/{entry['study_id']}")
    detail = _get(f"{base}/api/studies/{entry['study_id']}")
    assert detail["objective_names"] == OBJECTIVES
    assert "### pit" in detail["note"]["body"]
    notes = {t["number"]: t["note"]["body"] for t in detail["trials"]}
    assert len(notes) == len(_load(study_db).trials)
    assert all(body.startswith(BEGIN) and "### Trial" in body for body in notes.values())
    assert "PiT-XS (seed)" in notes[1]
    front = {t["number"] for t in detail["best_trials"]}
    for t in detail["trials"]:
        names = {a["filename"] for a in t["artifacts"]}
        if t["number"] in front:
            assert any(n.endswith(".py") for n in names), names
        else:
            assert not names
    code_url = next(
        f"{base}/artifacts/{entry['study_id']}/{t['trial_id']}/{a['artifact_id']}"
        for t in detail["trials"]
        for a in t["artifacts"]
        if a["filename"].endswith(".py")
    )
    with urllib.request.urlopen(code_url, timeout=30) as r:
        assert b"import torch" in r.read()


@pytest.mark.skipif(_chromium() is None, reason="no chromium: install it to screenshot the page")
def test_dashboard_pareto_page_draws_every_complete_trial(
    study_db: Path, server: str, tmp_path: Path
) -> None:
    """The study page's Pareto-front plot is drawn, one marker per COMPLETE trial, and the
    page is a rendered page, not a blank one."""
    complete = [t for t in _load(study_db).trials if t.state.name == "COMPLETE"]
    assert pareto_points(server, tmp_path / "dom-profile") == len(complete) > 0
    png = tmp_path / "pareto.png"
    _screenshot(server, png, tmp_path / "chromium-profile")
    assert png.stat().st_size > 10_000
    assert not _is_blank(png)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium: install it to load the page")
def test_the_pareto_check_sees_a_study_with_nothing_to_plot(tmp_path: Path) -> None:
    """The check above fails where the plot is absent: a study whose trials all stopped
    before completing has no Pareto front, and `pareto_points` finds no marker on its page
    (which is still a page with text and a header: not blank)."""
    study = make_study(tmp_path / "pit.db", samples=6)
    (tmp_path / "empty").mkdir()
    empty, _ = new_study(tmp_path / "empty" / "pit.db", "pit.yaml")
    for t in study.trials:
        if t.state.name != "COMPLETE":
            empty.add_trial(t)
    assert empty.trials and not [t for t in empty.trials if t.state.name == "COMPLETE"]
    with _serving(tmp_path / "empty" / "pit.db", tmp_path) as url:
        assert pareto_points(url, tmp_path / "dom-profile") == 0
        png = tmp_path / "empty.png"
        _screenshot(url, png, tmp_path / "chromium-profile")
        assert not _is_blank(png)


def test_dashboard_needs_a_study_or_a_storage(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["dashboard"])
    assert res.exit_code == 2
    assert "STUDY" in res.output


def test_a_trial_trained_with_several_seeds_notes_its_mean_and_spread(tmp_path: Path) -> None:
    from dimsearch.analysis.dashboard import trial_note
    from dimsearch.search.study import objectives_of, repeat_stats

    study = make_study(tmp_path / "pit.db", samples=6)
    first = front_trials(study)[0]
    acc = first.values[0]
    add_repeat(study, first, -1.0)  # another training seed
    note = trial_note(first, objectives_of(study), True, repeat_stats(study)[first.number])
    assert f"top-1 {acc - 0.5:.2f} ± 0.71 % (2 training seeds: {acc:.2f}, {acc - 1.0:.2f})" in note
