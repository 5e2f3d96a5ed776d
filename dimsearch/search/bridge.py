"""The bridge between Ray Tune (who runs trials) and the Optuna study (who remembers them).

Ray's stock ``OptunaSearch`` with ASHA was seen to record a trial stopped early as COMPLETE
with its half-trained accuracy, to lose the result that triggered the stop, and to leave
crashed trials RUNNING. This bridge avoids each by construction:

* `OptunaSearcher.suggest` asks Optuna for a trial, samples the architecture, computes its
  analytic cost and rejects (PRUNED, with the reason) anything invalid or over budget before
  Ray ever sees it; the cheap objectives are known before any training.
* `StudyRecorder` is a Tune *callback*, not searcher logic, because callbacks see every result
  (the searcher is not told the result that made the scheduler stop a trial) and the Trial
  object (whose error file holds the reason of a crash). It writes the curve after every
  epoch and decides the final state from what actually happened:
  full budget -> COMPLETE; cut short by the scheduler or over budget -> PRUNED; exception,
  non-finite value, dead worker -> FAIL with the reason.
* `StudyRecorder.close` fails, with a reason, every trial still open when the run ends (Ctrl-C,
  time budget), so no trial stays RUNNING.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from dimsearch.errors import ArchError, DimsearchError
from dimsearch.search.study import Attr, set_trial_attrs

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
    """

    def __init__(
        self,
        study: optuna.Study,
        space: Any,
        payload: Callable[[dict[str, Any], int], dict[str, Any]],
        open_trials: dict[str, OpenTrial],
        on_event: Callable[[str, str], None],
    ) -> None:
        super().__init__(metric="accuracy", mode="max")
        self.study = study
        self.space = space
        self.payload = payload
        self.open_trials = open_trials
        self.on_event = on_event
        self.rejected = 0  # samples recorded PRUNED before training, this session

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        from dimsearch import cost

        for _ in range(MAX_REJECTED_IN_A_ROW):
            trial = self.study.ask()
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
            self.open_trials[trial_id] = OpenTrial(trial, seed, gflops, est.params, repeat)
            label = f"seed {seed}" if seed else "sampled"
            if repeat:
                label = f"repeat of trial {repeat_of}, training seed {train_seed}"
            self.on_event("start", f"trial {trial.number} ({label}): {gflops:.3f} GFLOPs")
            return self.payload(cfg.to_dict(), train_seed)
        self.on_event(
            "warn",
            f"{MAX_REJECTED_IN_A_ROW} samples in a row were invalid or over budget; "
            "stopping: loosen the budgets or the ranges",
        )
        return Searcher.FINISHED

    def _prune(self, trial: optuna.Trial, reason: str) -> None:
        set_trial_attrs(self.study, trial, {Attr.REASON: reason})
        self.study.tell(trial, state=TrialState.PRUNED)
        self.rejected += 1
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

    def __getstate__(self) -> dict[str, Any]:
        return {}  # Ray pickles its tuner for a Ray-side resume we never use (see above)

    # -- progress -----------------------------------------------------------------------------

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        entry = self.open_trials.get(trial.trial_id)
        if entry is None:
            return
        entry.results.append(_clean(result))
        set_trial_attrs(self.study, entry.trial, self._progress_attrs(entry))

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        """The final epoch's weights: remember where Ray stored them."""
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
        entry = self.open_trials.pop(trial.trial_id, None)
        if entry is None:
            return
        last = _clean(trial.last_result or {})
        if not entry.results and "epoch" in last:  # Ray's bookkeeping alone is no result
            entry.results.append(last)
        self._finish(entry)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        entry = self.open_trials.pop(trial.trial_id, None)
        if entry is None:
            return
        reason, detail = _error_of(trial)
        self._fail(entry, reason, detail)

    def close(self, why: str) -> list[int]:
        """Fail every trial still open (the run ended under it); return their numbers."""
        numbers = []
        for trial_id in list(self.open_trials):
            entry = self.open_trials.pop(trial_id)
            self._fail(entry, why, None)
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
            attrs[Attr.REASON] = f"over budget after measuring: {last['over_budget']}"
            self._tell(entry, attrs, TrialState.PRUNED)
            self.on_event("pruned", f"trial {number} pruned: {last['over_budget']}")
        elif acc is None or not math.isfinite(acc):
            self._fail(entry, f"non-finite accuracy {acc!r} at epoch {attrs[Attr.EPOCHS]}", None)
        elif attrs[Attr.EPOCHS] < budget:
            attrs[Attr.REASON] = (
                f"stopped early by the scheduler after epoch {attrs[Attr.EPOCHS]} of {budget} "
                f"(accuracy {acc:.2f}%)"
            )
            self._tell(entry, attrs, TrialState.PRUNED)
            self.on_event("pruned", f"trial {number} stopped early at epoch {attrs[Attr.EPOCHS]}")
        else:
            values = self._values(entry, acc, last)
            self._tell(entry, attrs, TrialState.COMPLETE, values)
            self.on_event("complete", f"trial {number} complete: {acc:.2f}%")

    def _values(self, entry: OpenTrial, acc: float, last: dict[str, Any]) -> list[float]:
        figures = {
            "accuracy": acc,
            "gflops": entry.gflops,
            "params_m": entry.params / 1e6,
            "latency_ms": last.get(Attr.LATENCY_MS, math.nan),
        }
        return [float(figures[name]) for name in self.space.objectives]

    def _fail(self, entry: OpenTrial, reason: str, detail: str | None) -> None:
        attrs = self._progress_attrs(entry) if entry.results else {}
        attrs[Attr.REASON] = reason
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
            self.study.tell(entry.trial, values=values, state=state)
        except (ValueError, RuntimeError, DimsearchError) as err:
            # e.g. a NaN latency in values: never leave the trial RUNNING because of it
            set_trial_attrs(self.study, entry.trial, {Attr.REASON: f"could not record: {err}"})
            self.study.tell(entry.trial, state=TrialState.FAIL)
            state = TrialState.FAIL
        key = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(state, "failed")
        self.counts[key] += 1


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
