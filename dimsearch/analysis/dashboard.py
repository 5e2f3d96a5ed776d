"""optuna-dashboard for a dimsearch study: notes that say what each trial is, code to take away.

`prepare_dashboard` makes a study readable in the dashboard before it is served:

* the objectives get their names (``accuracy``, ``gflops``, ``latency_ms``) instead of
  "Objective 0..2" (``study.set_metric_names``, which the dashboard reads);
* every trial gets a markdown note with its architecture table (per stage: token grid, width,
  heads, depth, attention, position encoding; stem, transitions, head; params, GFLOPs,
  latency; the seed's name; for PRUNED and FAIL trials the reason);
* the study gets a short note (counts, the front);
* every Pareto trial gets its model code as an artifact, downloadable from the trial page.

All of it is idempotent. Notes are written between two invisible markdown markers
(``[//]: # (dimsearch:begin)`` ... ``(dimsearch:end)``), so a rerun replaces only that block,
leaves anything a person wrote in the note around it, and writes nothing when the block is
unchanged. An artifact is uploaded again only if the file under that name differs.

Why artifacts go to the *study's* system attributes: a finished trial cannot be written to
(Optuna's storages refuse), and Pareto trials are finished by definition. optuna-dashboard
also reads trial artifacts from study attributes named ``dashboard:artifacts:<trial_id>:<id>``
(the layout its own upload API used, which it keeps reading), so that is where they go.

`serve` then runs the dashboard with Python's wsgiref, like ``optuna_dashboard.run_server``,
but bound to 127.0.0.1 unless told otherwise, quiet, and stoppable.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import unicodedata
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import optuna
from optuna.trial import FrozenTrial, TrialState

from dimsearch._values import is_int, is_number
from dimsearch.analysis._describe import (
    STAGE_COLUMNS,
    arch_line,
    arch_of,
    head_text,
    stage_rows,
    stem_text,
    transitions_text,
)
from dimsearch.errors import DimsearchError
from dimsearch.search.study import (
    Attr,
    Objectives,
    RepeatStats,
    front_trials,
    number_attr,
    objectives_of,
    repeat_stats,
    set_study_system_attr,
    state_counts,
    study_system_attrs,
    trial_accuracy,
    trial_handle,
    trial_id,
)
from dimsearch.zoo import label as seed_label

__all__ = ["DashboardSummary", "make_dashboard_server", "prepare_dashboard", "serve", "trial_note"]

BEGIN = "[//]: # (dimsearch:begin)"
END = "[//]: # (dimsearch:end)"
# optuna-dashboard's key layout for trial artifacts kept in study system attributes
_ARTIFACT_KEY = "dashboard:artifacts:{trial_id}:{artifact_id}"


@dataclass
class DashboardSummary:
    """What `prepare_dashboard` did to a study.

    Attributes:
        study: its name.
        metric_names: the objective names the dashboard shows.
        notes_written: notes created or updated (trial notes and the study note).
        notes_unchanged: notes already up to date.
        artifacts_uploaded: files attached to Pareto trials this time.
        artifacts_unchanged: files already attached with the same content.
        exporter: what the artifacts contain, or why there are none.
        front: numbers of the Pareto trials.
        skipped: front trials the exporter refused, and why (they get the JSON only).
    """

    study: str
    metric_names: list[str]
    notes_written: int = 0
    notes_unchanged: int = 0
    artifacts_uploaded: int = 0
    artifacts_unchanged: int = 0
    exporter: str = ""
    front: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# -- notes ---------------------------------------------------------------------------------------


def _num(value: Any, spec: str) -> str:
    if is_number(value):
        return spec.format(value)
    return "–"


# markdown punctuation that could start emphasis, code, links, images, tables, strikethrough or
# a heading's closing sequence; each is written backslash-escaped (CommonMark: a literal)
_MD_PUNCT = frozenset("\\`*_[]!|~#{}")
# HTML is written as entities (optuna-dashboard can be started with raw HTML allowed)
_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def _md_escape(text: Any) -> str:
    """Make free text from a study (its name, objective and seed names, a reason, a traceback
    line) inert in a markdown note: one line, shown literally, with no HTML, links, images,
    tables or emphasis. A study is a shared file anyone may have written into."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):  # newlines, tabs, controls
            out.append(" ")
        elif ch in _MD_ENTITIES:
            out.append(_MD_ENTITIES[ch])
        elif ch in _MD_PUNCT:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def trial_note(
    trial: FrozenTrial,
    objectives: Objectives,
    on_front: bool,
    repeats: RepeatStats | None = None,
) -> str:
    """The markdown block dimsearch writes into a trial's note (markers included); with
    ``repeats`` of more than one run, top-1 reads mean ± std over the training seeds."""
    ua = trial.user_attrs
    label = seed_label(ua.get(Attr.SEED))
    title = f"### Trial {trial.number}" + (f" · {_md_escape(label)} (seed)" if label else "")
    state = f"**{trial.state.name.lower()}**" + (" · Pareto front" if on_front else "")
    acc = trial_accuracy(trial, objectives.accuracy)
    params = number_attr(ua, Attr.PARAMS)
    top1 = f"top-1 {_num(acc, '{:.2f}')} %"
    i = objectives.accuracy
    if repeats is not None and len(repeats.runs) > 1 and i is not None:
        each = ", ".join(f"{v[i]:.2f}" for v in repeats.values)
        top1 = (
            f"top-1 {repeats.means[i]:.2f} ± {repeats.stds[i]:.2f} % "
            f"({len(repeats.runs)} training seeds: {each})"
        )
    facts = [
        top1,
        f"{_num(number_attr(ua, Attr.GFLOPS), '{:.3f}')} GFLOPs",
        f"{_num(None if params is None else params / 1e6, '{:.2f}')} M params",
        f"{_num(number_attr(ua, Attr.LATENCY_MS), '{:.2f}')} ms",
    ]
    epochs, budget = number_attr(ua, Attr.EPOCHS), number_attr(ua, Attr.EPOCHS_BUDGET)
    if epochs is not None:
        facts.append(f"{epochs:g}" + (f"/{budget:g}" if budget else "") + " epochs")
    lines = [BEGIN, "", title, "", f"{state} · " + " · ".join(facts), ""]
    cfg = arch_of(ua)
    if cfg is not None:
        target = ua.get(Attr.TARGET_IMG)
        img = target if is_int(target) and target > 0 else 224
        lines += [
            f"| {' | '.join(STAGE_COLUMNS)} |",
            "|" + "---|" * len(STAGE_COLUMNS),
            *(f"| {' | '.join(r[c] for c in STAGE_COLUMNS)} |" for r in stage_rows(cfg, img)),
            "",
            f"stem **{stem_text(cfg)}** · transitions **{transitions_text(cfg)}** · "
            f"head **{head_text(cfg)}** · grids at {img} px",
            "",
            f"`{arch_line(cfg)}`",
            "",
        ]
    else:
        lines += ["_no architecture recorded (the sample was invalid)_", ""]
    if trial.state in (TrialState.PRUNED, TrialState.FAIL) and ua.get(Attr.REASON):
        lines += [f"**{trial.state.name.lower()} because:** {_md_escape(str(ua[Attr.REASON]))}", ""]
    lines.append(END)
    return "\n".join(lines)


def study_note(study: optuna.Study, front: list[FrozenTrial]) -> str:
    """The markdown block dimsearch writes into the study's note."""
    counts = ", ".join(f"{v} {k}" for k, v in state_counts(study).items())
    lines = [
        BEGIN,
        "",
        f"### {_md_escape(study.study_name)}",
        "",
        f"Objectives: {_md_escape(', '.join(objectives_of(study).names))} · trials: {counts}",
        "",
        "Pareto front (model code attached to each trial as an artifact):",
        "",
    ]
    for t in front:
        label = seed_label(t.user_attrs.get(Attr.SEED))
        lines.append(f"- trial {t.number}" + (f" ({_md_escape(label)})" if label else ""))
    lines += ["", END]
    return "\n".join(lines)


def _merge(existing: str, block: str) -> str:
    """``existing`` with its dimsearch block replaced by ``block`` (or ``block`` put first)."""
    start, end = existing.find(BEGIN), existing.find(END)
    if start != -1 and end > start:
        rest = (existing[:start] + existing[end + len(END) :]).strip("\n")
    else:
        rest = existing.strip("\n")
    return block + ("\n\n" + rest if rest else "")


def _put_note(study: optuna.Study, trial: FrozenTrial | None, block: str) -> bool:
    """Write ``block`` into the study's note (``trial`` None) or a trial's, unless it is
    already there; True if written."""
    from optuna_dashboard import get_note, save_note

    target = study if trial is None else trial_handle(study, trial)
    old = get_note(target)
    new = _merge(old, block)
    if new == old:
        return False
    save_note(target, new)
    return True


# -- artifacts -----------------------------------------------------------------------------------


def _model_code(study: optuna.Study, trial: FrozenTrial) -> tuple[str, str]:
    """``(filename, text)``: the standalone PyTorch file ``dimsearch export`` writes for
    ``trial``, under the same name.

    Raises:
        DimsearchError: the exporter refuses the trial's record.
    """
    from dimsearch.export import generate_source, trial_record
    from dimsearch.export.codegen import module_name

    text = generate_source(trial_record(study, trial))
    return f"{module_name(study.study_name, trial.number)}.py", text


def _arch_json(study: optuna.Study, trial: FrozenTrial) -> tuple[str, str]:
    cfg = arch_of(trial.user_attrs)
    seed = trial.user_attrs.get(Attr.SEED)
    label = seed if isinstance(seed, str) and seed else "arch"
    text = json.dumps(cfg.to_dict() if cfg else trial.user_attrs.get(Attr.ARCH), indent=2)
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in label)
    return f"trial{trial.number}_{safe}.json", text + "\n"


def _trial_artifacts(attrs: dict[str, Any], tid: int) -> dict[str, dict[str, Any]]:
    """The files attached to the trial with storage id ``tid``, by file name."""
    prefix = f"dashboard:artifacts:{tid}:"
    out = {}
    for key, value in attrs.items():
        if key.startswith(prefix) and value:
            meta = json.loads(value)
            if meta:
                out[meta["filename"]] = meta
    return out


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stored_digest(store: Any, artifact_id: str) -> str | None:
    try:
        with store.open_reader(artifact_id) as f:
            return _digest(f.read())
    except Exception:  # the file was removed from the store by hand: upload it again
        return None


def _attach(
    study: optuna.Study,
    store: Any,
    trial: FrozenTrial,
    filename: str,
    text: str,
    attrs: dict[str, Any],
) -> bool:
    """Attach ``text`` as ``filename`` to a finished trial; False if already there as is."""
    data = text.encode()
    existing = _trial_artifacts(attrs, trial_id(trial)).get(filename)
    if existing is not None:
        if _stored_digest(store, existing["artifact_id"]) == _digest(data):
            return False
        key = _ARTIFACT_KEY.format(trial_id=trial_id(trial), artifact_id=existing["artifact_id"])
        set_study_system_attr(study, key, json.dumps(None))
    artifact_id = str(uuid.uuid4())
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        store.write(artifact_id, f)
    mimetype = "application/json" if filename.endswith(".json") else "text/x-python"
    meta = {
        "artifact_id": artifact_id,
        "filename": filename,
        "mimetype": mimetype,
        "encoding": None,
    }
    key = _ARTIFACT_KEY.format(trial_id=trial_id(trial), artifact_id=artifact_id)
    set_study_system_attr(study, key, json.dumps(meta))
    return True


# -- prepare and serve ---------------------------------------------------------------------------


def prepare_dashboard(study: optuna.Study, artifact_dir: Path | str | None) -> DashboardSummary:
    """Name the objectives, write the notes and attach the front's model code (idempotent).

    Args:
        study: the study to prepare (its storage must be writable).
        artifact_dir: where the artifact files go (an
            ``optuna.artifacts.FileSystemArtifactStore``), e.g. ``studies/pit.artifacts``
            next to ``studies/pit.db``; ``None``: no artifacts.
    """
    objectives = objectives_of(study)
    names = objectives.names
    if study.metric_names != names and study.user_attrs.get(Attr.OBJECTIVES):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    front = front_trials(study)
    on_front = {t.number for t in front}
    summary = DashboardSummary(study.study_name, names, front=sorted(on_front))
    stats = repeat_stats(study)
    for t in study.get_trials(deepcopy=False):
        note = trial_note(t, objectives, t.number in on_front, stats.get(t.number))
        if _put_note(study, t, note):
            summary.notes_written += 1
        else:
            summary.notes_unchanged += 1
    if _put_note(study, None, study_note(study, front)):
        summary.notes_written += 1
    else:
        summary.notes_unchanged += 1
    if artifact_dir is None:
        summary.exporter = "no artifacts (no artifact directory)"
        return summary
    store = _store(artifact_dir)
    summary.exporter = "model code from dimsearch.export + architecture JSON"
    attrs = study_system_attrs(study)
    for t in front:
        files = [_arch_json(study, t)]
        try:
            files.insert(0, _model_code(study, t))
        except DimsearchError as err:  # a record the exporter refuses: keep the JSON
            summary.skipped.append(f"trial {t.number}: no model code ({err})")
        for filename, text in files:
            if _attach(study, store, t, filename, text, attrs):
                summary.artifacts_uploaded += 1
            else:
                summary.artifacts_unchanged += 1
    return summary


class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without a log line per request (the dashboard polls every second)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _store(artifact_store: Any) -> Any:
    """A directory becomes a `FileSystemArtifactStore`; a store object is used as is."""
    if artifact_store is None or not isinstance(artifact_store, (str, Path)):
        return artifact_store
    from optuna.artifacts import FileSystemArtifactStore

    Path(artifact_store).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(artifact_store))


def make_dashboard_server(
    storage: str | optuna.storages.BaseStorage,
    host: str = "127.0.0.1",
    port: int = 8080,
    artifact_store: Any = None,
) -> WSGIServer:
    """A ready, not yet running, dashboard server; ``port=0`` picks a free port
    (``server.server_port`` says which). Call ``serve_forever()``; ``shutdown()`` stops it.

    ``artifact_store``: an Optuna artifact store, or the directory of one.
    """
    from optuna_dashboard import wsgi

    server = WSGIServer((host, port), _QuietHandler)  # bound first: a busy port creates nothing
    try:
        server.set_app(wsgi(storage, artifact_store=_store(artifact_store)))
    except BaseException:
        server.server_close()
        raise
    return server


def bind_dashboard(
    storage: str | optuna.storages.BaseStorage,
    host: str = "127.0.0.1",
    port: int = 8080,
    artifact_store: Any = None,
) -> WSGIServer:
    """`make_dashboard_server`, with a port in use (or a host that cannot be bound) as a
    `DimsearchError`: the CLI binds first, so a refused dashboard writes nothing to the study."""
    try:
        return make_dashboard_server(storage, host, port, artifact_store)
    except OSError as err:
        raise DimsearchError(
            f"cannot serve the dashboard on {host}:{port}: {err.strerror or err}; "
            "expected a free port (--port, 0 picks one) on an address of this machine (--host)"
        ) from None


def serve(
    storage: str | optuna.storages.BaseStorage | WSGIServer,
    host: str = "127.0.0.1",
    port: int = 8080,
    artifact_store: Any = None,
    *,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve optuna-dashboard on ``host:port`` until interrupted (Ctrl-C).

    Args:
        storage: the Optuna storage (URL or object) holding the studies, or a server already
            bound (`bind_dashboard`; then ``port`` and ``artifact_store`` are its own).
        host: interface to bind; 127.0.0.1 keeps it on this machine (use 0.0.0.0 only on a
            trusted network: the dashboard can edit and delete studies).
        port: TCP port; 0 picks a free one.
        artifact_store: the artifact store (or its directory) `prepare_dashboard` wrote to,
            so the trial pages can offer the files for download.
        ready: called with the dashboard URL once the socket is bound.
    """
    if isinstance(storage, WSGIServer):
        server = storage
    else:
        server = make_dashboard_server(storage, host, port, artifact_store)
    try:
        if ready is not None:
            shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
            ready(f"http://{shown}:{server.server_port}/dashboard")
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
