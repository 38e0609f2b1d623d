"""Node and output schemas as plain data, cached on disk.

Listing node types (``vidfx nodes``) needs each type's description and parameters, which
live on the node classes; importing those imports torch and every model package (seconds,
most of a gigabyte). The schemas are therefore saved once per installation under the user's
cache folder, keyed by the installed node entry points and package versions (and, for a
source checkout, the files' modification times), and read from there afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .node import Node
from .params import Param
from .registry import ENTRY_POINT_GROUP, node_types
from .sink import SINK_ENTRY_POINT_GROUP, file_sinks


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vidfx`` (default ``~/.cache/vidfx``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vidfx"


def describe(cls: type[Node]) -> dict[str, Any]:
    """One node class as data: description, number of inputs, parameters."""
    return {
        "description": cls.description or (cls.__doc__ or "").strip().split("\n")[0],
        "inputs": cls.num_inputs,
        "params": [param_data(p) for p in cls.params],
    }


def param_data(p: Param) -> dict[str, Any]:
    """A Param as JSON-ready data (``Param(**data)`` makes it again)."""
    return asdict(p)


def param_from(data: dict[str, Any]) -> Param:
    """The Param that ``param_data`` described."""
    choices = data.get("choices")
    return Param(**{**data, "choices": tuple(choices) if choices is not None else None})


def _key() -> str:
    """What the schemas depend on: the entry points, the versions of the packages that
    declare them, and the modification times of vidfx's own files (a source checkout)."""
    parts = []
    for group in (ENTRY_POINT_GROUP, SINK_ENTRY_POINT_GROUP):
        for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
            dist = ep.dist
            parts.append(f"{group} {ep.name}={ep.value} {dist.name if dist else ''} {dist.version if dist else ''}")
    package = Path(__file__).resolve().parent.parent
    stamps = sorted((str(p.relative_to(package)), p.stat().st_mtime_ns) for p in package.rglob("*.py"))
    parts.append(json.dumps(stamps))
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def load_schemas() -> dict[str, Any]:
    """``{"nodes": {name: describe(cls)}, "outputs": [param_data]}``, from the cache when it
    matches this installation, else from the classes (and then cached)."""
    path = cache_dir() / f"schemas-{_key()}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    data = {
        "nodes": {name: describe(cls) for name, cls in node_types().items()},
        "outputs": [param_data(p) for p in file_sinks().params],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}")
        temp.write_text(json.dumps(data))
        os.replace(temp, path)
        for old in path.parent.glob("schemas-*.json"):  # earlier installations' lists
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:  # a read-only home: list without caching
        pass
    return data
