"""AV-HuBERT encoder (Shi et al. 2022) in plain PyTorch, loading the official fairseq checkpoints.

Module names mirror the official ``avhubert/hubert.py`` and ``avhubert/resnet.py`` so that the
released state dicts load key for key. Differences from the reference, on purpose: padded keys
are masked in attention, and padded frames never influence valid ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .fairseq_checkpoint import CheckpointError, drop_pretraining_keys, fuse_weight_norm, load_checkpoint, model_config
from .filterbank import NUM_BANDS, STACK, audio_features, num_filterbank_frames
from .frozen import FrozenEncoder

MODALITIES = ("video", "audio", "audiovisual")


@dataclass
class AVHubertConfig:
    """Topology and regularisation of an AV-HuBERT encoder (official names in comments)."""

    layers: int = 12  # encoder_layers
    dim: int = 768  # encoder_embed_dim
    heads: int = 12  # encoder_attention_heads
    ffn_dim: int = 3072  # encoder_ffn_embed_dim
    resnet_widths: tuple[int, ...] = (64, 128, 256, 512)  # ResNet-18 stages (not in the cfg)
    audio_feat_dim: int = STACK * NUM_BANDS  # audio_feat_dim
    conv_pos: int = 128  # conv_pos (kernel of the positional convolution)
    conv_pos_groups: int = 16  # conv_pos_groups
    dropout: float = 0.1  # dropout
    attention_dropout: float = 0.1  # attention_dropout
    activation_dropout: float = 0.0  # activation_dropout
    dropout_input: float = 0.0  # dropout_input
    layerdrop: float = 0.05  # encoder_layerdrop

    @classmethod
    def base(cls) -> "AVHubertConfig":
        """AV-HuBERT Base: 12 layers, 768 wide, 12 heads, FFN 3072."""
        return cls()

    @classmethod
    def large(cls) -> "AVHubertConfig":
        """AV-HuBERT Large: 24 layers, 1024 wide, 16 heads, FFN 4096."""
        return cls(layers=24, dim=1024, heads=16, ffn_dim=4096)


# ----------------------------------------------------------------------------- video frontend


class BasicBlock(nn.Module):
    """ResNet-18 block; the second PReLU comes after the residual addition (as the official one)."""

    def __init__(self, in_width: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_width, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.PReLU(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.PReLU(width)
        self.downsample = None
        if stride != 1 or in_width != width:
            self.downsample = nn.Sequential(nn.Conv2d(in_width, width, 1, stride, bias=False), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + residual)


class ResNetTrunk(nn.Module):
    """Per-frame 2D ResNet-18 ([2, 2, 2, 2] blocks) ending in a global average pool."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        in_width = widths[0]
        for stage, width in enumerate(widths, start=1):
            stride = 1 if stage == 1 else 2
            self.add_module(f"layer{stage}", nn.Sequential(BasicBlock(in_width, width, stride), BasicBlock(width, width, 1)))
            in_width = width
        self.num_stages = len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return x.mean(dim=(2, 3))


class ResNetEncoder(nn.Module):
    """3D conv stem (5 frames in time, never strided) then the per-frame ResNet trunk."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        stem = widths[0]
        # The official stem ends in MaxPool3d((1, 3, 3)); with a time kernel of 1 it is the 2D pool
        # applied per frame, done below after folding time into the batch (faster, no weights).
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, stem, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(stem),
            nn.PReLU(stem),
        )
        self.trunk = ResNetTrunk(widths)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """[B, T, H, W] -> [B, T, widths[-1]]."""
        batch, frames = video.shape[:2]
        x = self.frontend3D(video.unsqueeze(1))  # [B, C, T, H', W']
        x = x.transpose(1, 2).flatten(0, 1)  # time folded into the batch for the 2D trunk
        if x.is_cuda:  # channels_last speeds up cuDNN; on CPU (torch 2.13) its conv/BN backward corrupts the heap
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.max_pool2d(x, 3, 2, 1)
        return self.trunk(x).view(batch, frames, -1)


class VideoFeatureExtractor(nn.Module):
    def __init__(self, config: AVHubertConfig) -> None:
        super().__init__()
        self.resnet = ResNetEncoder(tuple(config.resnet_widths))
        self.proj = nn.Linear(config.resnet_widths[-1], config.dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.proj(self.resnet(video))


class AudioFeatureExtractor(nn.Module):
    def __init__(self, config: AVHubertConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(config.audio_feat_dim, config.dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features)


# ----------------------------------------------------------------------------- transformer


class SelfAttention(nn.Module):
    def __init__(self, config: AVHubertConfig) -> None:
        super().__init__()
        self.heads, self.dropout = config.heads, config.attention_dropout
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(config.dim, config.dim) for _ in range(4))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x [B, T, D]; key_mask [B, T] True at valid frames."""
        batch, frames, dim = x.shape
        q, k, v = (proj(x).view(batch, frames, self.heads, -1).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, frames, dim))


class EncoderLayer(nn.Module):
    """Pre-LN transformer layer (``layer_norm_first``), exact GELU."""

    def __init__(self, config: AVHubertConfig) -> None:
        super().__init__()
        self.self_attn = SelfAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(config.dim)
        self.fc1 = nn.Linear(config.dim, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, config.dim)
        self.final_layer_norm = nn.LayerNorm(config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.activation_dropout = nn.Dropout(config.activation_dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), key_mask))
        hidden = self.activation_dropout(F.gelu(self.fc1(self.final_layer_norm(x))))
        return x + self.dropout(self.fc2(hidden))


class TransformerEncoder(nn.Module):
    def __init__(self, config: AVHubertConfig) -> None:
        super().__init__()
        self.layerdrop = config.layerdrop
        # Weight norm is fused into a plain weight at load time (fairseq_checkpoint.fuse_weight_norm).
        self.pos_conv = nn.Sequential(
            nn.Conv1d(config.dim, config.dim, config.conv_pos, padding=config.conv_pos // 2, groups=config.conv_pos_groups)
        )
        self.even_kernel = config.conv_pos % 2 == 0
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.layers))
        self.layer_norm = nn.LayerNorm(config.dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x * key_mask.unsqueeze(-1)  # padded frames must not leak into the convolution
        conv = self.pos_conv[0]
        # In float32 whatever the stored dtype: oneDNN's bfloat16 grouped convolution with this
        # 128-tap kernel came out ~100 % off float32 on a CPU with AMX (PyTorch 2.13), while the
        # same layer with groups 1 or depthwise was within 0.3 %. One convolution: cheap either way.
        with torch.autocast(x.device.type, enabled=False):
            positions = F.conv1d(x.transpose(1, 2).float(), conv.weight.float(),
                                 None if conv.bias is None else conv.bias.float(),
                                 padding=conv.padding, groups=conv.groups).to(x.dtype)
        if self.even_kernel:  # an even kernel with padding k/2 makes one extra frame
            positions = positions[..., :-1]
        x = self.dropout(x + F.gelu(positions.transpose(1, 2)))
        for layer in self.layers:
            if self.training and torch.rand(()) < self.layerdrop:
                continue
            x = layer(x, key_mask)
        return self.layer_norm(x)


# ----------------------------------------------------------------------------- encoder


class AVHubertEncoder(FrozenEncoder):
    """AV-HuBERT encoder: 25 Hz features [B, T, dim] from lip crops, raw audio, or both."""

    def __init__(self, config: AVHubertConfig, modality: str = "video", trainable: bool = False) -> None:
        super().__init__(trainable)
        if modality not in MODALITIES:
            raise ValueError(f"modality={modality!r}: choose one of {MODALITIES}")
        self.config, self.modality = config, modality
        self.feature_extractor_video = VideoFeatureExtractor(config)
        self.feature_extractor_audio = AudioFeatureExtractor(config)
        self.layer_norm = nn.LayerNorm(2 * config.dim)
        self.post_extract_proj = nn.Linear(2 * config.dim, config.dim)
        self.dropout_input = nn.Dropout(config.dropout_input)
        self.encoder = TransformerEncoder(config)
        self.freeze_unless_trainable()

    def freeze_unless_trainable(self) -> None:
        """As FrozenEncoder's, and the front-end of the modality this encoder never reads is frozen
        even when the rest trains: no loss reaches it, so it would never learn, DDP would stop at
        its second step waiting for its gradient, and every checkpoint would carry it."""
        super().freeze_unless_trainable()
        unread = {"video": self.feature_extractor_audio, "audio": self.feature_extractor_video}.get(self.modality)
        if unread is not None:
            unread.requires_grad_(False)

    @property
    def output_dim(self) -> int:
        """Width of the returned features."""
        return self.config.dim

    @classmethod
    def from_fairseq_checkpoint(cls, path: str | Path, modality: str = "video", trainable: bool = False) -> "AVHubertEncoder":
        """Build the encoder from an official checkpoint (e.g. ``large_vox_iter5.pt``): topology
        from its cfg (ResNet widths from the weights), weights key for key, weight norm fused."""
        checkpoint = load_checkpoint(path)
        config = config_from_checkpoint(checkpoint, path)
        encoder = cls(config, modality=modality, trainable=True)
        state = drop_pretraining_keys(dict(checkpoint["model"]))
        if "encoder.pos_conv.0.weight_g" in state:
            fuse_weight_norm(state, "encoder.pos_conv.0", dim=2)
        missing, unexpected = encoder.load_state_dict(state, strict=False)
        missing = [key for key in missing if not key.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: state dict does not match the AV-HuBERT layout; missing keys: {missing}; "
                f"unexpected keys: {unexpected}. Use an official AV-HuBERT checkpoint (pretrained or fine-tuned "
                f"with the 'w2v_model.'/'encoder.w2v_model.' prefix removed)."
            )
        encoder.trainable = trainable
        encoder.requires_grad_(True)
        encoder.freeze_unless_trainable()
        return encoder

    def add_lora(self, rank: int, alpha: float, dropout: float = 0.0) -> None:
        """LoRA on every layer's q and v projections through peft; only the LoRA weights train."""
        from peft import LoraConfig, inject_adapter_in_model

        lora = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=["q_proj", "v_proj"])
        inject_adapter_in_model(lora, self.encoder)
        for name, parameter in self.named_parameters():
            parameter.requires_grad_("lora_" in name)

    def forward(
        self,
        video: torch.Tensor | None = None,
        video_lengths: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        audio_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """video [B, T, H, W] normalised grayscale crops, audio [B, S] 16 kHz waveform (both zero
        padded at the end, lengths = valid frames / samples). Returns (features [B, T, dim] after
        the final layer norm, valid frame counts [B])."""
        uses_video, uses_audio = self.modality != "audio", self.modality != "video"
        if uses_video and video is None or uses_audio and audio is None:
            raise ValueError(f"modality={self.modality!r} needs video={uses_video} and audio={uses_audio} inputs")
        with self.grad_context():
            if uses_video:
                lengths, frames = _lengths_or_full(video_lengths, video), video.shape[1]
            else:
                samples = _lengths_or_full(audio_lengths, audio)
                lengths = torch.tensor([-(-num_filterbank_frames(int(n)) // STACK) for n in samples])
                frames = int(lengths.max())
            device, dtype = self.layer_norm.weight.device, self.layer_norm.weight.dtype  # bf16 when stored in bf16
            key_mask = torch.arange(frames, device=device) < lengths.to(device)[:, None]
            zeros = torch.zeros(len(lengths), frames, self.config.dim, device=device, dtype=dtype)  # a missing modality
            audio_part = video_part = zeros
            if uses_audio:
                samples = _lengths_or_full(audio_lengths, audio)
                feats = torch.stack([
                    F.pad(audio_features(wave[: int(n)], int(t)), (0, 0, 0, frames - int(t)))
                    for wave, n, t in zip(audio, samples, lengths)
                ])
                audio_part = self.feature_extractor_audio(feats.to(dtype))
            if uses_video:
                video = video.to(dtype) * key_mask[:, :, None, None]  # the 3D stem sees zeros past the end
                video_part = self.feature_extractor_video(video)
            x = self.post_extract_proj(self.layer_norm(torch.cat([audio_part, video_part], dim=-1)))
            x = self.encoder(self.dropout_input(x), key_mask)
        return x, lengths.to(device)


def _lengths_or_full(lengths: torch.Tensor | None, batch: torch.Tensor) -> torch.Tensor:
    if lengths is None:
        return torch.full((batch.shape[0],), batch.shape[1], dtype=torch.long)
    return lengths.long().cpu()


def config_from_checkpoint(checkpoint: dict, path: str | Path = "checkpoint") -> AVHubertConfig:
    """AVHubertConfig from a checkpoint's cfg/args, ResNet widths from the stored weights."""
    cfg = model_config(checkpoint, path)
    if not cfg.get("layer_norm_first", True):
        raise CheckpointError(f"{path}: cfg.model.layer_norm_first=False (post-LN) is not supported; AV-HuBERT uses pre-LN")
    if cfg.get("modality_fuse", "concat") != "concat":
        raise CheckpointError(f"{path}: cfg.model.modality_fuse={cfg['modality_fuse']!r}; only 'concat' is supported")
    if cfg.get("resnet_relu_type", "prelu") != "prelu":
        raise CheckpointError(f"{path}: cfg.model.resnet_relu_type={cfg['resnet_relu_type']!r}; only 'prelu' is supported")
    if cfg.get("sub_encoder_layers", 0):
        raise CheckpointError(f"{path}: cfg.model.sub_encoder_layers={cfg['sub_encoder_layers']}; only 0 is supported")
    state = checkpoint["model"]
    widths = []
    while f"feature_extractor_video.resnet.trunk.layer{len(widths) + 1}.0.conv1.weight" in state:
        widths.append(state[f"feature_extractor_video.resnet.trunk.layer{len(widths) + 1}.0.conv1.weight"].shape[0])
    names = {
        "layers": "encoder_layers", "dim": "encoder_embed_dim", "heads": "encoder_attention_heads",
        "ffn_dim": "encoder_ffn_embed_dim", "audio_feat_dim": "audio_feat_dim", "conv_pos": "conv_pos",
        "conv_pos_groups": "conv_pos_groups", "dropout": "dropout", "attention_dropout": "attention_dropout",
        "activation_dropout": "activation_dropout", "dropout_input": "dropout_input", "layerdrop": "encoder_layerdrop",
    }
    defaults = AVHubertConfig()
    values = {field: cfg.get(key, getattr(defaults, field)) for field, key in names.items()}
    return dataclasses.replace(defaults, resnet_widths=tuple(widths) or defaults.resnet_widths, **values)
