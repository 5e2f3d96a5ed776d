"""The bridge between Ray Tune (who runs trials) and the Optuna study (who remembers them).

Ray's stock ``OptunaSearch`` with ASHA was seen to record a trial stopped early as COMPLETE
with its half-trained accuracy, to lose the result that triggered the stop, and to leave
crashed trials RUNNING. This bridge avoids each by construction:

* `OptunaSearcher.suggest` asks Optuna for a trial, samples the architecture, computes its
  analytic cost and its latency predicted from the device's part table (`LatencyGate`), and
  rejects (PRUNED, with the reason) anything invalid or over budget before Ray ever sees it;
  the cheap objectives are known before any training.
* `StudyRecorder` is a Tune *callback*, not searcher logic, because callbacks see every result
  (the searcher is not told the result that made the scheduler stop a trial) and the Trial
  object (whose error file holds the reason of a crash). It writes the curve after every
  epoch and decides the final state from what actually happened:
  full budget -> COMPLETE; cut short by the scheduler or over budget -> PRUNED; exception,
  non-finite value, dead worker -> FAIL with the reason.
* `StudyRecorder.close` fails, with a reason and its cause, every trial still open when the
  run ends (Ctrl-C, SIGTERM, time budget), so no trial stays RUNNING. It writes only to the
  study, never to Ray, so it also works once Ray's processes are gone (a SIGTERM to the
  whole process group); its lock keeps it from racing Tune's callbacks when it is called
  from another thread.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from dimsearch.errors import ArchError, DimsearchError
from dimsearch.search.gate import latency_drift
from dimsearch.search.provenance import changes
from dimsearch.search.study import Attr, FailCause, StorageError, set_trial_attrs, storage_call

__all__ = ["OpenTrial", "OptunaSearcher", "StudyRecorder"]

MAX_REJECTED_IN_A_ROW = 2000  # samples that are invalid/over budget before giving up


@dataclass
class OpenTrial:
    """An Optuna trial handed to Ray and not yet told its outcome."""

    trial: optuna.Trial
    seed: str | None
    gflops: float
    params: int
    repeat: bool = False  # a re-training of a finished trial with another training seed
    predicted_ms: float | None = None  # latency predicted from the part table, if any
    results: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.time)


class OptunaSearcher(Searcher):
    """Ray Tune searcher that asks the Optuna study for architectures.

    Args:
        study: the study (already holding the enqueued seeds).
        space: the `SearchSpace` (sampling, budgets, cost resolution).
        payload: builds the trial's Ray config from an `ArchConfig` dict and a training seed.
        open_trials: shared with the recorder: Ray trial id -> `OpenTrial`.
        on_event: called with (kind, message) for the live view.
        gate: predicts a sample's latency before it is built (`dimsearch.search.gate`);
            None: measured only.
    """

    def __init__(
        self,
        study: optuna.Study,
        space: Any,
        payload: Callable[[dict[str, Any], int], dict[str, Any]],
        open_trials: dict[str, OpenTrial],
        on_event: Callable[[str, str], None],
        gate: Any = None,
    ) -> None:
        super().__init__(metric="accuracy", mode="max")
        self.study = study
        self.space = space
        self.payload = payload
        self.open_trials = open_trials
        self.on_event = on_event
        self.gate = gate
        self.rejected = 0  # in a row: the searcher gives up after MAX_REJECTED_IN_A_ROW
        self.pruned = 0  # in all, for the session's summary

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        from dimsearch import cost

        for _ in range(MAX_REJECTED_IN_A_ROW):
            trial = storage_call(self.study, self.study.ask)
            seed = trial.user_attrs.get(Attr.SEED)
            repeat_of = trial.user_attrs.get(Attr.REPEAT_OF)
            train_seed = trial.user_attrs.get(Attr.TRAIN_SEED, self.space.train.seed)
            try:
                cfg = self.space.sample(trial)
                est = cost.estimate(cfg, self.space.target_img_size, self.space.num_classes)
            except ArchError as err:
                self._prune(trial, f"invalid architecture: {err}")
                continue
            cfg = cfg.replace(name=seed or f"trial{trial.number}")
            gflops = est.flops / 1e9
            set_trial_attrs(
                self.study,
                trial,
                {
                    Attr.ARCH: cfg.to_dict(),
                    Attr.PARAMS: est.params,
                    Attr.GFLOPS: gflops,
                    Attr.TARGET_IMG: self.space.target_img_size,
                    Attr.PROXY_IMG: self.space.data.img_size,
                    Attr.EPOCHS_BUDGET: self.space.train.epochs,
                    Attr.TRAIN_SEED: train_seed,
                    Attr.RAY_TRIAL: trial_id,
                },
            )
            reason = self.space.check_budgets(cfg)
            if reason:
                self._prune(trial, f"over budget before training: {reason}")
                continue
            repeat = repeat_of is not None
            predicted = self._predict(trial, cfg)
            # a repeat re-trains a trial that was measured within the budget: not re-judged
            over = None if predicted is None or repeat else self.space.check_latency(predicted)
            if over:
                self._prune(trial, f"over budget before building: predicted latency {over}")
                continue
            self.rejected = 0
            self.open_trials[trial_id] = OpenTrial(
                trial, seed, gflops, est.params, repeat, predicted_ms=predicted
            )
            label = f"seed {seed}" if seed else "sampled"
            if repeat:
                label = f"repeat of trial {repeat_of}, training seed {train_seed}"
            text = f"trial {trial.number} ({label}): {gflops:.3f} GFLOPs"
            if predicted is not None:
                text += f", {predicted:.2f} ms predicted"
            self.on_event("start", text)
            return self.payload(cfg.to_dict(), train_seed)
        self.on_event(
            "warn",
            f"{MAX_REJECTED_IN_A_ROW} samples in a row were invalid or over budget; "
            "stopping: loosen the budgets or the ranges",
        )
        return Searcher.FINISHED

    def _predict(self, trial: optuna.Trial, cfg: Any) -> float | None:
        """The gate's predicted latency of ``cfg``, stored on the trial; None without one.
        The first sample whose parts the table lacks is said once (measured only)."""
        if self.gate is None:
            return None
        lacking = self.gate.lacking
        predicted = self.gate.predict(cfg)
        if predicted is not None:
            set_trial_attrs(self.study, trial, {Attr.PREDICTED_LATENCY_MS: predicted})
        elif lacking == 0 and self.gate.lacking:
            self.on_event(
                "warn",
                f"trial {trial.number}: the latency table lacks some of its parts, so its "
                "latency is measured only (as for any such sample; said once). `dimsearch "
                "latency calibrate` times a fuller table",
            )
        return predicted

    def _prune(self, trial: optuna.Trial, reason: str) -> None:
        set_trial_attrs(self.study, trial, {Attr.REASON: reason})
        storage_call(self.study, self.study.tell, trial, state=TrialState.PRUNED)
        self.rejected += 1
        self.pruned += 1
        self.on_event("pruned", f"trial {trial.number} pruned: {reason}")

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """Outcomes are recorded by `StudyRecorder`, which sees every result and the error."""

    # The Optuna study is the state a search resumes from, not Ray's experiment checkpoint,
    # so Ray's own save / pickling of the searcher carries nothing (a live storage connection
    # and console do not pickle).
    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: `dimsearch run` resumes from the study."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: `dimsearch run` resumes from the study."""

    def __getstate__(self) -> dict[str, Any]:
        return {}


class StudyRecorder(Callback):
    """Tune callback that writes each trial's progress and outcome into the study."""

    def __init__(
        self,
        study: optuna.Study,
        space: Any,
        open_trials: dict[str, OpenTrial],
        on_event: Callable[[str, str], None],
        on_step: Callable[[], None] | None = None,
    ) -> None:
        self.study = study
        self.space = space
        self.open_trials = open_trials
        self.on_event = on_event
        self.on_step = on_step
        self.counts = {"complete": 0, "pruned": 0, "failed": 0}
        self.data_cache = study.user_attrs.get(Attr.DATA_CACHE)
        self.latency_pairs: list[tuple[float, float]] = []  # (measured, predicted) ms
        self.drift_said = False
        # held while a trial is written: `close` may come from the SIGTERM watchdog's thread
        self.lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        return {}  # Ray pickles its tuner for a Ray-side resume we never use (see above)

    # -- progress -----------------------------------------------------------------------------

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        with self.lock:
            entry = self.open_trials.get(trial.trial_id)
            if entry is None:
                return
            entry.results.append(_clean(result))
            set_trial_attrs(self.study, entry.trial, self._progress_attrs(entry))
            cache = result.get(Attr.DATA_CACHE)
            if isinstance(cache, dict) and cache != self.data_cache:
                self._record_data_cache(cache)

    def _record_data_cache(self, cache: dict[str, Any]) -> None:
        """Record the proxy data the trials train on; say so when it is not what the study
        recorded before (trials on other data may not compare), and go on."""
        changed = changes(self.data_cache, cache)
        if changed:
            self.on_event(
                "warn",
                f"the proxy data differs from what study {self.study.study_name!r} recorded "
                f"before ({'; '.join(changed)}): earlier trials may not compare with these",
            )
        storage_call(self.study, self.study.set_user_attr, Attr.DATA_CACHE, cache)
        self.data_cache = cache

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        """The final epoch's weights: remember where Ray stored them."""
        with self.lock:
            entry = self.open_trials.get(trial.trial_id)
            path = getattr(checkpoint, "path", None)
            if entry is None or not path:
                return
            last = entry.results[-1] if entry.results else {}
            set_trial_attrs(
                self.study,
                entry.trial,
                {
                    Attr.WEIGHTS: os.path.join(path, "model.pt"),
                    Attr.PROXY_CLASSES: last.get("proxy_num_classes"),
                    Attr.PROXY_CHANNELS: last.get("proxy_in_chans"),
                },
            )

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self.on_step is not None:
            self.on_step()

    # -- outcomes -----------------------------------------------------------------------------

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        with self.lock:
            entry = self.open_trials.get(trial.trial_id)
            if entry is None:
                return
            last = _clean(trial.last_result or {})
            if not entry.results and "epoch" in last:  # Ray's bookkeeping alone is no result
                entry.results.append(last)
            self._finish(entry)
            del self.open_trials[trial.trial_id]

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        with self.lock:
            entry = self.open_trials.get(trial.trial_id)
            if entry is None:
                return
            reason, detail = _error_of(trial)
            self._fail(entry, reason, detail)
            del self.open_trials[trial.trial_id]

    def close(self, why: str, cause: str) -> list[int]:
        """Fail every trial still open (the run ended under it, for ``cause``, a `FailCause`);
        return their numbers. A trial leaves `open_trials` only once recorded, so after a
        `StorageError` the ones not written are still there to be told about."""
        numbers = []
        with self.lock:
            for trial_id, entry in list(self.open_trials.items()):
                self._fail(entry, why, None, cause)
                del self.open_trials[trial_id]
                numbers.append(entry.trial.number)
        return numbers

    def _progress_attrs(self, entry: OpenTrial) -> dict[str, Any]:
        epochs = [r for r in entry.results if r.get("epoch", 0) >= 1]
        last = entry.results[-1]
        attrs: dict[str, Any] = {
            Attr.CURVE: [r.get("accuracy") for r in epochs],
            Attr.TRAIN_LOSS: [r.get("train_loss") for r in epochs],
            Attr.EPOCH_SECONDS: [r.get("epoch_seconds") for r in epochs],
            Attr.EPOCH_CPU_SECONDS: [r.get("epoch_cpu_seconds") for r in epochs],
            Attr.EPOCHS: len(epochs),
            Attr.SECONDS: round(time.time() - entry.started, 3),
        }
        for key in (Attr.LATENCY_MS, Attr.LATENCY, Attr.NODE):
            if key in last:
                attrs[key] = last[key]
        return attrs

    def _finish(self, entry: OpenTrial) -> None:
        number = entry.trial.number
        if not entry.results:
            self._fail(entry, "the trial ended without reporting any result", None)
            return
        attrs = self._progress_attrs(entry)
        last = entry.results[-1]
        budget = self.space.train.epochs
        acc = last.get("accuracy")
        if "over_budget" in last:
            why = last["over_budget"]
            if entry.predicted_ms is not None:
                why += f"; predicted {entry.predicted_ms:.2f} ms"
            attrs[Attr.REASON] = f"over budget after measuring: {why}"
            self._tell(entry, attrs, TrialState.PRUNED)
            self.on_event("pruned", f"trial {number} pruned: {why}")
        elif acc is None or not math.isfinite(acc):
            self._fail(entry, f"non-finite accuracy {acc!r} at epoch {attrs[Attr.EPOCHS]}", None)
        elif attrs[Attr.EPOCHS] < budget:
            attrs[Attr.REASON] = (
                f"stopped early by the scheduler after epoch {attrs[Attr.EPOCHS]} of {budget} "
                f"(accuracy {acc:.2f}%)"
            )
            self._tell(entry, attrs, TrialState.PRUNED)
            self.on_event(
                "pruned",
                f"trial {number} stopped early at epoch {attrs[Attr.EPOCHS]}"
                + _latency_note(entry, last),
            )
        else:
            values = self._values(entry, acc, last)
            self._tell(entry, attrs, TrialState.COMPLETE, values)
            self.on_event(
                "complete", f"trial {number} complete: {acc:.2f}%" + _latency_note(entry, last)
            )
        self._watch_drift(entry, last)

    def _watch_drift(self, entry: OpenTrial, last: dict[str, Any]) -> None:
        """Say once per session when the measurements disagree with the table as a whole
        (`latency_drift`): the live view's per-trial figures would show it only to a reader
        who compares every line."""
        measured = last.get(Attr.LATENCY_MS)
        if entry.predicted_ms is None or not isinstance(measured, int | float):
            return
        self.latency_pairs.append((float(measured), entry.predicted_ms))
        note = (
            None
            if self.drift_said
            else latency_drift(self.latency_pairs, str(self.space.path or self.space.name))
        )
        if note:
            self.drift_said = True
            self.on_event("warn", note)

    def _values(self, entry: OpenTrial, acc: float, last: dict[str, Any]) -> list[float]:
        figures = {
            "accuracy": acc,
            "gflops": entry.gflops,
            "params_m": entry.params / 1e6,
            "latency_ms": last.get(Attr.LATENCY_MS, math.nan),
        }
        return [float(figures[name]) for name in self.space.objectives]

    def _fail(
        self, entry: OpenTrial, reason: str, detail: str | None, cause: str = FailCause.ERROR
    ) -> None:
        attrs = self._progress_attrs(entry) if entry.results else {}
        attrs[Attr.REASON] = reason
        attrs[Attr.FAIL_CAUSE] = cause
        if detail:
            attrs[Attr.ERROR] = detail
        self._tell(entry, attrs, TrialState.FAIL)
        self.on_event("failed", f"trial {entry.trial.number} failed: {reason}")

    def _tell(
        self,
        entry: OpenTrial,
        attrs: dict[str, Any],
        state: TrialState,
        values: list[float] | None = None,
    ) -> None:
        try:
            set_trial_attrs(self.study, entry.trial, attrs)
            storage_call(self.study, self.study.tell, entry.trial, values=values, state=state)
        except StorageError:
            raise  # the storage itself is gone: nothing more can be written here
        except (ValueError, RuntimeError, DimsearchError) as err:
            # e.g. a NaN latency in values: never leave the trial RUNNING because of it
            set_trial_attrs(
                self.study,
                entry.trial,
                {Attr.REASON: f"could not record: {err}", Attr.FAIL_CAUSE: FailCause.ERROR},
            )
            storage_call(self.study, self.study.tell, entry.trial, state=TrialState.FAIL)
            state = TrialState.FAIL
        key = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(state, "failed")
        self.counts[key] += 1


def _latency_note(entry: OpenTrial, last: dict[str, Any]) -> str:
    """``"; latency 8.10 ms measured, 7.95 ms predicted"`` for the live view, where both
    figures exist; else nothing."""
    measured = last.get(Attr.LATENCY_MS)
    if entry.predicted_ms is None or not isinstance(measured, int | float):
        return ""
    return f"; latency {measured:.2f} ms measured, {entry.predicted_ms:.2f} ms predicted"


def _clean(result: dict[str, Any]) -> dict[str, Any]:
    """The part of a Ray result that is ours (Ray adds timing and bookkeeping keys)."""
    keep = (
        "epoch",
        "accuracy",
        "train_loss",
        "val_loss",
        "lr",
        "epoch_seconds",
        "epoch_cpu_seconds",
        "images_per_s",
        "over_budget",
        Attr.PROXY_CLASSES,
        Attr.PROXY_CHANNELS,
        Attr.LATENCY_MS,
        Attr.LATENCY,
        Attr.NODE,
    )
    return {k: result[k] for k in keep if k in result}


def _error_of(trial: Any) -> tuple[str, str | None]:
    """(one-line reason, traceback tail) of a Ray trial that errored."""
    text = ""
    try:
        err = trial.get_error()
        text = str(err) if err is not None else ""
    except Exception:  # the error file may be on a node we cannot read; fall back below
        text = ""
    if not text and getattr(trial, "error_file", None):
        try:
            with open(trial.error_file) as f:
                text = f.read()
        except OSError:
            text = ""
    if not text:
        return "the trial's worker failed without an error message (worker died?)", None
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    reason = _reason_line(lines)
    return reason, "\n".join(lines[-40:])[-4000:]


def _reason_line(lines: list[str]) -> str:
    """Pick the line that says what went wrong: the last exception line, or Ray's summary."""
    for line in reversed(lines):
        if any(
            tag in line
            for tag in ("Error:", "Error(", "Exception:", "OutOfMemory", "died", "killed", "exit")
        ):
            return line[:500]
    return lines[-1][:500]
