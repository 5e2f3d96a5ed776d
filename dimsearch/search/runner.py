"""`dimsearch run`: set up the study, launch the trials through Ray Tune, collect, summarise.

One call of `run` is one *session* of a study. The study itself persists: a rerun recovers
trials a killed driver left RUNNING (FAIL, with the reason), enqueues only the seeds not yet
present, reseeds the sampler past the trials it already has (so a resumed study does not
replay its random start-up samples) and adds ``search.trials`` new sampled trials.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from dimsearch.search.live import LiveView
from dimsearch.search.study import (
    SAMPLE_TAG,
    Attr,
    StudyError,
    missing_repeats,
    open_study,
    recover_orphans,
    resolve_storage,
    seeds_present,
    storage_url,
)

__all__ = ["RunSummary", "run", "run_sample", "sample_settings"]


class _Interrupt:
    """First Ctrl-C (or SIGTERM, as a batch scheduler sends): stop all trials gracefully (a
    Tune stopper sees the flag); a second one aborts.

    Ray Tune's own handler would tell the user to resume through Ray; resuming is ours to
    explain (rerun `dimsearch run`), so Ray's handler is switched off while ours is installed.
    """

    def __init__(self) -> None:
        self.set = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupt:
        import signal
        import threading

        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        import signal

        self.set = True
        signal.signal(signum, self._previous[signum])  # a second signal aborts at once


@dataclass
class RunSummary:
    """What one `run` did, for the CLI to print and tests to check.

    ``counts``: trials this session ended ``complete``, ``pruned`` or ``failed``; ``pruned``
    includes the ``rejected`` samples (invalid or over budget, recorded PRUNED untrained)."""

    study_name: str
    storage: str
    recovered: list[int]
    seeds_enqueued: list[str]
    counts: dict[str, int]
    interrupted: bool
    seconds: float


def _check_latency_kind(study: optuna.Study, space: Any) -> None:
    """One study, one latency device kind: figures from a CPU and a GPU do not compare."""
    kind = space.latency.device
    have = study.user_attrs.get(Attr.LATENCY_KIND)
    if have is None:
        study.set_user_attr(Attr.LATENCY_KIND, kind)
    elif have != kind:
        raise StudyError(
            f"study {study.study_name!r} measured latency on {have!r}; this space asks "
            f"{kind!r}. Latencies from different devices do not compare: use another --storage "
            f"or set latency.device: {have}"
        )


def _enqueue_seeds(study: optuna.Study, space: Any) -> list[str]:
    have = seeds_present(study)
    from dimsearch import zoo

    added = []
    for name in space.seeds:
        if name in have:
            continue
        study.enqueue_trial(
            space.params_of(zoo.get(name)), user_attrs={Attr.SEED: name}, skip_if_exists=False
        )
        added.append(name)
    return added


def session_plan(space: Any, trials: int | None = None) -> dict[str, Any]:
    """What one session runs, from the ``search:`` section (and ``--trials``): sampled trials,
    parallel trials, the wall-clock budget in seconds and the runs each front member gets."""
    s = space.search
    return {
        "sampled": s.trials if trials is None else trials,
        "max_concurrent": s.max_concurrent,
        "time_budget_s": s.timeout_min * 60 if s.timeout_min else None,
        "repeats": s.repeats,
    }


def _enqueue_repeats(study: optuna.Study, space: Any) -> list[tuple[int, int]]:
    """Enqueue the re-trainings `missing_repeats` asks for (same params, another training
    seed); a rerun enqueues only those not yet done, and retries failed ones."""
    pending = missing_repeats(study, space.search.repeats, space.train.seed)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number, train_seed in pending:
        original = by_number[number]
        attrs = {Attr.REPEAT_OF: number, Attr.TRAIN_SEED: train_seed}
        if original.user_attrs.get(Attr.SEED) is not None:
            attrs[Attr.SEED] = original.user_attrs[Attr.SEED]
        study.enqueue_trial(original.params, user_attrs=attrs, skip_if_exists=False)
    return pending


def _init_ray(address: str | None, space: Any) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(
            address="local",  # a new local Ray, never a stale one found in /tmp/ray
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            configure_logging=True,
        )


def run(
    space: Any,
    *,
    storage: str | None = None,
    address: str | None = None,
    trials: int | None = None,
    console: Console | None = None,
    trainable: Callable[[dict[str, Any]], None] | None = None,
    shutdown_ray: bool = True,
) -> RunSummary:
    """Run one session of the search over ``space``.

    Args:
        space: a validated `SearchSpace`.
        storage: Optuna storage URL or journal path (default ``studies/<space>.db``).
        address: a Ray cluster address to join (default: start a local Ray).
        trials: sampled trials to train this session (default ``space.search.trials``).
        console: where the live view and the summary go.
        trainable: the Ray trainable (default `run_trial`); the bridge tests inject others.
        shutdown_ray: stop the local Ray at the end (tests keep one Ray for several runs).
    """
    from ray import tune
    from ray.tune.stopper import Stopper

    from dimsearch.search.bridge import OptunaSearcher, StudyRecorder
    from dimsearch.search.trainable import run_trial

    console = console or Console()
    start = time.time()
    # the live view is the progress display: Ray Tune's own tables and per-trial loggers off
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # a trial that returns without reporting is ours to record (FAIL, with the reason); Ray's
    # strict metric check would instead abort the whole run with a TuneError
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    store = resolve_storage(storage, space.name)
    study = open_study(space.name, store, directions=list(space.directions))
    _check_latency_kind(study, space)
    study.set_user_attr(Attr.SPACE, space.to_dict())
    study.set_user_attr(Attr.OBJECTIVES, list(space.objectives))
    recovered = recover_orphans(study)
    seeds = _enqueue_seeds(study, space)
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    plan = session_plan(space, trials)
    total = waiting + plan["sampled"]
    study.sampler = space.make_sampler(seed_offset=len(study.trials))

    live = LiveView(console, study, total=total, timeout_min=space.search.timeout_min)
    for n in recovered:
        live.event("failed", f"trial {n} was left RUNNING by a stopped driver: marked failed")
    if seeds:
        live.event("start", f"enqueued seeds: {', '.join(seeds)}")

    if total == 0 and not missing_repeats(study, plan["repeats"], space.train.seed):
        live.event("warn", "nothing to run: no seeds or repeats pending and --trials 0")
        return RunSummary(
            space.name,
            storage_url(storage, space.name),
            recovered,
            seeds,
            {"complete": 0, "pruned": 0, "failed": 0, "rejected": 0},
            False,
            time.time() - start,
        )

    _init_ray(address, space)
    open_trials: dict = {}
    res = space.resources
    payload = _payload_builder(space)
    searcher = OptunaSearcher(study, space, payload, open_trials, live.event)
    recorder = StudyRecorder(study, space, open_trials, live.event, on_step=live.refresh)
    live.recorder = recorder
    scheduler = _scheduler(space, open_trials, live.event)
    interrupt = _Interrupt()

    class _StopOnInterrupt(Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return interrupt.set

    ray_dir = Path(os.environ.get("DIMSEARCH_RAY_DIR", "studies/.ray")).resolve()

    def fit(num_samples: int, time_budget_s: float | None) -> None:
        tuner = tune.Tuner(
            tune.with_resources(trainable or run_trial, {"cpu": res.cpus, "gpu": res.gpus}),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=num_samples,
                max_concurrent_trials=plan["max_concurrent"],
                time_budget_s=time_budget_s,
                trial_dirname_creator=lambda trial: trial.trial_id,
            ),
            run_config=tune.RunConfig(
                name=f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(ray_dir),
                callbacks=[recorder],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
                stop=_StopOnInterrupt(),
            ),
        )
        tuner.fit()

    budget_s = plan["time_budget_s"]
    interrupted = False
    with live, interrupt, _quiet_ray_tune():
        try:
            if total:
                fit(total, budget_s)
            # the trial budget is spent: the front and the seeds again, with other seeds
            pending = [] if interrupt.set else _enqueue_repeats(study, space)
            if pending:
                live.total += len(pending)
                live.event(
                    "start",
                    f"repeats: {len(pending)} re-trainings of the front and the seeds "
                    f"with {space.search.repeats - 1} further training seed(s)",
                )
                left = None if budget_s is None else max(1.0, budget_s - (time.time() - start))
                fit(len(pending), left)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            interrupted = interrupted or interrupt.set
            if interrupted:
                why = "interrupted: the run was stopped before this trial finished"
            elif space.search.timeout_min:
                why = f"the time budget ({space.search.timeout_min} min) ran out first"
            else:
                why = "the run ended before this trial finished"
            for n in recorder.close(why):
                live.event("failed", f"trial {n}: {why}")
    if shutdown_ray and not address:
        import ray

        ray.shutdown()
    return RunSummary(
        study_name=space.name,
        storage=storage_url(storage, space.name),
        recovered=recovered,
        seeds_enqueued=seeds,
        counts={
            **recorder.counts,
            "pruned": recorder.counts["pruned"] + searcher.rejected,
            "rejected": searcher.rejected,
        },
        interrupted=interrupted,
        seconds=time.time() - start,
    )


def _scheduler(space: Any, open_trials: dict, on_event: Callable[[str, str], None]) -> Any:
    """The space's rung rule behind Ray's scheduler interface (FIFO when it stops nothing)."""
    from ray.tune.schedulers import FIFOScheduler

    from dimsearch.search.scheduler import RungScheduler, make_rule

    rule = make_rule(space)
    if rule is None:
        return FIFOScheduler()
    protect_seeds = space.early_stopping.protect_seeds

    def costs_of(ray_trial_id: str) -> tuple[dict[str, float], bool] | None:
        entry = open_trials.get(ray_trial_id)
        if entry is None:
            return None
        protected = entry.repeat or (protect_seeds and entry.seed is not None)
        return {"gflops": entry.gflops, "params_m": entry.params / 1e6}, protected

    return RungScheduler(rule, costs_of, on_event)


class _quiet_ray_tune:
    """Ray Tune logs trial errors and "Trials did not complete" itself; the live view and the
    study already say all of it, with reasons, so its loggers are turned down meanwhile."""

    def __enter__(self) -> None:
        import logging

        self._levels = {}
        for name in ("ray.tune", "ray.train", "ray.air"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc: Any) -> None:
        import logging

        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)


def _payload_builder(space: Any) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    from dimsearch.search.trainable import trial_payload

    latency = dataclasses.asdict(space.latency)

    def build(arch: dict[str, Any], train_seed: int) -> dict[str, Any]:
        return trial_payload(
            arch,
            data=space.data.to_dict(),
            train={**space.train.to_dict(), "seed": train_seed},
            latency=latency,
            target_img_size=space.target_img_size,
            num_classes=space.num_classes,
            max_latency_ms=space.budgets.max_latency_ms,
            cpus=space.resources.cpus,
            gpus=space.resources.gpus,
        )

    return build


def sample_settings(space: Any, repeats: int = 1) -> Any:
    """``space`` as a design-space sample trains it: a uniform (random) sampler with the
    space's sampler seed, no early stopping, and ``repeats`` runs for the seeds and every
    `SAMPLE_REPEAT_EVERY`-th architecture; everything else (the space, budgets, seeds, data,
    training, resources) as the file says."""
    return dataclasses.replace(
        space,
        sampler=dataclasses.replace(space.sampler, kind="random"),
        early_stopping=dataclasses.replace(space.early_stopping, kind="none"),
        search=dataclasses.replace(space.search, repeats=repeats),
    )


def run_sample(
    space: Any,
    n: int,
    *,
    repeats: int = 1,
    storage: str | None = None,
    address: str | None = None,
    console: Console | None = None,
    **run_options: Any,
) -> RunSummary:
    """Record (or resume) a uniform sample of ``n`` architectures of ``space``, each trained
    the full proxy budget (`sample_settings`), seeds included on top.

    ``n`` is the size of the sample, not of this session: a rerun trains only what is missing
    (architectures that FAILed, e.g. killed with the session, are replaced by new draws), so
    a long recording survives any number of stops. The study is tagged ``sample``.
    ``repeats`` K > 1 trains the seeds and every `SAMPLE_REPEAT_EVERY`-th architecture with
    K - 1 further training seeds once the draws are done, to measure the noise of training.
    ``run_options`` go to `run` (``trainable``, ``shutdown_ray``).
    """
    spc = sample_settings(space, repeats)
    store = resolve_storage(storage, spc.name)
    study = open_study(spc.name, store, directions=list(spc.directions))
    tag = study.user_attrs.get(SAMPLE_TAG)
    stopped = [  # trained, then stopped early: a search's trial (budget rejections aside)
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        if (t.user_attrs.get(Attr.EPOCHS) or 0) >= 1
    ]
    if tag is None and stopped:
        raise StudyError(
            f"study {spc.name!r} holds a search with early stopping, not a sample: record the "
            "sample under another name or --storage"
        )
    study.set_user_attr(SAMPLE_TAG, {"n": n, "repeats": repeats})
    done = sum(
        1
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get(Attr.SEED) is None and Attr.REPEAT_OF not in t.user_attrs
    )
    return run(
        spc,
        storage=storage,
        address=address,
        trials=max(0, n - done),
        console=console,
        **run_options,
    )
