"""Only parameters a forward can use are trainable, and the check before training finds the others.

A trainable parameter that no loss reaches stops DDP at its second step (issue 21); these tests
plant such parameters and layer dropping, and check that a single-modality AV-HuBERT has none.
"""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from avsr_sinks.encoders import AVHubertConfig, AVHubertEncoder
from avsr_sinks.model.gradient_coverage import gradient_coverage
from avsr_sinks.training.config_validation import ConfigError
from avsr_sinks.training.pipeline import check_gradient_coverage

TINY = AVHubertConfig(layers=2, dim=16, heads=2, ffn_dim=32, resnet_widths=(2, 2, 4, 4), conv_pos=4, conv_pos_groups=2)


@pytest.mark.parametrize("modality", ["video", "audio", "audiovisual"])
def test_a_trainable_avhubert_trains_exactly_what_its_modality_reads(modality):
    torch.manual_seed(0)
    encoder = AVHubertEncoder(TINY, modality=modality, trainable=True).train()
    encoder.encoder.layerdrop = 0.0  # every layer in this one pass
    inputs = {}
    if modality != "audio":
        inputs.update(video=torch.randn(2, 5, 88, 88), video_lengths=torch.tensor([5, 3]))
    if modality != "video":
        inputs.update(audio=torch.randn(2, 3200), audio_lengths=torch.tensor([3200, 2000]))
    features, _ = encoder(**inputs)
    features.square().sum().backward()
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    with_gradient = {name for name, p in encoder.named_parameters() if p.grad is not None}
    assert trainable == with_gradient
    unread = {"video": "feature_extractor_audio.", "audio": "feature_extractor_video.", "audiovisual": None}[modality]
    frozen = {name for name, p in encoder.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, _ in encoder.named_parameters() if unread and name.startswith(unread)}


class Planted(nn.Module):
    """A used branch with BatchNorm and dropout, a trainable Linear that forward never calls, and
    a block that drops its layer at random (as AV-HuBERT's and Whisper's encoders do)."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
        self.unused = nn.Linear(3, 4)
        self.block = nn.Module()
        self.block.layer = nn.Linear(4, 4)
        self.block.layerdrop = 1.0  # always skipped in training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.used(x)
        if not (self.block.training and torch.rand(()) < self.block.layerdrop):
            h = self.block.layer(h)
        return h.sum()


def test_coverage_names_what_the_loss_misses_and_leaves_the_model_as_found():
    torch.manual_seed(0)
    model = Planted().eval()
    x = torch.randn(5, 3)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    torch.manual_seed(7)
    coverage = gradient_coverage(model, lambda m: m(x))
    after_check = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(after_check, torch.rand(3)), "the check must not move the random stream"
    assert coverage.without_gradient == ["unused.weight", "unused.bias"]  # the block was run: it is reachable
    assert coverage.random_layer_skips == ["block"]
    assert model.block.layerdrop == 1.0 and not model.training and not model.used[1].training
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items()), "BatchNorm statistics moved"
    assert all(p.grad is None for p in model.parameters())


class LlamaAVSRLike(nn.Module):
    """What the check needs of LlamaAVSR: ``task``, modules under ``encoders.<modality>``, and a
    forward whose result has ``.loss``."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.task = "vsr"
        self.encoders = nn.ModuleDict({"video": encoder})

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(loss=self.encoders["video"](x))


def test_the_check_before_training_fails_naming_parameters_and_layerdrop_keys():
    model = LlamaAVSRLike(Planted())
    module, datamodule = SimpleNamespace(model=model), SimpleNamespace(probe_batch=lambda: torch.randn(4, 3))
    with pytest.raises(RuntimeError, match=r"2 trainable parameters get no gradient .*task=vsr: "
                                           r"encoders\.video\.unused\.weight, encoders\.video\.unused\.bias"):
        check_gradient_coverage(module, datamodule, processes=1)
    model.encoders["video"].unused.requires_grad_(False)
    check_gradient_coverage(module, datamodule, processes=1)  # in one process a dropped layer only trains less often
    with pytest.raises(ConfigError, match=r"encoders\.video\.block .*2 processes; set model\.video_encoder\.config\.layerdrop=0"):
        check_gradient_coverage(module, datamodule, processes=2)
