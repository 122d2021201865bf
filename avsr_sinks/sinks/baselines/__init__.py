"""Sink-mitigation baselines for any Hugging Face Llama-family model: ACT at inference, and
trainable sink logits and gated attention at fine-tuning time."""

from .act import act_recalibrate, apply_act
from .gated_attention import apply_gated_attention
from .head_file import load_act_heads, save_act_heads
from .head_search import HeadSearchResult, default_candidates, greedy_head_search
from .sink_logit import apply_sink_logits
