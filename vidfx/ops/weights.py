"""Weights files and training checkpoints, one format for every model family.

A weights file is a ``torch.save``d dict of plain data (readable with ``weights_only=True``)::

    {"format": "vidfx-weights-1", "family": "vsr" | "segment" | "jumpcut" | ...,
     "config": {...},         # the model's dataclass config as a plain dict
     "state_dict": {...},     # tensors (floating ones may be stored as float16)
     "meta": {...}}           # free-form: validation scores, training step, ...

Every write is atomic (temporary file in the same folder, fsync, rename), so a crash mid-save
leaves the previous file intact. Reading a missing, corrupt or other-family file raises
``ModelError`` with a one-line message that names the file. Files of the layouts used before
this format are read only after ``upgrade_weights`` has rewritten them (same tensors).
Training checkpoints (optimiser state too) go through ``save_checkpoint``/``load_checkpoint``.

``load_model`` keeps a few loaded models per process (LRU, thread-safe), so calling a node many
times (``vidfx.apply`` from a host's Python console, the render server) loads the weights once.
Cached models are shared: callers use them for inference only and never change them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import ModelError

FORMAT = "vidfx-weights-1"
CACHE_SIZE = 4  # loaded models kept per process


@dataclass
class Weights:
    """The contents of a weights file: ``state_dict`` has float32 floating tensors on the CPU."""

    path: Path
    family: str
    config: dict
    state_dict: dict[str, torch.Tensor]
    meta: dict


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically: a temporary file in the same folder, flushed
    to disk, then renamed over ``path`` (a crash leaves either the old or the new file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of our own rather than mkstemp, whose files are private (0600) whatever the umask
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save_weights(
    path: str | Path,
    family: str,
    model: nn.Module | dict[str, torch.Tensor],
    config: dict,
    meta: dict | None = None,
    half: bool = False,
) -> None:
    """Write a weights file for ``model`` (an ``nn.Module`` or a state dict) atomically.

    ``config`` is the plain-dict config that rebuilds the model; ``half`` stores floating
    tensors as float16 (loading casts them back to float32).
    """
    state = model.state_dict() if isinstance(model, nn.Module) else model
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone() for k, v in state.items()}
    blob = {"format": FORMAT, "family": family, "config": dict(config), "state_dict": state, "meta": dict(meta or {})}
    atomic_save(blob, path)


def read_weights(path: str | Path, family: str) -> Weights:
    """Read a weights file of ``family``; raises ModelError naming the file when it is missing,
    unreadable, not a vidfx weights file, or of another family."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{family}: weights file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, pickled code...
        raise ModelError(f"{family}: cannot read weights file {path}: {_one_line(exc)}") from None
    if _old_layout(blob):
        raise ModelError(
            f"{family}: {path} has the pre-{FORMAT} layout; rewrite it once with "
            f"vidfx.ops.weights.upgrade_weights(path, family)"
        )
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{family}: {path} is not a vidfx weights file (format {FORMAT})")
    if blob.get("family") != family:
        raise ModelError(f"{family}: {path} holds {blob.get('family')!r} weights, not {family!r}")
    try:
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()}
        return Weights(path, family, dict(blob["config"]), state, dict(blob.get("meta") or {}))
    except Exception as exc:
        raise ModelError(f"{family}: weights file {path} is incomplete: {_one_line(exc)}") from None


def _old_layout(blob: Any) -> bool:
    """Whether ``blob`` is a weights file of the layouts before FORMAT: vsr's tagged
    ``vidfx-vsr-1``, segment's untagged ``{config, state_dict, meta}``, jumpcut's ``{config, model}``."""
    if not isinstance(blob, dict) or "config" not in blob or blob.get("format", "vidfx-vsr-1") != "vidfx-vsr-1":
        return False
    return isinstance(blob.get("state_dict", blob.get("model")), dict)


def upgrade_weights(path: str | Path, family: str) -> None:
    """Rewrite a weights file of an older layout (see ``_old_layout``) in place, atomically, into
    this module's format: the same tensors (dtypes kept), config and meta. The one way to use
    weights trained before the shared format (the shipped files are already rewritten)."""
    path = Path(path)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not _old_layout(blob):
        raise ModelError(f"{family}: {path} is not a weights file of an older vidfx layout")
    state = blob.get("state_dict", blob.get("model"))
    save_weights(path, family, state, blob["config"], blob.get("meta") or {})


Build = Callable[[Weights], nn.Module]


def build_model(
    path: str | Path, family: str, build: Build, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict]:
    """A fresh model from a weights file: ``build(weights)`` makes the module from
    ``weights.config`` (and may convert it, e.g. to channels-last), then the state dict is
    loaded. Returns (model in eval mode on ``device``, meta). Errors are ModelErrors naming
    the file."""
    w = read_weights(path, family)
    try:
        model = build(w)
        model.load_state_dict(w.state_dict)
    except Exception as exc:  # wrong config, missing keys, wrong shapes
        raise ModelError(f"{family}: weights file {w.path} does not match the model: {_one_line(exc)}") from None
    return model.to(device).eval(), w.meta


_cache: OrderedDict[tuple, tuple[nn.Module, dict]] = OrderedDict()
_cache_lock = threading.Lock()


def load_model(
    path: str | Path, family: str, build: Build, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict]:
    """Like ``build_model``, but shared: one model per (file, its modification time and size,
    ``build``, device), the last ``CACHE_SIZE`` kept. A changed file is loaded again.

    The model is for inference only (its parameters do not require gradients): never train
    or convert it in place (``copy.deepcopy`` it first). ``build`` must be a module-level
    function (it is part of the key, so two builds of one file are two entries). Returns
    (model, a copy of its meta).
    """
    path = Path(path).expanduser()
    try:
        real = path.resolve()
        st = real.stat()
    except OSError:
        raise ModelError(f"{family}: weights file not found: {path}") from None
    key = (str(real), st.st_mtime_ns, st.st_size, family, build, str(torch.device(device)))
    # One lock for lookups and loads: loads are rare, and two threads asking for the same
    # file at once must not load it twice.
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
        else:
            model, meta = build_model(path, family, build, device)
            model.requires_grad_(False)
            _cache[key] = (model, meta)
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        model, meta = _cache[key]
    return model, dict(meta)


def clear_cache() -> None:
    """Forget every shared model (frees their memory once no node holds them)."""
    with _cache_lock:
        _cache.clear()


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write a training checkpoint (model, optimiser, step...: plain data and tensors) atomically."""
    atomic_save(state, path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """Read a training checkpoint written by ``save_checkpoint`` (``weights_only=True``)."""
    try:
        return torch.load(Path(path), map_location=device, weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read checkpoint {path}: {_one_line(exc)}") from None


def write_run_args(out: str | Path, args: Any) -> Path:
    """Write ``out/args.json``: a training run's arguments (an argparse namespace or a dict),
    the vidfx version and the date; returns its path."""
    from .. import __version__

    values = vars(args) if not isinstance(args, dict) else args
    record = {
        "args": {
            k: (v if isinstance(v, (bool, int, float, str, list, type(None))) else str(v)) for k, v in values.items()
        },
        "vidfx_version": __version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    path = Path(out) / "args.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".args.json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def start_run(out: str | Path, args: Any) -> Callable[[str], None]:
    """Start a training run in folder ``out``: create it, write ``args.json`` (see
    :func:`write_run_args`) and return ``say(message)``, which prints a time-stamped line and
    appends it to ``out/log.txt``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_run_args(out, args)
    log_path = out / "log.txt"

    def say(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, flush=True)
        with open(log_path, "a") as log:
            log.write(line + "\n")

    return say


def add_run_options(p: argparse.ArgumentParser, out: str, data: str, iters: int, val_every: float) -> None:
    """The options every ``vidfx train`` command shares: run length (``--iters``/``--minutes``),
    ``--val-every`` minutes, ``--data``, ``--out``, ``--threads``, ``--device``, ``--resume``
    (from OUT/last.pt) and ``--seed``."""
    p.add_argument("--iters", type=int, default=iters, help="run length in steps")
    p.add_argument("--minutes", type=float, default=0, help="run length in minutes (overrides --iters)")
    p.add_argument("--val-every", type=float, default=val_every, help="minutes between validation/checkpoints")
    p.add_argument("--data", default=data, help="the data folder")
    p.add_argument("--out", default=out, help="folder for checkpoints, weights and the log")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--seed", type=int, default=0)
