"""Attention sinks and massive activations: the decorrelation loss and the analyses."""

from .attention_scores import attention_sink_scores
from .decorrelation import decorrelation_loss
