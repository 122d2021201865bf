"""Attention sinks and massive activations: the decorrelation loss and the analyses."""

from .decorrelation import decorrelation_loss
