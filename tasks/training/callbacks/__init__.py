"""Trainer callbacks, one per file:

- metrics.py            MetricsCallback: loss, learning rate, grad norm, tokens/s to a log function
- completion_marker.py  CompletionMarkerCallback: marks a checkpoint complete once every rank saved it
"""

from tasks.training.callbacks.completion_marker import CompletionMarkerCallback
from tasks.training.callbacks.metrics import MetricsCallback

__all__ = ["CompletionMarkerCallback", "MetricsCallback"]
