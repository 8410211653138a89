"""Training and inference over several processes (Lightning's DDP): which examples each rank takes, and
how one rank collects what every rank computed.

The split follows `torch.utils.data.DistributedSampler` (one order shared by every rank, rank r taking
positions r, r + W, ...) without its padding, so that no example is repeated or left out, and with the
same number of batches on every rank, so that no rank waits at a gradient step another never takes.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler

from audiograph.errors import ConfigError


def trainer_rank(trainer) -> tuple[int, int]:
    """(global rank, world size) of the process a Trainer runs in; (0, 1) without one."""
    if trainer is None:
        return 0, 1
    return trainer.global_rank, trainer.world_size


def shard_batches(order: torch.Tensor, batch_size: int, world_size: int = 1, rank: int = 0) -> list[torch.Tensor]:
    """Rank `rank`'s batches of one epoch whose examples are `order` (the same on every rank).

    The rank takes the positions rank, rank + world_size, ... of `order` and cuts them into as many
    nearly equal batches as the largest share needs at `batch_size`. Every example is in exactly one
    rank's batches, no batch is larger than `batch_size`, and every rank has as many batches.
    """
    if batch_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad split: batch size {batch_size}, rank {rank} of {world_size}")
    n = len(order)
    largest_share = -(-n // world_size)
    steps = -(-largest_share // batch_size)
    if n // world_size < steps:
        raise ConfigError(
            f"{n} training examples are too few to give each of {world_size} processes {steps} batches;"
            " use fewer processes or a larger batch size"
        )
    return list(torch.tensor_split(order[rank::world_size], steps)) if steps else []


class ShardedBatchSampler(Sampler[list[int]]):
    """A DataLoader `batch_sampler` over `size` examples for one rank of `world_size`: each pass (epoch)
    shuffles them with a generator seeded by `seed` and the pass number, the same order on every rank,
    and yields this rank's `shard_batches`."""

    def __init__(self, size: int, batch_size: int, world_size: int, rank: int, seed: int = 0):
        self.size, self.batch_size, self.world_size, self.rank, self.seed = size, batch_size, world_size, rank, seed
        self.epoch = 0
        self._batches(0)  # too few examples: said when the loader is made, not at the first step

    def _batches(self, epoch: int) -> list[torch.Tensor]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
        return shard_batches(order, self.batch_size, self.world_size, self.rank)

    def __iter__(self):
        batches = self._batches(self.epoch)
        self.epoch += 1
        return iter([b.tolist() for b in batches])

    def __len__(self) -> int:
        return len(self._batches(self.epoch))


def gather_to_rank_zero(obj) -> list | None:
    """Every rank's `obj`, in rank order, on global rank 0 (None on the others); `[obj]` in one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    rank = dist.get_rank()
    gathered = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


SPAWNING_STRATEGIES = ("spawn", "fork", "notebook")


def check_strategy(strategy) -> None:
    """Refuse strategies that start their processes from inside the command (ddp_spawn, ddp_fork, ...):
    a command's store connection cannot cross into them. `ddp` runs the command once per process instead."""
    if isinstance(strategy, str) and any(word in strategy for word in SPAWNING_STRATEGIES):
        raise ConfigError(
            f"--strategy {strategy} is not supported: use ddp, which runs the whole command once per process"
        )
