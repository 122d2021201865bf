"""The three tasks, the modalities each uses, their default prompts, and the names of the model
parts a config chooses among, and what a sample must be for a model of a task (no heavy imports:
the config check and scripts/validate_data.py read them)."""

from collections.abc import Callable

from ..data.limits import SampleLimits
from ..data.manifest import LabelRow

TASK_MODALITIES = {"asr": ("audio",), "vsr": ("video",), "avsr": ("audio", "video")}
DEFAULT_PROMPTS = {
    "asr": "Transcribe speech to text.",
    "vsr": "Transcribe video to text.",
    "avsr": "Transcribe speech and video to text.",
}
# model.compressor and model.projector.kind (compressor.py, projector.py build them).
COMPRESSOR_KINDS = ("avg-pool", "stack")
PROJECTOR_KINDS = ("mlp", "linear")
# Features per second of the encoder this project builds for each modality: Whisper (50 Hz) and
# AV-HuBERT (25 Hz, one per video frame).
ENCODER_FRAME_RATES = {"audio": 50, "video": 25}
VIDEO_FPS = 25  # label CSVs count video frames


def encoder_frames(modality: str, video_frames: int) -> int:
    return video_frames * ENCODER_FRAME_RATES[modality] // VIDEO_FPS


def compression_window_frames(compression: dict[str, int]) -> int:
    """Video frames of the longest compression window over the modalities (``{modality: rate}``)."""
    return max(-(-rate * VIDEO_FPS // ENCODER_FRAME_RATES[m]) for m, rate in compression.items())


def sequence_length(compression: dict[str, int], video_frames: int, prompt_tokens: int, transcript_tokens: int) -> int:
    """LLM positions of one training sample, laid out as in sequence.py: BOS, per modality
    ``<m>`` + ceil(encoder frames / rate) tokens + ``</m>``, the prompt, the transcript, EOS."""
    blocks = sum(2 - (-encoder_frames(m, video_frames) // rate) for m, rate in compression.items())
    return 1 + blocks + prompt_tokens + transcript_tokens + 1


def sample_limits(compression: dict[str, int], prompt_tokens: int, count_tokens: Callable[[str], int],
                  max_positions: int | None) -> SampleLimits:
    """What a label CSV row must be for a model with ``compression`` (``{modality: rate}``): one
    compression window of frames and, when ``max_positions`` is given, a sequence (with a prompt of
    ``prompt_tokens`` and the transcript's ``count_tokens``) within the LLM's positions."""

    def positions(row: LabelRow) -> int:
        return sequence_length(compression, row.n_frames, prompt_tokens, count_tokens(row.transcript))

    return SampleLimits(compression_window_frames(compression), max_positions, positions)
