"""Frozen speech encoders: ``from avsr_sinks.encoders import AVHubertEncoder``."""

from .avhubert import AVHubertConfig, AVHubertEncoder
from .fairseq_checkpoint import CheckpointError
from .whisper import WhisperEncoder
