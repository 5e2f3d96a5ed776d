"""What a `dimsearch run` (or `sample`) needs, checked before its study is created.

A run that cannot work must say so in one line, before anything is stored: a data root that
is missing or holds one class, a trial asking for more CPUs or GPUs than any node has (Ray
would wait for them forever), latency on a GPU no trial gets, a resolution at which no
architecture of the space can be built, a Ray folder that cannot be written. Each would
otherwise create a study and fill it with failed trials, or hang, or (one class) rank every
architecture at 100%.

`check_space` and `check_resources` are pure decisions; `preflight` is the thin adapter that
gathers what they decide on (the dataset's listing, torch's device count, Ray's nodes).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dimsearch.errors import ArchError, DataError, ResourceError, SpaceError

__all__ = ["RAY_DIR_ENV", "check_resources", "check_space", "preflight", "ray_dir"]

RAY_DIR_ENV = "DIMSEARCH_RAY_DIR"
_RAY_DIR_DEFAULT = "studies/.ray"
# Random draws that must all fail before the space is declared unbuildable at its
# resolutions; the search itself gives up after `MAX_REJECTED_IN_A_ROW` (2000) of them.
_DRAWS = 200


def _source(space: Any) -> str:
    return str(space.path) if space.path is not None else f"space {space.name!r}"


def ray_dir() -> Path:
    """Where Ray Tune writes its trial folders: ``$DIMSEARCH_RAY_DIR`` or ``studies/.ray``."""
    return Path(os.environ.get(RAY_DIR_ENV, _RAY_DIR_DEFAULT)).resolve()


def check_space(space: Any) -> None:
    """The rules between a space's sections that only a run needs (pure, no I/O).

    Raises:
        ResourceError: ``latency.device: cuda`` with ``resources.gpus: 0`` (Ray hides every
            GPU from a trial that asks for none).
        SpaceError: no architecture of the space can be built at ``target_img_size`` and
            ``data.img_size`` (every sample would be pruned, the run would end with nothing).
    """
    src = _source(space)
    if space.latency.device == "cuda" and space.resources.gpus == 0:
        raise ResourceError(
            f"{src}: latency.device is 'cuda' but resources.gpus is 0: Ray gives a trial "
            "that asks for no GPU none to measure on; set resources.gpus > 0 or "
            "latency.device: cpu"
        )
    _check_buildable(space, src)


def _check_buildable(space: Any, src: str) -> None:
    """Some architecture must build at both resolutions: a seed (checked when the space
    loaded) or, failing that, one of `_DRAWS` random draws."""
    if space.seeds:
        return  # `load_space` built every seed at both resolutions
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    first = None
    for _ in range(_DRAWS):
        trial = study.ask()
        try:
            space.sample(trial)
            return
        except ArchError as err:
            first = first or str(err).split(";")[0].split(" (")[0]
        finally:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    raise SpaceError(
        f"{src}: target_img_size={space.target_img_size}, data.img_size="
        f"{space.data.img_size}: no architecture of the space can be built at these "
        f"resolutions ({_DRAWS} random draws, all invalid; the first: {first})"
    )


def check_resources(
    asks: Mapping[str, float], nodes: Sequence[Mapping[str, float]], where: str
) -> None:
    """One trial's ``{"CPU": .., "GPU": ..}`` must fit on one node of ``nodes`` (each a Ray
    node's resources): Ray never splits a trial, and waits forever for one that fits nowhere.

    Raises:
        ResourceError: naming the setting, what it asks, the largest node and the cluster.
    """
    keys = {"CPU": "resources.cpus", "GPU": "resources.gpus"}
    for res, want in asks.items():
        if not want:
            continue
        largest = max((n.get(res, 0.0) for n in nodes), default=0.0)
        if want > largest:
            total = sum(n.get(res, 0.0) for n in nodes)
            raise ResourceError(
                f"{where}: {keys[res]} is {want:g} but the largest Ray node has "
                f"{largest:g} {res} ({total:g} in a cluster of {len(nodes)} node(s)): a trial "
                f"would wait forever; lower {keys[res]} or join a cluster that has them"
            )


def _check_ray_dir(path: Path) -> None:
    """Ray Tune writes every trial's folder under ``path``: it must be a writable folder."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ResourceError(
            f"{RAY_DIR_ENV}={path}: cannot write there ({err.strerror or err}); Ray Tune "
            f"keeps its trial folders there: point {RAY_DIR_ENV} at a writable folder"
        ) from None


def _check_local_gpu(space: Any, src: str) -> None:
    """On a local Ray, the GPUs are this machine's: torch must see one if trials need it."""
    if space.latency.device != "cuda" and not space.resources.gpus:
        return
    import torch

    if not torch.cuda.is_available():
        key = "latency.device is 'cuda'" if space.latency.device == "cuda" else "resources.gpus"
        raise ResourceError(
            f"{src}: {key} asks for a GPU but torch sees none on this machine "
            f"(torch.cuda.is_available() is False); use cpu, or --address a cluster with GPUs"
        )


def preflight(space: Any, address: str | None = None) -> bool:
    """Everything a run of ``space`` needs, checked before its study is created; on a
    refusal nothing is stored and a Ray started here is stopped again.

    Starts (or joins, with ``address``) Ray, since only Ray knows the nodes a trial may get.

    Returns:
        Whether this call started Ray (so the caller stops it when it is done).

    Raises:
        DimsearchError: the first check that fails (`DataError`, `SpaceError` or
            `ResourceError`), one line naming the file or variable, the key and the rule.
    """
    from dimsearch.data.load import probe_data

    src = _source(space)
    check_space(space)
    _check_ray_dir(ray_dir())
    try:
        probe_data(space.data)
    except (DataError, OSError) as err:
        raise DataError(f"{src}: data: {err}") from None
    if not address:
        _check_local_gpu(space, src)
    import ray

    started = not ray.is_initialized()
    init_ray(address)
    try:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        asks = {"CPU": space.resources.cpus, "GPU": space.resources.gpus}
        check_resources(asks, nodes, src)
    except ResourceError:
        if started:
            ray.shutdown()
        raise
    return started


def init_ray(address: str | None) -> None:
    """Join the Ray cluster at ``address``, or start a fresh local Ray without its dashboard;
    nothing if Ray is up.

    A local Ray's own servers (gcs_server, raylet, the workers' gRPC ports) listen on every
    interface in Ray 2.60, and `ray.init` replaces a 127.0.0.1 node address by the host's
    own, so nothing passed here keeps them on loopback (tests/test_safety.py holds a strict
    xfail on it). On an untrusted network, firewall the host or use Ray's token
    authentication (``RAY_AUTH_MODE=token``).

    Raises:
        ResourceError: the cluster at ``address`` cannot be joined.
    """
    import ray

    if ray.is_initialized():
        return
    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except ConnectionError as err:
            raise ResourceError(
                f"--address {address}: cannot join a Ray cluster there ({err})"
            ) from None
    else:
        from dimsearch.search import reaper

        reaper.start()  # the local Ray's processes end with this driver, even on kill -9
        ray.init(
            address="local",  # a new local Ray, never a stale one found in /tmp/ray
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            configure_logging=True,
        )
