"""vidfx: temporally aware video effects on a pull-based frame-graph engine."""
__version__ = "0.1.0"
