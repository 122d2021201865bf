"""Frame-budget batches from length buckets, sharded evenly over DDP ranks, resumable mid-epoch."""

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

    Resuming: :meth:`state_dict` / :meth:`load_state_dict` carry the seed, the epoch and the
    position in this rank's batches where the next iteration starts (the batches of an epoch are a
    function of seed and epoch, so nothing else is needed); :class:`ResumableDataLoader` reports
    the position it has delivered up to. ``epoch_in_keys`` yields ``(epoch, index)`` pairs instead of
    indices, so that the dataset can seed each sample's random draws by (seed, epoch, index),
    whichever process (DataLoader worker or not) loads it.
    """

    def __init__(self, lengths: list[int], max_frames: int, shuffle: bool = True, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None, epoch_in_keys: bool = False) -> None:
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
        self.epoch_in_keys = epoch_in_keys
        self.epoch = 0
        self.start = 0  # position in this rank's batches where the next iteration starts

    @property
    def sampler(self) -> "FrameBudgetBatchSampler":
        """Itself: Lightning sets the epoch of ``loader.sampler`` and ``loader.batch_sampler.sampler``
        (torch's BatchSampler layout), never of the batch sampler, so this one is reached as the latter."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (same on every rank, given the same seed). A new epoch starts at
        its first batch; setting the epoch a resumed state is in keeps the resume position
        (Lightning sets the epoch again after loading the state)."""
        if epoch != self.epoch:
            self.epoch, self.start = epoch, 0

    def state_dict(self) -> dict:
        """Where the next iteration starts: seed, epoch, position, and the world size it counts in."""
        return {"seed": self.seed, "epoch": self.epoch, "start": self.start, "num_replicas": self.num_replicas}

    def load_state_dict(self, state: dict) -> None:
        """Continue at ``state``'s position (a position at the end of an epoch is the next epoch's start)."""
        for key in ("seed", "num_replicas"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"cannot resume the batch order mid-epoch: the checkpoint's sampler has {key}={state[key]}, this run "
                    f"{getattr(self, key)} (resume with the same seed and trainer.devices x trainer.num_nodes, or from "
                    "an epoch checkpoint)")
        self.epoch, self.start = int(state["epoch"]), int(state["start"])
        if self.start >= len(self):
            self.epoch, self.start = self.epoch + 1, 0

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
        epoch = self.epoch
        for batch in self._all_batches()[self.rank::self.num_replicas][self.start:]:
            yield [(epoch, i) for i in batch] if self.epoch_in_keys else batch
        self.start = 0  # a resumed epoch is resumed once; iterating it again starts at its beginning

    def __len__(self) -> int:
        return len(self._all_batches()) // self.num_replicas


class ResumableDataLoader(torch.utils.data.DataLoader):
    """A DataLoader over a :class:`FrameBudgetBatchSampler` that knows its position in the epoch:
    :meth:`position` is the sampler's state at the next batch this loader will deliver (it counts
    the batches handed to the training loop, not those the sampler gave to prefetching workers),
    and :meth:`resume` continues from such a state. The training DataModule saves it in Lightning's
    checkpoints."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, FrameBudgetBatchSampler):
            raise TypeError(f"ResumableDataLoader needs a FrameBudgetBatchSampler as batch_sampler, got {type(self.batch_sampler).__name__}")
        self._delivered = self.batch_sampler.start

    def __iter__(self):
        self._delivered = self.batch_sampler.start
        for batch in super().__iter__():
            self._delivered += 1
            yield batch

    def position(self) -> dict:
        return {**self.batch_sampler.state_dict(), "start": self._delivered}

    def resume(self, position: dict) -> None:
        self.batch_sampler.load_state_dict(position)
        self._delivered = self.batch_sampler.start
