"""vidfx: temporally aware video effects on a pull-based frame-graph engine.

Front doors: ``vidfx run graph.yaml`` (CLI), this package (``vidfx.read`` and clips,
``vidfx.load``, ``vidfx.Graph``, ``vidfx.apply``) and the OpenFX plugin bundle
(``vidfx ofx build``).

The names below are imported on first use, so ``import vidfx`` (and ``vidfx --help``,
``vidfx probe``) starts without loading torch.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .core.lazy import lazy_attributes

try:
    __version__ = version("vidfx")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS = {
    "ArraySource": "api",
    "Graph": "api",
    "RunSummary": "api",
    "apply": "api",
    "load": "api",
    "node_types": "api",
    "to_tensor": "api",
    "Clip": "clip",
    "read": "clip",
    "GraphError": "core.errors",
    "MediaError": "core.errors",
    "ModelError": "core.errors",
    "ParamError": "core.errors",
    "VidfxError": "core.errors",
    "ClipInfo": "core.frame",
    "ColourTags": "core.frame",
    "Frame": "core.frame",
    "HostHints": "core.node",
    "Node": "core.node",
    "SequenceNode": "core.node",
    "SourceNode": "core.node",
    "Param": "core.params",
    "register": "core.registry",
    "Sink": "core.sink",
    "Timecode": "core.timecode",
}

__all__ = [
    "ArraySource",
    "Clip",
    "ClipInfo",
    "ColourTags",
    "Frame",
    "Graph",
    "GraphError",
    "HostHints",
    "MediaError",
    "ModelError",
    "Node",
    "Param",
    "ParamError",
    "RunSummary",
    "SequenceNode",
    "Sink",
    "SourceNode",
    "Timecode",
    "VidfxError",
    "apply",
    "load",
    "node_types",
    "read",
    "register",
    "to_tensor",
]


__getattr__ = lazy_attributes(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and editors see
    from .api import ArraySource, Graph, RunSummary, apply, load, node_types, to_tensor
    from .clip import Clip, read
    from .core.errors import GraphError, MediaError, ModelError, ParamError, VidfxError
    from .core.frame import ClipInfo, ColourTags, Frame
    from .core.node import HostHints, Node, SequenceNode, SourceNode
    from .core.params import Param
    from .core.registry import register
    from .core.sink import Sink
    from .core.timecode import Timecode
