"""`LatencyGate`: a sample's latency predicted before it is built, for ``max_latency_ms``.

The params and GFLOPs budgets reject a sample analytically, before anything is built; latency
used to be known only once a trial had built the model and timed it. With a part table of the
trials' device (`dimsearch.cost.LatencyTable`), `OptunaSearcher` predicts each sample's latency
in microseconds and rejects one over ``budgets.max_latency_ms`` up front (PRUNED, with the
predicted figure in its reason), and keeps the prediction as a trial attribute to compare with
the measurement. The measurement at trial start still decides: a sample predicted under the
budget but measured over it is PRUNED with both figures.

Why ``latency.predict`` defaults to true, and calibrates at run start when a latency budget is
set and the table holds nothing of the space yet: calibrating takes seconds to a few minutes
once per device, settings and software (the time is printed, and the table is cached under
``<cache>/latency/`` for every later run and space), while every over-budget sample that gets
through costs a Ray trial, a model built at the target resolution and timed, and a trial of
``search.trials`` spent on nothing. Without a latency budget nothing is calibrated (nothing
would be rejected), but a cached table still gives each trial its predicted figure. ``predict:
false`` measures only. `gate_plan` says which of these a space asks for.

Predictions are per device: the table must be the one of the device the trials measure on. On
a local Ray that is this machine's; on a cluster the driver asks every node that can take a
trial for its device's name (`dimsearch.search.runner`). One name with a cached table:
predictions from it (the driver calibrates only its own device; for another one, run
``dimsearch latency calibrate`` on such a node and copy the table into the driver's cache).
Several names, or none with a table: measurement only, said once at the start.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dimsearch.config import ArchConfig
from dimsearch.errors import LatencyError

__all__ = [
    "CALIBRATION_FIT_MODELS",
    "CALIBRATION_SAMPLES",
    "DRIFT_MIN_TRIALS",
    "DRIFT_RATIO",
    "LatencyGate",
    "gate_plan",
    "latency_drift",
    "open_gate",
]

# What a run's own calibration times: the parts of this many draws of the space (plus its
# seeds) and this many whole models for the correction. `dimsearch latency calibrate` draws
# more (5000) for a fuller table; a sample whose parts the table lacks is measured only.
CALIBRATION_SAMPLES = 300
CALIBRATION_FIT_MODELS = 8

# When the measurements of a search disagree with the table as a whole. One model off by 10%
# is the predictor's own error (`dimsearch latency check`); the *median* ratio of several
# trials off by 20% is the table: timed under other load, clocks or thermal state than the
# trials now measure in (a table calibrated beside a busy search was seen to read 30x low).
DRIFT_RATIO = 1.2
DRIFT_MIN_TRIALS = 5


def gate_plan(space: Any) -> str:
    """What a run of ``space`` does about predicted latency: ``off`` (``predict: false``),
    ``calibrate`` (a latency budget: use the table, calibrating this device first if it holds
    nothing of the space) or ``cached`` (no budget: use a cached table if there is one)."""
    if not space.latency.predict:
        return "off"
    return "calibrate" if space.budgets.max_latency_ms is not None else "cached"


def latency_drift(pairs: Sequence[tuple[float, float]], space_ref: str = "SPACE") -> str | None:
    """One line when measured latencies disagree with their predictions as a whole, else None.

    ``pairs`` are (measured, predicted) ms of the trials that have both. The rule: at least
    `DRIFT_MIN_TRIALS` of them, and their median measured/predicted ratio above `DRIFT_RATIO`
    or below its inverse. Then the budget the gate enforces on predictions is off by that
    factor, and the researcher is told so and how to re-time the table, instead of trusting a
    ``pred. ms`` column that reads low (or high) throughout.
    """
    ratios = [m / p for m, p in pairs if m > 0 and p > 0]
    if len(ratios) < DRIFT_MIN_TRIALS:
        return None
    median = statistics.median(ratios)
    if 1 / DRIFT_RATIO <= median <= DRIFT_RATIO:
        return None
    return (
        f"measured latency is a median {median:.2f}x the prediction over {len(ratios)} trials: "
        "the part table was timed under other conditions (load, clocks) than these trials "
        "measure in, so a latency budget on predictions is off by as much; `dimsearch latency "
        f"calibrate {space_ref} --refresh` re-times it on a quiet machine"
    )


def table_settings(space: Any) -> Any:
    """The settings a trial of ``space`` measures with, threads resolved as the trainable
    resolves them (the trial's CPUs), so the table is the trials' own."""
    import dataclasses

    lat = space.latency
    return dataclasses.replace(lat, threads=lat.threads or max(1, int(space.resources.cpus)))


@dataclass
class LatencyGate:
    """Predicts a sample's latency from one device's table, or says why it cannot.

    Attributes:
        table: the trials' device's table, or None (measurement only).
        note: one line on what the gate does (or why it does nothing), for the live view.
        lacking: samples whose parts the table lacked (measured only).
    """

    table: Any
    note: str
    space: str = ""
    img_size: int = 224
    num_classes: int = 1000
    lacking: int = 0

    def predict(self, cfg: ArchConfig) -> float | None:
        """Predicted ms per batch of ``cfg``, or None: no table, or it lacks some part."""
        if self.table is None:
            return None
        from dimsearch.cost import predict_latency

        try:
            return predict_latency(
                cfg, self.table, self.img_size, self.num_classes, space=self.space
            )
        except LatencyError:
            self.lacking += 1
            return None


def open_gate(
    space: Any,
    device_names: Sequence[str],
    local_names: Sequence[str],
    *,
    say: Callable[[str], None] = lambda _line: None,
    root: Path | None = None,
    samples: int = CALIBRATION_SAMPLES,
    fit_models: int = CALIBRATION_FIT_MODELS,
) -> LatencyGate:
    """The gate of a run of ``space`` whose trials measure on ``device_names``.

    Args:
        space: the `SearchSpace`.
        device_names: the names of the devices the trials may measure on (CPU model, GPU
            name), one per machine or GPU; duplicates are fine.
        local_names: the same for this machine: only these can be calibrated here.
        say: where the progress of a calibration goes (its time, the table's path).
        root: the table cache (default ``<cache>/latency``).
        samples, fit_models: what a calibration here times (`CALIBRATION_SAMPLES`).
    """
    plan = gate_plan(space)
    where = {"space": space.name, "img_size": space.target_img_size,
             "num_classes": space.num_classes}  # fmt: skip
    if plan == "off":
        return LatencyGate(None, "latency.predict is off: latency is measured only", **where)
    names = sorted(set(device_names))
    settings = table_settings(space)
    kind = settings.device
    if not names:
        return LatencyGate(
            None, f"no {kind} device found for the trials: latency is measured only", **where
        )
    if len(names) > 1:
        return LatencyGate(
            None,
            f"trials may measure latency on {len(names)} kinds of {kind} ({'; '.join(names)}); "
            f"predictions are per device, so latency is measured only",
            **where,
        )
    from dimsearch.cost import open_table

    name = names[0]
    table = open_table(settings, root, device_name=name)
    own = any(m.get("space") == space.name for m in table.models.values())
    if plan == "calibrate" and not own and name in local_names:
        _calibrate(space, table, samples, fit_models, say)
        own = True
    if not table.parts:
        how = f"`dimsearch latency calibrate {space.path or space.name}` makes one"
        if name not in local_names:
            how += " on a machine with that device (copy it into this machine's cache)"
        return LatencyGate(
            None,
            f"no latency table for {name} ({kind}, batch {settings.batch}, {settings.precision}, "
            f"{settings.threads} thread(s)): latency is measured only; {how}",
            **where,
        )
    return LatencyGate(
        table,
        f"latency predicted before building from the table of {table.describe()} "
        f"({len(table.parts)} parts; {table.path})",
        **where,
    )


def _calibrate(
    space: Any, table: Any, samples: int, fit_models: int, say: Callable[[str], None]
) -> None:
    """Time the parts of ``samples`` draws of ``space`` (and its seeds) and ``fit_models``
    whole models into ``table``, and say how long it took."""
    from dimsearch import zoo
    from dimsearch.cost import calibrate
    from dimsearch.cost._check import sample_archs

    archs, _ = sample_archs(space, samples, seed=0, max_draws=10 * samples, partial=True)
    seeds = [zoo.get(name) for name in space.seeds]
    say(
        f"calibrating latency for {space.name} on {table.describe()}: the parts of "
        f"{len(archs)} samples and {len(seeds)} seeds, {min(fit_models, len(archs))} whole models"
    )
    report = calibrate(
        table,
        [*seeds, *archs],
        img_size=space.target_img_size,
        num_classes=space.num_classes,
        fit_models=archs[:fit_models],
        space=space.name,
    )
    say(
        f"calibrated {report.parts_measured} parts and {report.models_measured} whole models "
        f"in {report.seconds:.1f} s, once for this device, settings and software (cached in "
        f"{table.path})"
    )
