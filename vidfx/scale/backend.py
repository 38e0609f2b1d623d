"""The Ray backend: render one graph on many processes or machines, with the same frames.

``run_on_ray(graph, ...)`` plans the output into segments (``plan.py``), renders them on a
pool of Ray actors (``worker.py``: one long-lived process per worker, models loaded once)
and joins them on the driver (``assemble.py``). A worker that dies is restarted by Ray and
its segment is rendered again from scratch, so no frame is lost or written twice; a
``manifest.json`` in the work dir (the plan and a fingerprint of the job) lets ``resume``
reuse every segment finished before an interruption. See docs/scale-out.md.

Ray is an optional dependency (``pip install 'vidfx[ray]'``); it is imported only here,
and only when the backend runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vidfx.core.engine import RunSummary, build_runs, resolve_device
from vidfx.core.errors import GraphError, MediaError, VidfxError
from vidfx.core.graph import Graph

from .assemble import assemble, segment_format
from .job import Job, job_from_graph
from .plan import DEFAULT_SEGMENT_FRAMES, Plan, plan_segments, upstream
from .worker import SegmentWorker, read_record, write_json

log = logging.getLogger("vidfx.scale")

MANIFEST = "manifest.json"
INSTALL_HINT = "the Ray backend needs Ray: pip install 'vidfx[ray]'"


@dataclass(frozen=True)
class RayProgress:
    """Where a Ray run stands: output frames in finished segments, of ``total``."""

    done: int
    total: int
    seconds: float
    segments_done: int
    segments: int
    retried: int
    reused: int = 0  # frames of segments a resumed run found finished

    @property
    def fps(self) -> float:
        """Output frames per second rendered so far (reused frames not counted)."""
        return (self.done - self.reused) / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far, or None before any segment finished."""
        return (self.total - self.done) / self.fps if self.fps > 0 else None

    def __str__(self) -> str:
        eta = "?" if self.eta is None else f"{self.eta:.0f}s"
        return (
            f"{self.done}/{self.total} frames ({self.segments_done}/{self.segments} segments), "
            f"{self.fps:.1f} fps, ETA {eta}, {self.retried} retried"
        )


RayProgressFn = Callable[[RayProgress], None]


def import_ray() -> Any:
    """The ``ray`` module, or a GraphError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise GraphError(INSTALL_HINT) from None
    return ray


def run_on_ray(
    graph: Graph,
    address: str | None = None,
    workers: int = 2,
    segment_frames: int = DEFAULT_SEGMENT_FRAMES,
    work_dir: str | None = None,
    resume: bool = False,
    progress: RayProgressFn | None = None,
    device: str = "cpu",
    gpus_per_worker: float = 0.0,
    threads_per_worker: int = 1,
    retries: int = 3,
    frames: tuple[int | None, int | None] | None = None,
) -> RunSummary:
    """Render ``graph`` (one file output) on Ray; the output is the file a local run writes.

    ``address``: None starts a local Ray with ``workers`` CPUs (or uses the Ray this process
    is already connected to); ``"auto"`` or ``"ray://host:10001"`` joins a cluster.
    ``workers``: actors (processes) rendering segments at once. ``segment_frames``: output
    frames per segment. ``work_dir``: where segments go, on storage every worker and the
    driver share (default: a hidden folder next to the output). ``resume``: reuse segments
    a previous run of the same job finished there. ``progress`` is called after each
    segment. ``device``/``gpus_per_worker``: e.g. ``"cuda"`` and 1 for one GPU per actor.
    ``threads_per_worker``: torch threads in each actor. A segment whose worker dies is
    rendered again, up to ``retries`` times. ``frames=(a, b)``: output frames a..b-1 only
    (``--frames``).

    Errors are one-line VidfxErrors (no Ray, unreachable cluster, unwritable work dir,
    unreadable input); the output path is written only when every segment is done.
    """
    ray = import_ray()
    if workers < 1:
        raise GraphError(f"workers must be at least 1, not {workers}")
    if segment_frames < 1:
        raise GraphError(f"segment_frames must be at least 1, not {segment_frames}")
    started = time.monotonic()
    job = job_from_graph(graph, device, frames)  # the device is resolved by each worker (the driver may have no GPU)
    default_work = work_dir is None
    work = work_dir or default_work_dir(job.path)
    prepare_work_dir(work)
    plan, lengths, info = plan_job(job, segment_frames)
    fmt = segment_format(job.path, job.options, info)
    records = load_manifest(work, job, plan, resume)
    reused = len(records)
    owned = connect(ray, address, workers)
    try:
        retried = run_segments(
            ray, job, plan, lengths, work, fmt, records, workers, gpus_per_worker, threads_per_worker, retries, progress
        )
        ordered = [records[seg.index] for seg in plan.segments]
        written = assemble(fmt, ordered, info, work)
    finally:
        if owned:
            ray.shutdown()
    clean_work_dir(work, remove_folder=default_work)
    summary = RunSummary(frames={job.path: written}, seconds=time.monotonic() - started)
    for record in ordered:  # nodes' warnings from the workers, each once
        summary.messages.extend(m for m in record.get("messages", []) if m not in summary.messages)
    summary.messages.append(
        f"ray: {len(plan.segments)} segment(s) of up to {plan.segment_frames} frames on {workers} worker(s), "
        f"{reused} reused, {retried} retried" + (f"; not split: {plan.whole}" if plan.whole else "")
    )
    return summary


# --- steps ---------------------------------------------------------------------------------


def default_work_dir(path: str) -> str:
    """A hidden folder next to the output: ``.NAME.vidfx-ray``."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name.replace('%', '#')}.vidfx-ray")


def prepare_work_dir(work: str) -> None:
    """Create the work dir and check this process can write there (MediaError if not)."""
    probe = os.path.join(work, f".write-test-{os.getpid()}")
    try:
        os.makedirs(work, exist_ok=True)
        with open(probe, "w") as fh:
            fh.write("ok")
        os.remove(probe)
    except OSError as exc:
        raise MediaError(f"work dir {work}: cannot write there ({exc.strerror or exc})") from None


def plan_job(job: Job, segment_frames: int) -> tuple[Plan, dict[str, int], Any]:
    """Configure a copy of the graph here (inputs probed, every node checked) and plan it.

    Returns the plan, the frame count of every node the output depends on, and the
    output's ClipInfo.
    """
    order = job.build()
    runs = build_runs(order, resolve_device("cpu"))
    try:
        lengths = {name: runs[name].length for name, _, _ in upstream(order, job.output)}
        info = runs[job.output].info
    finally:
        for _, node, _ in order:
            node.close()
    if lengths[job.output] <= 0:
        raise MediaError(f"output {job.path}: the graph makes no frames")
    return plan_segments(order, lengths, job.output, segment_frames), lengths, info


def load_manifest(work: str, job: Job, plan: Plan, resume: bool) -> dict[int, dict[str, Any]]:
    """Write the manifest of this job; with ``resume``, the records of the segments a
    previous run of the same job (same fingerprint and plan) finished. Anything else in the
    work dir from another job is removed."""
    path = os.path.join(work, MANIFEST)
    manifest = {"version": 1, "fingerprint": job.fingerprint(), "output": job.path, "plan": plan.to_json()}
    records: dict[int, dict[str, Any]] = {}
    old = None
    if resume:
        try:
            with open(path) as fh:
                old = json.load(fh)
        except (OSError, ValueError):
            old = None
    same = old is not None and {k: old.get(k) for k in manifest} == _jsonable(manifest)
    if same:
        for seg in plan.segments:
            record = read_record(work, seg.index)
            if record is not None and record.get("start") == seg.start and record.get("stop") == seg.stop:
                records[seg.index] = record
    else:
        if resume and old is not None:
            log.warning("work dir %s holds segments of another job or plan: starting over", work)
        clean_work_dir(work, remove_folder=False)
    write_json(path, manifest)
    return records


def _jsonable(doc: Any) -> Any:
    """``doc`` as it reads back from JSON (tuples become lists)."""

    return json.loads(json.dumps(doc))


def connect(ray: Any, address: str | None, workers: int) -> bool:
    """Connect to Ray; True if this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    if address not in (None, "auto"):
        check_reachable(address)
    try:
        if address is None:
            # "local": always a new Ray of our own, never one another job left running here
            ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... by cause
        where = "a local Ray" if address is None else f"the Ray cluster at {address}"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MediaError(f"cannot start or reach {where} ({text})") from None
    return True


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """MediaError unless something answers at ``address`` (``host:port`` or
    ``ray://host:port``) within ``timeout`` seconds: Ray itself waits minutes for an
    unreachable cluster."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise MediaError(f"Ray address {address!r}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise MediaError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})") from None


def run_segments(
    ray: Any,
    job: Job,
    plan: Plan,
    lengths: dict[str, int],
    work: str,
    fmt: Any,
    records: dict[int, dict[str, Any]],
    workers: int,
    gpus_per_worker: float,
    threads_per_worker: int,
    retries: int,
    progress: RayProgressFn | None,
) -> int:
    """Render every segment not in ``records`` on a pool of actors, filling ``records``.
    Returns how many segments were rendered again because their worker died."""
    pending = deque(seg for seg in plan.segments if seg.index not in records)
    total_segments = len(plan.segments)
    reused = sum(seg.frames for seg in plan.segments if seg.index in records)
    started = time.monotonic()
    done = reused
    retried = 0
    attempts: dict[int, int] = {}
    manifest_path = os.path.join(work, MANIFEST)

    def report() -> None:
        if progress is not None:
            progress(RayProgress(done, plan.length, time.monotonic() - started, len(records), total_segments, retried))

    if not pending:
        report()
        return 0
    actor_class = ray.remote(RayWorker).options(
        num_cpus=1, num_gpus=gpus_per_worker, max_restarts=0, max_task_retries=0
    )
    actors = [actor_class.remote(threads_per_worker) for _ in range(min(workers, len(pending)))]
    job_ref = ray.put(job)
    idle = list(actors)
    running: dict[Any, tuple[Any, Any]] = {}  # object ref -> (actor, segment)
    try:
        while pending or running:
            while pending and idle:
                seg = pending.popleft()
                actor = idle.pop()
                running[actor.render.remote(job_ref, seg, lengths, work, fmt)] = (actor, seg)
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            actor, seg = running.pop(ref)
            try:
                record = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                # a fresh process replaces the dead one (Ray places it on any live node)
                actors.remove(actor)
                actors.append(actor_class.remote(threads_per_worker))
                idle.append(actors[-1])
                attempts[seg.index] = attempts.get(seg.index, 0) + 1
                if attempts[seg.index] > retries:
                    raise MediaError(
                        f"segment {seg.index} (frames {seg.start}-{seg.stop - 1}): its worker died "
                        f"{attempts[seg.index]} times ({_first_line(exc)})"
                    ) from None
                retried += 1
                log.warning("segment %d: worker died, rendering it again", seg.index)
                pending.appendleft(seg)
                continue
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause
                if isinstance(cause, VidfxError):
                    raise type(cause)(str(cause)) from None
                raise
            idle.append(actor)
            records[seg.index] = record
            done += seg.frames
            write_json(manifest_path, {**_read_json(manifest_path), "done": sorted(records)})
            report()
    finally:
        for actor in actors:
            ray.kill(actor)
    return retried


def _read_json(path: str) -> dict[str, Any]:

    with open(path) as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def clean_work_dir(work: str, remove_folder: bool) -> None:
    """Remove this backend's files from the work dir (or the whole folder, if it made it)."""
    if remove_folder:
        shutil.rmtree(work, ignore_errors=True)
        return
    for name in os.listdir(work):
        if name.startswith(("segment_", ".segment_")) or name == MANIFEST:
            full = os.path.join(work, name)
            if os.path.isdir(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                os.remove(full)


class RayWorker(SegmentWorker):
    """The actor: a SegmentWorker whose process uses ``threads`` torch threads."""

    def __init__(self, threads: int = 1):
        import torch

        torch.set_num_threads(max(1, threads))
