"""Sharded training (FSDP2) through Lightning's ``ModelParallelStrategy``: ``trainer.strategy=fsdp2``.

Each decoder layer of the LLM is its own FSDP unit (its parameters gathered for its forward and
backward only); the rest of the model (embeddings and output head, encoders, projectors) is the
root unit. FSDP2 shards every parameter on its own, so a frozen bf16 base and float32 LoRA
weights can share a layer, gradients exist only for what trains, and frozen weights never get
optimizer state. PyTorch's older FSDP (Lightning's ``FSDPStrategy``) would need
``use_orig_params`` for that mix, and neither it nor Lightning runs it without a GPU; FSDP2 runs
on CPUs with gloo too, which is how the tests check it.

Checkpoints are single files as with DDP: the trained parameters (``LlamaAVSR.trained_state_keys``)
are gathered to rank 0, never the frozen base, and ``scripts/eval.py`` / ``scripts/analyze.py``
read them unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
from transformers import PreTrainedModel

from ..model.added_tokens import upgrade_peft_token_keys
from ..model.avsr import LlamaAVSR
from ..sinks.hooks import decoder_layers
from .config_validation import SHARDED_STRATEGY as STRATEGY_NAME
from .config_validation import check_sharding


def shard_model(model: LlamaAVSR, mesh) -> None:
    """FSDP2 over ``mesh``: one unit per decoder layer, the root unit for the rest. ``generate``
    joins ``forward`` as an entry point that gathers the root unit's parameters, and the LLM is
    marked the way transformers marks its own FSDP2 models, so that its ``generate`` keeps every
    rank stepping until all are done (``synced_gpus``): each step gathers every layer, on every rank."""
    if isinstance(model, FSDPModule):
        return  # configure_model runs again for every trainer.fit/validate/test
    for layer in decoder_layers(model.llm):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    register_fsdp_forward_method(model, "generate")
    for module in model.llm.modules():
        if isinstance(module, PreTrainedModel):
            module._is_fsdp_managed_module = True


class TrainedStateModelParallelStrategy(ModelParallelStrategy):
    """``ModelParallelStrategy`` (FSDP2, data parallel only) whose checkpoints are one file holding
    the full trained parameters: only those are gathered from their shards, on every checkpoint."""

    def __init__(self, world_size: int, **kwargs) -> None:
        super().__init__(data_parallel_size=world_size, tensor_parallel_size=1, save_distributed_checkpoint=False, **kwargs)

    def lightning_module_state_dict(self) -> dict:
        trained = {f"model.{key}" for key in self.lightning_module.model.trained_state_keys()}
        state = {}
        for key, value in self.model.state_dict().items():  # the same order on every rank: gathers pair up
            if key in trained:
                full = value.full_tensor() if isinstance(value, torch.distributed.tensor.DTensor) else value
                if self.global_rank == 0:
                    state[key] = full.detach().cpu()
        return state

    def load_checkpoint(self, checkpoint_path, weights_only: bool | None = None) -> dict:
        """Lightning's, and a checkpoint written while peft trained the added token rows loads
        them as ``added_rows`` too: Lightning loads the model from the file here, before the
        module's ``on_load_checkpoint`` could rename peft's key, so they are loaded after it."""
        path = Path(self.broadcast(checkpoint_path))
        renamed = {}
        if path.is_file():
            saved = torch.load(path, map_location="cpu", mmap=True, weights_only=True).get("state_dict", {})
            renamed = {key: value for key, value in upgrade_peft_token_keys(saved).items() if key not in saved}
        checkpoint = super().load_checkpoint(path, weights_only)
        if renamed:
            set_model_state_dict(self.model, renamed,
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False))
        return checkpoint


def build_strategy(cfg: Mapping):
    """The Trainer's ``strategy`` for the run config: ``trainer.strategy=fsdp2`` becomes the FSDP2
    strategy above; any other value is Lightning's own name (``auto``, ``ddp``, ...)."""
    trainer = cfg["trainer"]
    strategy = trainer.get("strategy", "auto")
    if strategy != STRATEGY_NAME:
        return strategy
    check_sharding(cfg)
    return TrainedStateModelParallelStrategy(world_size=trainer.get("devices", 1) * int(trainer.get("num_nodes", 1)))
