"""vidfx: temporally aware video effects on a pull-based frame-graph engine.

Front doors: ``vidfx run graph.yaml`` (CLI), this package (``vidfx.read`` and clips,
``vidfx.load``, ``vidfx.Graph``, ``vidfx.apply``) and the OpenFX plugin bundle
(``vidfx ofx build``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vidfx")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

from .api import ArraySource, Graph, RunSummary, apply, load, node_types, to_tensor  # noqa: E402
from .clip import Clip, read  # noqa: E402
from .core.errors import GraphError, MediaError, ModelError, ParamError, VidfxError  # noqa: E402
from .core.frame import ClipInfo, ColourTags, Frame  # noqa: E402
from .core.node import HostHints, Node, SequenceNode, SourceNode  # noqa: E402
from .core.params import Param  # noqa: E402
from .core.registry import register  # noqa: E402
from .core.sink import Sink  # noqa: E402

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
    "VidfxError",
    "apply",
    "load",
    "node_types",
    "read",
    "register",
    "to_tensor",
]
