"""Attention sinks and massive activations: the decorrelation loss and the analyses."""

from .activations import massive_activations
from .attention_scores import attention_sink_scores
from .cosine import bos_cosine_similarity, pairwise_cosine
from .decorrelation import decorrelation_loss
from .detection import SinkRule, sink_mask, sink_positions, text_token_labels
from .origin import residual_contributions
from .report import sink_report
from .rotation import rotated, rotation_effect
from .series import checkpoint_series
from .streams import residual_streams
from .summary import sink_summary, summarize
