"""The three tasks, the modalities each uses, and their default prompts (no heavy imports)."""

TASK_MODALITIES = {"asr": ("audio",), "vsr": ("video",), "avsr": ("audio", "video")}
DEFAULT_PROMPTS = {
    "asr": "Transcribe speech to text.",
    "vsr": "Transcribe video to text.",
    "avsr": "Transcribe speech and video to text.",
}
