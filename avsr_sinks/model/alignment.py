"""CTC of the projected modality tokens against the LLM's own token embeddings.

An auxiliary loss for the projector (``model.projector.ctc_weight``): each projected token is
scored against every row of the frozen input-embedding matrix (and one learned blank vector),
and CTC asks the token sequence to spell the transcript's LLM tokens. The projector then learns
to emit vectors near the embeddings of the words being spoken, which the LLM already reads,
instead of discovering a new input code through the LLM's next-token loss alone (slow on a small
LLM and little data: results/laptop/REPORT.md). Compressed sequences shorter than their
transcript cannot be aligned; their loss is zero (``zero_infinity``), so a high compression rate
makes the loss weaker, not wrong.
"""

from __future__ import annotations

import torch
from torch import nn


def embedding_ctc_loss(features: torch.Tensor, lengths: torch.Tensor, embeddings: torch.Tensor,
                       blank: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
    """Mean over the batch of CTC(-log p(targets | features)) / target length.

    ``features [B, T, D]`` with valid ``lengths [B]``; ``embeddings [V, D]`` (the classes are the
    vocabulary ids); ``blank [D]`` is class V. Samples with an empty target are left out.
    """
    keep = [i for i, target in enumerate(targets) if target]
    if not keep:
        return features.sum() * 0.0
    rows = torch.tensor(keep, device=features.device)
    classes = torch.cat([embeddings.to(features.dtype), blank[None].to(features.dtype)])
    log_probs = (features[rows] @ classes.T).float().log_softmax(-1).transpose(0, 1)  # [T, B, V + 1]
    flat = torch.tensor([t for i in keep for t in targets[i]], device=features.device)
    target_lengths = torch.tensor([len(targets[i]) for i in keep], device=features.device)
    return nn.functional.ctc_loss(log_probs, flat, lengths[rows], target_lengths, blank=embeddings.shape[0],
                                  reduction="mean", zero_infinity=True)
