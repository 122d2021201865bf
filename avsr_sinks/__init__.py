"""avsr_sinks: Llama-AVSR with attention-sink analysis and the decorrelation loss."""

__version__ = "0.1.0"
