"""Errors a user can act on. The CLI prints them as one line, with no traceback."""


class VidfxError(Exception):
    """Base for every error caused by input the user gave (files, graphs, parameters).

    ``exit_code`` is what the CLI exits with: 2 for a bad graph or parameter, 3 for media
    or file-system trouble.
    """

    exit_code = 2


class GraphError(VidfxError, ValueError):
    """A graph file or graph built in code is invalid (unknown node, cycle, bad wiring).
    Also a ``ValueError``, so code that knows nothing of vidfx can catch it."""


class ParamError(VidfxError, ValueError):
    """A node parameter is unknown, of the wrong type or out of range (also a ``ValueError``)."""


class MediaError(VidfxError):
    """A media file is missing, unreadable, corrupt, or cannot be written."""

    exit_code = 3


class ModelError(VidfxError):
    """A model's weights file is missing or corrupt."""

    exit_code = 3
