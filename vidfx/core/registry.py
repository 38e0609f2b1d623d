"""Node types by name, found through the ``vidfx.nodes`` entry-point group.

Every installed package can add node types by declaring entry points, as vidfx itself
does for its built-ins (``pyproject.toml``)::

    [project.entry-points."vidfx.nodes"]
    sharpen = "my_package.nodes:Sharpen"

Code that defines a node at run time (a console, a test) registers it with ``register``.
A type name claimed twice, by two packages or by a package and ``register``, is an error
naming both. Entry points are loaded one at a time, on first use of their name, so a
missing optional dependency only hides its own node types, and ``import vidfx`` imports
no model package.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points

from .errors import GraphError
from .node import Node

ENTRY_POINT_GROUP = "vidfx.nodes"

_registered: dict[str, type[Node]] = {}  # by register()
_loaded: dict[str, tuple[str, type[Node]]] = {}  # name -> (entry point value, class) loaded so far
_import_errors: dict[str, str] = {}  # entry-point name -> why it could not be loaded


def _where(cls: type[Node]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_scanned: tuple[tuple[str, ...], dict[str, EntryPoint]] | None = None  # (sys.path, entry points)
_conflicts: dict[str, str] = {}  # name -> "node type 'x' is declared twice: ..."


def _entry_points() -> dict[str, EntryPoint]:
    """The group's entry points by name (a name two distributions claim is kept in ``_conflicts``).

    Scanning the installed distributions takes milliseconds, so the result is kept until
    ``sys.path`` changes (a package installed into a running process is seen after that).
    """
    global _scanned
    if _scanned is not None and _scanned[0] == tuple(sys.path):
        return _scanned[1]
    found: dict[str, EntryPoint] = {}
    _conflicts.clear()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        other = found.get(ep.name)
        if other is not None and other.value != ep.value:
            _conflicts[ep.name] = f"node type {ep.name!r} is declared twice: {other.value} and {ep.value}"
        found[ep.name] = ep
    _scanned = (tuple(sys.path), found)
    return found


def register(cls: type[Node]) -> type[Node]:
    """Class decorator: make a node type defined at run time available by its ``type_name``.

    Raises GraphError if another class already has that name (an installed node type or
    an earlier ``register``); registering the same class again is allowed.
    """
    name = cls.type_name
    if not name:
        raise ValueError(f"{cls.__name__} has no type_name")
    other = _registered.get(name)
    if other is None and name in _entry_points():
        other = _load(name)
    if other is not None and other is not cls:
        raise GraphError(f"node type {name!r} is defined twice: {_where(other)} and {_where(cls)}")
    _registered[name] = cls
    return cls


def unregister(cls: type[Node]) -> None:
    """Forget a class added with ``register`` (installed node types stay)."""
    if _registered.get(cls.type_name) is cls:
        del _registered[cls.type_name]


def _load(name: str) -> type[Node] | None:
    """The class behind entry point ``name`` (None if it failed to import; the reason is kept)."""
    ep = _entry_points().get(name)
    if ep is None:
        return None
    if name in _conflicts:
        raise GraphError(_conflicts[name])
    if name in _loaded and _loaded[name][0] == ep.value:
        return _loaded[name][1]
    try:
        cls = ep.load()
    except ImportError as exc:
        _import_errors[name] = f"{ep.value}: {type(exc).__name__}: {exc}"
        return None
    if not (isinstance(cls, type) and issubclass(cls, Node)) or cls.type_name != name:
        raise GraphError(f"entry point {name} = {ep.value} is not a Node class with type_name {name!r}")
    _loaded[name] = (ep.value, cls)
    return cls


def type_names() -> list[str]:
    """Every known node type name (installed and registered), sorted; imports nothing."""
    return sorted(set(_entry_points()) | set(_registered))


def node_types() -> dict[str, type[Node]]:
    """Every node type that can be loaded, by name (imports every node module)."""
    out = {}
    for name in type_names():
        cls = _registered.get(name) or _load(name)
        if cls is not None:
            out[name] = cls
    return out


def node_type(name: str) -> type[Node]:
    """The node class called ``name``; a GraphError listing the known ones if there is none."""
    cls = _registered.get(name) or _load(name)
    if cls is None:
        if name in _import_errors:
            raise GraphError(f"node type {name!r} could not be loaded ({_import_errors[name]})")
        raise GraphError(f"unknown node type {name!r}; known: {', '.join(type_names())}")
    return cls


def create_node(type_name: str, name: str | None = None, **params: object) -> Node:
    """Instantiate a node by type name with validated parameters."""
    return node_type(type_name)(name=name, **params)
