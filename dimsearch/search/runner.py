"""`dimsearch run`: set up the study, launch the trials through Ray Tune, collect, summarise.

One call of `run` is one *session* of a study. The study itself persists: a rerun recovers
trials a killed driver left RUNNING (FAIL, with the reason), enqueues the seeds not yet
trained (`seeds_to_train`: also those a stopped run lost), reseeds the sampler past the
trials it already has (so a resumed study does not replay its random start-up samples) and
adds ``search.trials`` new sampled trials. Each session records its library versions and
source commit in the study, and warns when they differ from the previous session's
(`dimsearch.search.provenance`).

How a session ends, and what it leaves:

* normally, Ctrl-C, or SIGTERM to the driver alone: Tune stops the trials, every open trial is
  recorded FAIL with the reason, and the local Ray is shut down;
* SIGTERM to the whole process group (``timeout``, batch schedulers) kills Ray's processes
  with the driver's; Ray calls then block for Ray's 60 s RPC timeout, so a watchdog thread
  records the open trials itself and exits (status 143) as soon as the local Ray is seen
  dead, or `TERM_GRACE_S` after the signal;
* the study's storage stops taking writes: the run stops with a `StorageError` (exit 2);
* ``kill -9``: nothing can be recorded; the next run marks the trials failed, and the
  `reaper` ends the local Ray's processes within seconds.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from dimsearch.search.live import LiveView
from dimsearch.search.preflight import preflight, ray_dir
from dimsearch.search.study import (
    SAMPLE_TAG,
    Attr,
    FailCause,
    StorageError,
    StudyError,
    missing_repeats,
    open_study,
    recover_orphans,
    seeds_to_train,
    storage_url,
)

__all__ = ["TERM_GRACE_S", "RunSummary", "run", "run_sample", "sample_settings"]

TERM_GRACE_S = 10.0  # after SIGTERM, how long a live Ray gets to stop its trials gracefully


class _Interrupt:
    """First Ctrl-C (or SIGTERM, as a batch scheduler sends): stop all trials gracefully (a
    Tune stopper sees the flag); a second one aborts. A SIGTERM also starts ``on_term`` in a
    thread of its own: the main thread may be stuck in a call to a Ray that died with it.

    Ray Tune's own handler would tell the user to resume through Ray; resuming is ours to
    explain (rerun `dimsearch run`), so Ray's handler is switched off while ours is installed.
    """

    def __init__(self, on_term: Callable[[], None] | None = None) -> None:
        self.set = False
        self.signum: int | None = None
        self.on_term = on_term
        self._previous: dict[int, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the Tune stopper that reads the flag; the watchdog and handlers stay here
        return {"set": self.set, "signum": self.signum, "on_term": None, "_previous": {}}

    def __enter__(self) -> _Interrupt:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.set = True
        self.signum = self.signum or signum
        signal.signal(signum, self._previous[signum])  # a second signal aborts at once
        if signum == signal.SIGTERM and self.on_term is not None:
            threading.Thread(target=self.on_term, name="dimsearch-sigterm", daemon=True).start()


def _local_ray_alive() -> bool:
    """Whether the processes of the Ray this driver started (GCS server, raylet...) all still
    run; True for a joined cluster or when it cannot tell. Ray keeps its node object private
    (``ray._private.worker._global_node``); this is the one place that reads it."""
    try:
        import ray._private.worker as ray_worker

        node = ray_worker._global_node
        return node is None or node.remaining_processes_alive()
    except Exception:  # another Ray version: fall back on `TERM_GRACE_S` alone
        return True


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


def _record_versions(study: optuna.Study) -> list[str]:
    """Record this session's library versions and source commit in the study; return what
    changed since the last session recorded them (``["torch 2.3.0 -> 2.4.1"]``). A resumed
    study under other versions is the user's to judge: it is said, never refused."""
    from dimsearch.search.provenance import changes, current_versions

    now = current_versions()
    changed = changes(study.user_attrs.get(Attr.VERSIONS), now)
    study.set_user_attr(Attr.VERSIONS, now)
    return changed


def _enqueue_seeds(study: optuna.Study, space: Any) -> list[str]:
    from dimsearch import zoo

    added = []
    for name in seeds_to_train(study, space.seeds):
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


def _enqueue_repeats(
    study: optuna.Study, space: Any, tried: set[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Enqueue the re-trainings `missing_repeats` asks for (same params, another training
    seed) and not in ``tried``; a rerun enqueues only those not yet done, and retries failed
    ones (once per session: ``tried`` holds what this session already asked for)."""
    pending = [
        p for p in missing_repeats(study, space.search.repeats, space.train.seed) if p not in tried
    ]
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number, train_seed in pending:
        original = by_number[number]
        attrs = {Attr.REPEAT_OF: number, Attr.TRAIN_SEED: train_seed}
        if original.user_attrs.get(Attr.SEED) is not None:
            attrs[Attr.SEED] = original.user_attrs[Attr.SEED]
        study.enqueue_trial(original.params, user_attrs=attrs, skip_if_exists=False)
    return pending


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

    Raises:
        DimsearchError: a `preflight` check failed; no study was created or changed.
    """
    preflight(space, address)
    return _run(
        space,
        storage=storage,
        address=address,
        trials=trials,
        console=console,
        trainable=trainable,
        shutdown_ray=shutdown_ray,
    )


def _run(
    space: Any,
    *,
    storage: str | None,
    address: str | None,
    trials: int | None,
    console: Console | None,
    trainable: Callable[[dict[str, Any]], None] | None = None,
    shutdown_ray: bool = True,
) -> RunSummary:
    """`run` once `preflight` has passed (and Ray is up)."""
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
    study = open_study(space.name, storage, directions=list(space.directions))
    _check_latency_kind(study, space)
    changed = _record_versions(study)
    study.set_user_attr(Attr.SPACE, space.to_dict())
    study.set_user_attr(Attr.OBJECTIVES, list(space.objectives))
    recovered = recover_orphans(study)
    seeds = _enqueue_seeds(study, space)
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    plan = session_plan(space, trials)
    total = waiting + plan["sampled"]
    study.sampler = space.make_sampler(seed_offset=len(study.trials))

    live = LiveView(console, study, total=total, timeout_min=space.search.timeout_min)
    if changed:
        live.event(
            "warn",
            f"study {study.study_name!r} was last run with other versions: {', '.join(changed)}; "
            "its earlier trials may not compare with this session's",
        )
    for n in recovered:
        live.event("failed", f"trial {n} was left RUNNING by a stopped driver: marked failed")
    if seeds:
        live.event("start", f"enqueued seeds: {', '.join(seeds)}")

    if total == 0 and not missing_repeats(study, plan["repeats"], space.train.seed):
        live.event("warn", "nothing to run: no seeds or repeats pending and --trials 0")
        if shutdown_ray and not address:
            import ray

            ray.shutdown()
        return RunSummary(
            space.name,
            storage_url(storage, space.name),
            recovered,
            seeds,
            {"complete": 0, "pruned": 0, "failed": 0, "rejected": 0},
            False,
            time.time() - start,
        )

    gate = _latency_gate(space, address, live.event)
    open_trials: dict = {}
    res = space.resources
    payload = _payload_builder(space)
    searcher = OptunaSearcher(study, space, payload, open_trials, live.event, gate)
    recorder = StudyRecorder(study, space, open_trials, live.event, on_step=live.refresh)
    live.recorder = recorder
    scheduler = _scheduler(space, open_trials, live.event)
    finished = threading.Event()

    def on_term() -> None:
        """SIGTERM: a live Ray gets `TERM_GRACE_S` to stop the trials through Tune; a dead one
        (the signal reached its processes too) none. Then the open trials are recorded here,
        under the recorder's lock, and the process exits without another call to Ray."""
        deadline = time.monotonic() + TERM_GRACE_S
        while time.monotonic() < deadline and _local_ray_alive():
            if finished.wait(0.2):
                return
        with recorder.lock:
            if finished.is_set():
                return
            why = "terminated: SIGTERM stopped the run (and its Ray) before this trial finished"
            try:
                recorder.close(why, FailCause.INTERRUPTED)  # each trial is told to the live view
                said = "every open trial is recorded as failed"
            except StorageError as err:
                said = str(err)
            live.event("warn", f"terminated by SIGTERM: {said}; rerun the same command to resume")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signal.SIGTERM)

    interrupt = _Interrupt(on_term)

    class _StopOnInterrupt(Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return interrupt.set

    trials_dir = ray_dir()

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
                storage_path=str(trials_dir),
                callbacks=[recorder],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
                stop=_StopOnInterrupt(),
            ),
        )
        tuner.fit()

    budget_s = plan["time_budget_s"]
    interrupted = False
    storage_error: StorageError | None = None
    with live, interrupt, _quiet_ray_tune():
        try:
            if total:
                fit(total, budget_s)
            # The trial budget is spent: the front and the seeds again, with other seeds.
            # Means move the front: an architecture whose repeat fell behind leaves it and
            # one trained once may join it, so rounds go on until every front member has its
            # runs (each round repeats only new members, so this ends; `tried` keeps a
            # repeat that fails from being asked for again in this session).
            tried: set[tuple[int, int]] = set()
            while not interrupt.set and (budget_s is None or time.time() - start < budget_s):
                pending = _enqueue_repeats(study, space, tried)
                if not pending:
                    break
                live.total += len(pending)
                live.event(
                    "start",
                    f"repeats: {len(pending)} re-trainings of the front and the seeds "
                    f"with {space.search.repeats - 1} further training seed(s)"
                    if not tried
                    else f"repeats: the means moved the front; {len(pending)} re-trainings "
                    "of its new members",
                )
                tried.update(pending)
                left = None if budget_s is None else max(1.0, budget_s - (time.time() - start))
                fit(len(pending), left)
        except KeyboardInterrupt:
            interrupted = True
        except Exception as err:
            storage_error = _storage_error_in(err)
            if storage_error is None:
                raise
        finally:
            interrupted = interrupted or interrupt.set
            cause = FailCause.INTERRUPTED if interrupted else FailCause.ENDED
            if storage_error is not None:
                why, cause = f"the study's storage failed: {storage_error}", FailCause.STORAGE
            elif interrupted:
                signame = "SIGTERM" if interrupt.signum == signal.SIGTERM else "Ctrl-C"
                why = f"interrupted: the run was stopped ({signame}) before this trial finished"
            elif space.search.timeout_min:
                why = f"the time budget ({space.search.timeout_min} min) ran out first"
            else:
                why = "the run ended before this trial finished"
            try:
                for n in recorder.close(why, cause):
                    live.event("failed", f"trial {n}: {why}")
            except StorageError as err:
                storage_error = storage_error or err
    if shutdown_ray and not address:
        import ray

        ray.shutdown()
    finished.set()
    if storage_error is not None:
        raise storage_error
    return RunSummary(
        study_name=space.name,
        storage=storage_url(storage, space.name),
        recovered=recovered,
        seeds_enqueued=seeds,
        counts={
            **recorder.counts,
            "pruned": recorder.counts["pruned"] + searcher.pruned,
            "rejected": searcher.pruned,
        },
        interrupted=interrupted,
        seconds=time.time() - start,
    )


def _latency_gate(space: Any, address: str | None, on_event: Callable[[str, str], None]) -> Any:
    """The run's `LatencyGate` (`dimsearch.search.gate`): the table of the device the trials
    measure on. A local Ray runs them here; on a cluster every node that can take a trial is
    asked for its device's name, since the driver's may differ. Its note is said once."""
    from dimsearch.cost._latency import local_device_names
    from dimsearch.search.gate import gate_plan, open_gate

    if gate_plan(space) == "off":
        return None
    kind = space.latency.device
    local = local_device_names(kind)
    names = local if address is None else node_device_names(kind, space.resources)
    gate = open_gate(space, names, local, say=lambda line: on_event("start", line))
    on_event("start" if gate.table is not None else "warn", gate.note)
    return gate


def node_device_names(kind: str, resources: Any) -> list[str]:
    """The names of the ``kind`` devices (CPU model, GPU names) of every alive Ray node that
    has the resources of a trial, asked on each node by a task pinned to it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from dimsearch.cost._latency import local_device_names

    ask = ray.remote(local_device_names)
    gpus = resources.gpus if kind == "cuda" else 0
    refs = []
    for node in ray.nodes():
        have = node.get("Resources", {})
        if not node.get("Alive") or have.get("CPU", 0) < resources.cpus:
            continue
        if have.get("GPU", 0) < gpus:
            continue
        pin = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        refs.append(ask.options(num_cpus=0, num_gpus=gpus, scheduling_strategy=pin).remote(kind))
    return [name for names in ray.get(refs, timeout=300) for name in names]


def _storage_error_in(err: BaseException) -> StorageError | None:
    """The `StorageError` behind ``err``: Tune re-raises a callback's error in its own."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, StorageError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


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

    Raises:
        DimsearchError: a `preflight` check failed (no study was created or changed), or the
            study holds a search, not a sample.
    """
    spc = sample_settings(space, repeats)
    preflight(spc, address)
    study = open_study(spc.name, storage, directions=list(spc.directions))
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
    return _run(
        spc,
        storage=storage,
        address=address,
        trials=max(0, n - done),
        console=console,
        **run_options,
    )
