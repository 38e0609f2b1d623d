"""The table of node types by name. Built-in modules register themselves on import."""
from __future__ import annotations

import importlib

from .errors import GraphError
from .node import Node

NODE_TYPES: dict[str, type[Node]] = {}

# Modules that define nodes; imported the first time a node type is looked up, so
# `import vidfx` stays fast and a missing optional dependency only hides its own nodes.
NODE_MODULES = (
    "vidfx.io.nodes",
    "vidfx.nodes.basic",
    "vidfx.vsr.node",
    "vidfx.segment.node",
    "vidfx.jumpcut.node",
)
_import_errors: dict[str, str] = {}
_loaded = False


def register(cls: type[Node]) -> type[Node]:
    """Class decorator: make a node type available by its ``type_name``."""
    if not cls.type_name:
        raise ValueError(f"{cls.__name__} has no type_name")
    NODE_TYPES[cls.type_name] = cls
    return cls


def load_builtin_nodes() -> dict[str, type[Node]]:
    """Import every built-in node module once; remember the ones that failed and why."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in NODE_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith(module.rsplit(".", 1)[0]):
                    continue  # the feature folder is not there (yet)
                _import_errors[module] = f"{type(exc).__name__}: {exc}"
            except ImportError as exc:
                _import_errors[module] = f"{type(exc).__name__}: {exc}"
    return NODE_TYPES


def node_type(name: str) -> type[Node]:
    """The node class called ``name``; a GraphError listing the known ones if there is none."""
    types = load_builtin_nodes()
    if name not in types:
        hint = ""
        if _import_errors:
            hint = " (some node modules failed to import: " + "; ".join(
                f"{m}: {e}" for m, e in _import_errors.items()) + ")"
        raise GraphError(f"unknown node type {name!r}; known: {', '.join(sorted(types))}{hint}")
    return types[name]


def create_node(type_name: str, name: str | None = None, **params) -> Node:
    """Instantiate a node by type name with validated parameters."""
    return node_type(type_name)(name=name, **params)
