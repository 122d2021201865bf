"""Frame-budget batches from length buckets, sharded evenly over DDP ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist


class FrameBudgetBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches whose padded size (batch size x longest length) stays within ``max_frames``.

    Samples are sorted by length (ties broken at random per epoch when shuffling) and cut
    greedily into batches, so each batch holds similar lengths; the batch order is shuffled.
    The batch list is made divisible by ``num_replicas`` by splitting the largest batches
    (never by repeating samples), and rank r takes batches r, r + R, ...: every rank sees the
    same number of batches and, over an epoch, each sample exactly once on exactly one rank.
    Only when there are fewer samples than ranks are batches repeated to fill the ranks.
    """

    def __init__(self, lengths: list[int], max_frames: int, shuffle: bool = True, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        if max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames} (data.max_frames)")
        too_long = [i for i, n in enumerate(lengths) if n > max_frames]
        if too_long:
            raise ValueError(f"{len(too_long)} samples are longer than the batch budget max_frames={max_frames} "
                             f"(first: index {too_long[0]}, {lengths[too_long[0]]} frames); filter them with "
                             f"data.max_frames_per_sample or raise data.max_frames")
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.lengths = [int(n) for n in lengths]
        self.max_frames, self.shuffle, self.seed = max_frames, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (same on every rank, given the same seed)."""
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist() if self.shuffle else range(len(self.lengths))
        order = sorted(order, key=lambda i: self.lengths[i])  # stable: random order within a length
        batches, current, longest = [], [], 0
        for i in order:
            if current and (len(current) + 1) * max(longest, self.lengths[i]) > self.max_frames:
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, self.lengths[i])
        if current:
            batches.append(current)
        while len(batches) % self.num_replicas and any(len(b) > 1 for b in batches):
            largest = max(range(len(batches)), key=lambda k: len(batches[k]))
            half = len(batches[largest]) // 2
            batches[largest:largest + 1] = [batches[largest][:half], batches[largest][half:]]
        while batches and len(batches) % self.num_replicas:  # fewer samples than ranks
            batches.append(batches[0])
        if self.shuffle:
            batches = [batches[k] for k in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __iter__(self):
        yield from self._all_batches()[self.rank::self.num_replicas]

    def __len__(self) -> int:
        return len(self._all_batches()) // self.num_replicas
