"""Llama-AVSR: frozen encoders -> compressors -> projectors -> a LoRA-tuned Llama.

Plain PyTorch: the Lightning module only calls ``forward`` (losses) and ``generate``.
A batch is the data pipeline's dict: ``text`` (list of str), ``audio [B, S]`` +
``audio_lengths``, ``video [B, T, H, W]`` + ``video_lengths`` (the task's modalities only).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from peft import PeftModel
from torch import nn

from ..data.limits import SampleLimits
from ..sinks.decorrelation import decorrelation_loss
from ..sinks.hooks import HiddenStateCollector, decoder_layers
from .alignment import embedding_ctc_loss
from .compressor import build_compressor
from .generation import prefill_once_per_utterance
from .llm import SpecialTokenIds
from .projector import build_projector
from .sequence import AssembledInputs, ModalityTokens, assemble_sequences
from .tasks import DEFAULT_PROMPTS, TASK_MODALITIES, sample_limits



@dataclass
class DecorrelationSettings:
    """``weight`` is λ of Eq. 11 (0 disables the loss and its hooks). ``layers`` are 1-indexed
    decoder layers (None: the paper's 2..L-1). ``scope``: "all" tokens after BOS (the paper) or
    "prefix" (BOS, modality blocks and prompt, as the reference code)."""

    weight: float = 0.0
    layers: list[int] | None = None
    scope: str = "all"
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.scope not in ("all", "prefix"):
            raise ValueError(f"decor.scope must be 'all' or 'prefix', got {self.scope!r}")
        if self.weight < 0:
            raise ValueError(f"decor.lambda must be >= 0, got {self.weight}")

    def layer_indices(self, num_layers: int) -> list[int]:
        """0-indexed layers in S."""
        layers = self.layers if self.layers is not None else list(range(2, num_layers))
        bad = [l for l in layers if not 1 <= l <= num_layers]
        if bad:
            raise ValueError(f"decor.layers {bad} outside 1..{num_layers} (1-indexed decoder layers)")
        if not layers:
            raise ValueError(f"decor.layers is empty for a {num_layers}-layer LLM: set decor.layers or decor.lambda=0")
        return [l - 1 for l in layers]


@dataclass
class LossOutput:
    loss: torch.Tensor
    ce: torch.Tensor
    decor: torch.Tensor | None
    num_tokens: int
    ctc: torch.Tensor | None = None  # the projector's CTC against the token embeddings (ctc_weight > 0)
    # Mean L2 norm of the LLM input vectors per kind ("audio", "video" tokens from the projectors,
    # "text" for the transcript's embeddings): a projector far off the embeddings' scale aligns slowly.
    input_norms: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class GenerationSettings:
    num_beams: int = 15
    max_new_tokens: int = 32
    do_sample: bool = False
    length_penalty: float = 1.0
    extra: dict = field(default_factory=dict)


def max_new_tokens_for(longest_transcript_tokens: int) -> int:
    """A decoding limit that fits the data: the longest training transcript in tokens and its
    EOS, and half as much again (8 tokens at least), so that a hypothesis longer than every
    training transcript is still scored whole (its extra words as insertions) instead of cut."""
    needed = longest_transcript_tokens + 1
    return needed + max(8, needed // 2)


@dataclass
class Hypotheses:
    texts: list[str]
    at_token_limit: list[bool]  # stopped by max_new_tokens, not by an end of sentence


class LlamaAVSR(nn.Module):
    def __init__(
        self,
        llm: nn.Module,
        tokenizer,
        special: SpecialTokenIds,
        task: str,
        compression: list[int],
        audio_encoder: nn.Module | None = None,
        video_encoder: nn.Module | None = None,
        compressor: str = "avg-pool",
        projector: str = "mlp",
        projector_hidden: int | None = None,
        projector_layer_norm: bool = False,
        projector_matches_embedding_norm: bool = False,
        projector_ctc_weight: float = 0.0,
        projector_centers_tokens: bool = False,
        projector_ctc_warmup_steps: int = 0,
        prompt: str | None = None,
        decorrelation: DecorrelationSettings | None = None,
    ) -> None:
        super().__init__()
        if task not in TASK_MODALITIES:
            raise ValueError(f"unknown task {task!r}: choose one of {sorted(TASK_MODALITIES)} (config key task.name)")
        self.task = task
        self.modalities = TASK_MODALITIES[task]
        if len(compression) != len(self.modalities):
            expected = "two integers (audio,video), e.g. compression=16,5" if task == "avsr" else "one integer, e.g. compression=4"
            raise ValueError(f"task {task} needs {expected} in `compression`, got {list(compression)}")
        self.compression = dict(zip(self.modalities, compression))
        encoders = {"audio": audio_encoder, "video": video_encoder}
        for modality in self.modalities:
            if encoders[modality] is None:
                raise ValueError(f"task {task} needs a {modality} encoder")
        self.encoders = nn.ModuleDict({m: encoders[m] for m in self.modalities})
        self.llm = llm
        self.tokenizer = tokenizer
        self.special = special
        width = llm.config.hidden_size
        self.compressors = nn.ModuleDict({m: build_compressor(compressor, self.compression[m]) for m in self.modalities})
        self.projectors = nn.ModuleDict(
            {
                m: build_projector(
                    projector,
                    self.compressors[m].output_dim(self.encoders[m].output_dim),
                    width,
                    projector_hidden,
                    projector_layer_norm,
                )
                for m in self.modalities
            }
        )
        if projector_matches_embedding_norm:
            self._start_projectors_at_embedding_norm()
        if projector_ctc_weight < 0:
            raise ValueError(f"model.projector.ctc_weight must be >= 0, got {projector_ctc_weight}")
        if projector_ctc_warmup_steps < 0:
            raise ValueError(f"model.projector.ctc_warmup_steps must be >= 0, got {projector_ctc_warmup_steps}")
        self.ctc_weight = float(projector_ctc_weight)
        self.ctc_warmup_steps = int(projector_ctc_warmup_steps)
        self.centers_tokens = projector_centers_tokens
        if self.ctc_weight > 0 or self.ctc_warmup_steps > 0:
            # CTC's blank class, one per modality; the other classes are the frozen token embeddings.
            self.ctc_blanks = nn.ParameterDict({m: nn.Parameter(torch.zeros(width)) for m in self.modalities})
        self.prompt = prompt if prompt is not None else DEFAULT_PROMPTS[task]
        self.prompt_ids = tokenizer(self.prompt, add_special_tokens=False).input_ids
        self.decorrelation = decorrelation or DecorrelationSettings()
        num_layers = len(decoder_layers(llm))
        self.decor_layers = self.decorrelation.layer_indices(num_layers) if self.decorrelation.weight > 0 else []

    @torch.no_grad()
    def _start_projectors_at_embedding_norm(self) -> None:
        """End each projector with a LayerNorm whose gain starts at the text embeddings' RMS, so that
        its tokens start at the norm of the LLM's own inputs instead of several times it."""
        embeddings = self.llm.get_input_embeddings().weight.float()
        rms = float(embeddings.norm(dim=-1).mean()) / embeddings.shape[1] ** 0.5
        for modality, projector in self.projectors.items():
            if not isinstance(projector[-1], nn.LayerNorm):
                projector.append(nn.LayerNorm(embeddings.shape[1]))
            projector[-1].weight.fill_(rms)
            projector[-1].bias.zero_()

    def encode(self, batch: dict) -> dict[str, ModalityTokens]:
        """Encoder -> compressor -> projector for each modality of the task. A batch that holds
        ``<modality>_features`` (a feature cache's encoder outputs) skips that encoder."""
        tokens = {}
        for modality in self.modalities:
            weight = next(self.projectors[modality].parameters())
            if f"{modality}_features" in batch:
                features = batch[f"{modality}_features"]
                lengths = batch[f"{modality}_feature_lengths"].to(weight.device)
            elif modality in batch:
                features, lengths = self.encoders[modality](
                    **{modality: batch[modality], f"{modality}_lengths": batch[f"{modality}_lengths"]}
                )
            else:
                raise KeyError(f"task {self.task} needs '{modality}' in the batch; check data.modalities")
            # Cached features are float16 and a frozen encoder may be stored in bf16; the compressor
            # and the projector run in the projector's own (float32) dtype.
            features, lengths = self.compressors[modality](features.to(weight.device, weight.dtype), lengths)
            projected = self.projectors[modality](features)
            if self.centers_tokens:
                projected = center_valid_tokens(projected, lengths)
            tokens[modality] = ModalityTokens(projected, lengths)
        return tokens

    def tokenize_transcripts(self, texts: list[str]) -> list[list[int]]:
        return [self.tokenizer(t, add_special_tokens=False).input_ids for t in texts]

    def sample_limits(self) -> SampleLimits:
        """What a label CSV row must be for this model: a window of each modality's compression,
        and a sequence within the LLM's positions (``max_position_embeddings``)."""
        return sample_limits(self.compression, len(self.prompt_ids), lambda text: len(self.tokenize_transcripts([text])[0]),
                             getattr(self.llm.config, "max_position_embeddings", None))

    def trained_state_keys(self) -> set[str]:
        """State-dict keys a checkpoint must keep: the trainable parameters, and the buffers
        (BatchNorm statistics) of the modules that own them. The rest reloads from its files."""
        state = self.state_dict(keep_vars=True)
        keys = set()
        for prefix, module in self.named_modules():
            if any(p.requires_grad for p in module.parameters(recurse=False)):
                names = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
                names += [n for n, _ in module.named_buffers(recurse=False)]
                keys |= {f"{prefix}.{n}" if prefix else n for n in names}
        return keys & set(state)

    def assemble(self, batch: dict, for_generation: bool = False,
                 tokens: dict[str, ModalityTokens] | None = None) -> AssembledInputs:
        """The LLM inputs of a batch: right-padded with labels, or left-padded prefixes.
        ``tokens``: the batch's :meth:`encode` output, where the caller already has it."""
        return assemble_sequences(
            self.llm.get_input_embeddings(),
            self.special,
            tokens if tokens is not None else self.encode(batch),
            self.prompt_ids,
            None if for_generation else self.tokenize_transcripts(batch["text"]),
            padding_side="left" if for_generation else "right",
        )

    def forward(self, batch: dict) -> LossOutput:
        tokens = self.encode(batch)
        inputs = self.assemble(batch, tokens=tokens)
        norms = input_norms(tokens, inputs)
        targets = inputs.labels[:, 1:]  # next-token targets
        predicting = label_predicting_positions(targets)
        hooks = HiddenStateCollector(self.llm, self.decor_layers) if self.decor_layers else nullcontext()
        with hooks as collector:
            logits = self.llm(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                              position_ids=inputs.position_ids, use_cache=False, logits_to_keep=predicting).logits
        ce = nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets[:, predicting].flatten(), ignore_index=-100)
        labelled = int((targets != -100).sum())
        loss, ctc = ce, None
        if self.ctc_weight > 0:
            ctc = self.projector_ctc(tokens, self.tokenize_transcripts(batch["text"]))
            loss = loss + self.ctc_weight * ctc
        elif self.ctc_warmup_steps > 0:
            # After the warm-up the blanks are unused, but DDP waits for every parameter's gradient.
            loss = loss + 0.0 * sum(blank.sum() for blank in self.ctc_blanks.values())
        if collector is None:
            return LossOutput(loss, ce, None, labelled, ctc, norms)
        token_mask = inputs.prefix_mask if self.decorrelation.scope == "prefix" else None
        decor = decorrelation_loss(collector.stacked(), inputs.attention_mask, token_mask, self.decorrelation.eps)
        return LossOutput(loss + self.decorrelation.weight * decor, ce, decor, labelled, ctc, norms)

    def alignment_loss(self, batch: dict) -> torch.Tensor:
        """The projector's CTC alone (:meth:`projector_ctc`), without the LLM forward: the loss of
        the first ``ctc_warmup_steps`` training steps, which teach the projector to emit vectors
        near the embeddings of the spoken words before the LLM has to read them."""
        return self.projector_ctc(self.encode(batch), self.tokenize_transcripts(batch["text"]))

    def projector_ctc(self, tokens: dict[str, ModalityTokens], transcripts: list[list[int]]) -> torch.Tensor:
        """Mean over the modalities of :func:`~avsr_sinks.model.alignment.embedding_ctc_loss`
        against the vocabulary's frozen rows (the added modality tokens are never spoken)."""
        vocabulary = self.special.added[0] if self.special.added else None
        embedding = self.llm.get_input_embeddings()
        # The frozen matrix itself (an AddedTokenEmbedding's .weight would build a full copy).
        embeddings = getattr(embedding, "base", embedding).weight[:vocabulary].detach()
        losses = [embedding_ctc_loss(part.features, part.lengths, embeddings, self.ctc_blanks[modality], transcripts)
                  for modality, part in tokens.items()]
        return torch.stack(losses).mean()

    def generate(self, batch: dict, settings: GenerationSettings = GenerationSettings()) -> list[str]:
        """Batched beam search (HF ``generate`` on left-padded ``inputs_embeds``): the transcripts."""
        return self.generate_hypotheses(batch, settings).texts

    @torch.no_grad()
    def generate_hypotheses(self, batch: dict, settings: GenerationSettings = GenerationSettings()) -> Hypotheses:
        """As ``generate``, and which hypotheses ``settings.max_new_tokens`` cut before their EOS.
        The prompt is prefilled once per utterance rather than once per beam."""
        inputs = self.assemble(batch, for_generation=True)
        causal_lm = self.llm.get_base_model() if isinstance(self.llm, PeftModel) else self.llm
        with prefill_once_per_utterance(causal_lm, settings.num_beams):
            output_ids = self.llm.generate(
                inputs_embeds=inputs.inputs_embeds,
                attention_mask=inputs.attention_mask,
                num_beams=settings.num_beams,
                max_new_tokens=settings.max_new_tokens,
                do_sample=settings.do_sample,
                length_penalty=settings.length_penalty,
                eos_token_id=self.special.eos,
                pad_token_id=self.special.pad,
                bos_token_id=self.special.bos,
                **settings.extra,
            )
        texts = [t.strip() for t in self.tokenizer.batch_decode(output_ids, skip_special_tokens=True)]
        # The output holds the new tokens only, padded after the EOS of the hypotheses that ended.
        at_limit = output_ids.shape[1] >= settings.max_new_tokens
        return Hypotheses(texts, [at_limit and not bool((row == self.special.eos).any()) for row in output_ids])


def center_valid_tokens(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Subtract from each utterance's tokens [B, T, D] the mean of its ``lengths`` valid ones (padding
    stays as it was): what every token of an utterance shares carries nothing about what was said,
    and a trained projector's tokens are mostly such a shared vector (results/laptop/REPORT.md 7b)."""
    valid = (torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]).unsqueeze(-1)
    mean = (tokens * valid).sum(1, keepdim=True) / lengths.clamp(min=1)[:, None, None].to(tokens.dtype)
    return torch.where(valid, tokens - mean, tokens)


def label_predicting_positions(targets: torch.Tensor) -> torch.Tensor:
    """Sequence positions [K] whose next-token target [B, N-1] is a label in any sample: the only
    ones the loss sends through the vocabulary projection (the audio/video prefix would otherwise
    be most of the lm_head's time and of the logits' memory, 128k columns a position for Llama 3)."""
    return (targets != -100).any(0).nonzero().squeeze(1)


@torch.no_grad()
def input_norms(tokens: dict[str, ModalityTokens], inputs: AssembledInputs) -> dict[str, torch.Tensor]:
    """Mean L2 norm of each modality's valid projected tokens, and of the transcript embeddings."""
    norms = {}
    for modality, part in tokens.items():
        valid = torch.arange(part.features.shape[1], device=part.lengths.device)[None, :] < part.lengths[:, None]
        norms[modality] = part.features[valid].float().norm(dim=-1).mean()
    transcript = inputs.labels != -100
    if transcript.any():
        norms["text"] = inputs.inputs_embeds[transcript].float().norm(dim=-1).mean()
    return norms
