"""The Faust application, its agent, and the record pipeline they share with replay."""

from .app import BatchHandler, create_app
from .pipeline import Pipeline
from .records import DeadLetter, Outcome, Outputs, Record

__all__ = [
    "BatchHandler",
    "DeadLetter",
    "Outcome",
    "Outputs",
    "Pipeline",
    "Record",
    "create_app",
]
