"""Classifiers whose easy inputs leave early: exits after chosen layers (Schwartz et al. 2020).

"The Right Tool for the Job" (Schwartz et al., ACL 2020) adds a classifier after several layers of a
fine-tuned BERT, calibrates each one with a temperature (Guo et al. 2017), and stops an input at the
first exit whose calibrated confidence passes a threshold. Exit policies here:

  max_prob  calibrated max softmax probability > threshold (Schwartz et al. 2020; the default)
  entropy   1 - H(p) / ln K > threshold, i.e. normalised entropy below 1 - threshold (DeeBERT, Xin et al.
            2020; DeeBERT's entropy bound S is threshold = 1 - S / ln K)
  patience  this exit's argmax and those of the ``patience`` exits before it agree (PABEE, Zhou et al. 2020)

A threshold of 1.0 never exits early, and then no exit head runs at all: the model is the original one.

Batched inference saves real compute: after each exit, the examples that exit leave the batch (and
padding columns that no remaining example needs are cut); the rest go on to the next layers.
``forward`` returns logits in input order plus ``exit_layers`` (1 = first layer) for every example.
Over many batches (evaluation, prediction, throughput), ``predict_batches`` lets the rows that go on
wait for the next batches' rows at each layer, so that every layer runs on full batches.

Any BERT-family sequence classifier whose forward pass is embeddings -> ``encoder.layer[i]`` -> its own
classifier can take exits (BERT, RoBERTa, ELECTRA, greenlm's fine-tuned, distilled and pruned models).
The wrapper checks on a probe batch that its layer-by-layer path reproduces the backbone's logits and
refuses a model where it does not. The last layer's exit is always the backbone's own classifier.

The pieces live beside this module: ``exit_heads`` (exit heads, confidences, the exit rule offline),
``exit_policies`` (the policies and their checks, plain Python), ``exit_engine`` (batched early exit over a
stream of batches), ``exit_costs`` (FLOPs of each piece) and ``exit_folder`` (the saved layout, greenlm
format ``early_exit``: config.json, the exit heads in model.safetensors, the tokenizer, the backbone in backbone/).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from greenlm.common import GreenlmError, atomic_write_json
from greenlm.models import exit_engine
from greenlm.models.exit_costs import ExitCosts, measure_exit_costs  # noqa: F401 (re-exported)
from greenlm.models.exit_folder import (BACKBONE_DIR, FORMAT, WEIGHTS_FILE,  # noqa: F401 (re-exported)
                                        load_early_exit, save_early_exit)
from greenlm.models.exit_heads import ExitHead, exit_confidence, simulate_exits  # noqa: F401 (re-exported)
from greenlm.models.exit_policies import (POLICIES, POOLINGS, check_policy,  # noqa: F401 (re-exported)
                                          policy_exits_early)
from greenlm.models.quantized import is_linear, is_torch_int8


# ---- the pieces of a backbone ------------------------------------------------------------------


@dataclass
class _Parts:
    """References into a BERT-family classifier, in forward order. Held outside the module tree, so the
    wrapper's state dict names every weight once (under ``backbone.``)."""

    base: nn.Module  # BertModel / RobertaModel / ElectraModel: owns config, embeddings, encoder
    embeddings: nn.Module  # input_ids [B, T] -> [B, T, E]
    project: nn.Module | None  # ELECTRA's embeddings_project E -> H when embedding_size != hidden_size
    layers: nn.ModuleList  # each [B, T, H] -> [B, T, H], called as layer(hidden, mask)
    head: Callable[[torch.Tensor], torch.Tensor]  # the model's own classifier: [B, T, H] -> [B, K]


class _PoolerHead(nn.Module):
    """BERT's classifier path as one module (not a closure, so that ``copy.deepcopy`` of the wrapper points
    its copy at the copied weights): pooler (dense + tanh on token 0) -> dropout -> linear."""

    def __init__(self, pooler: nn.Module, dropout: nn.Module, classifier: nn.Module):
        super().__init__()
        self.pooler, self.dropout, self.classifier = pooler, dropout, classifier

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pooler(hidden)))


def _cannot_attach(model, why: str) -> GreenlmError:
    return GreenlmError(
        f"cannot attach early exits to {type(model).__name__}: {why}. greenlm adds exits to BERT-family sequence"
        " classifiers in PyTorch (embeddings, encoder.layer, classifier) such as a fine-tuned, distilled or pruned"
        " model; apply early exit before quantization or ONNX export"
    )


def _find_parts(model) -> _Parts:
    if isinstance(model, EarlyExitClassifier):
        raise GreenlmError("this model already has early exits; give the model it was made from")
    if not isinstance(model, nn.Module):
        raise _cannot_attach(model, "it is not a PyTorch module")
    base = getattr(model, "base_model", None)
    embeddings = getattr(base, "embeddings", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if base is None or base is model:
        raise _cannot_attach(model, "it is not a sequence classifier with a base model (e.g. BertForSequenceClassification)")
    if embeddings is None or not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise _cannot_attach(model, "its base model has no embeddings and encoder.layer list")
    classifier = getattr(model, "classifier", None)
    if is_linear(classifier):  # BERT: pooler (dense + tanh on token 0) -> dropout -> linear (fp32 or int8)
        pooler = getattr(base, "pooler", None)
        if pooler is None:
            raise _cannot_attach(model, "its linear classifier has no pooler to read")
        head = _PoolerHead(pooler, getattr(model, "dropout", None) or nn.Identity(), classifier)
    elif isinstance(classifier, nn.Module):  # RoBERTa / ELECTRA: a head module that reads token 0 itself
        head = classifier
    else:
        raise _cannot_attach(model, "it has no 'classifier' module")
    return _Parts(base, embeddings, getattr(base, "embeddings_project", None), layers, head)


@dataclass
class EarlyExitOutput:
    """What the wrapper returns; ``logits`` is what every greenlm consumer reads."""

    logits: torch.Tensor  # [B, K]: the exit each example took (eval), the last exit (train)
    exit_layers: torch.Tensor | None = None  # [B] long, 1-based layer each example exited after (eval)
    exit_logits: tuple[torch.Tensor, ...] | None = None  # every exit's [B, K], in exit order (train)
    loss: torch.Tensor | None = None  # with labels: sum of exit cross-entropies (train), CE of logits (eval)


# ---- the wrapper -------------------------------------------------------------------------------


def normalise_exit_layers(exit_layers: Sequence[int] | None, num_layers: int) -> tuple[int, ...]:
    """Sorted, distinct, 1-based exit layers, the last layer included (its exit is the model's classifier)."""
    if exit_layers is None:
        return tuple(range(1, num_layers + 1))
    layers = list(exit_layers)
    if not layers:
        raise GreenlmError(f"no exit layers given; give layers in 1..{num_layers}, or none for every layer")
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise GreenlmError(f"exit layer {layer!r} is not a whole number; give layers in 1..{num_layers}")
        if not 1 <= layer <= num_layers:
            raise GreenlmError(
                f"exit layer {layer} is out of range: the model has {num_layers} layers; use layers 1..{num_layers}"
            )
    return tuple(sorted(set(layers) | {num_layers}))


class EarlyExitClassifier(nn.Module):
    """A sequence classifier with exits after chosen layers. ``forward`` in eval mode exits early.

    ``backbone``: a BERT-family ``*ForSequenceClassification`` (plain or pruned). ``exit_layers``:
    1-based layers with an exit (default every layer; the last is always added). Exit heads start as
    copies of the backbone's own head where the shapes allow (``init_from_final``), else at random.
    """

    def __init__(self, backbone: nn.Module, exit_layers: Sequence[int] | None = None, *, policy: str = "max_prob",
                 threshold: float | None = 1.0, patience: int | None = None,
                 temperatures: Sequence[float] | None = None, pooling: str = "mean", tokenizer=None,
                 init_from_final: bool = True):
        super().__init__()
        if is_torch_int8(backbone):
            raise _cannot_attach(backbone, "its linear layers are already quantized (PyTorch int8)")
        parts = _find_parts(backbone)
        config = backbone.config
        self.backbone = backbone
        self._parts = parts  # a plain attribute: not registered twice
        self.num_layers = len(parts.layers)
        self.exit_layers = normalise_exit_layers(exit_layers, self.num_layers)
        num_labels, hidden = config.num_labels, config.hidden_size
        dropout = getattr(config, "classifier_dropout", None)
        dropout = dropout if dropout is not None else getattr(config, "hidden_dropout_prob", 0.1)
        self.pooling = pooling
        self.exits = nn.ModuleDict({str(layer): ExitHead(hidden, num_labels, dropout, pooling)
                                    for layer in self.exit_layers[:-1]})
        for head in self.exits.values():
            _init_head(head, backbone, config, init_from_final)
        self.tokenizer = tokenizer  # saved into backbone/ so that folder loads on its own
        self.encoder_frozen = False
        self.config = copy.deepcopy(config)  # the backbone's, with greenlm early-exit settings
        self._backbone_greenlm = dict(getattr(config, "greenlm", None) or {})
        self.temperatures = (1.0,) * len(self.exit_layers)
        if temperatures is not None:
            self.set_temperatures(temperatures)
        self.set_policy(policy, threshold=threshold, patience=patience)
        self.train(backbone.training)  # the wrapper starts in the backbone's mode
        _check_layerwise_path(self)

    # -- settings ------------------------------------------------------------------------------

    def set_policy(self, policy: str, *, threshold: float | None = None, patience: int | None = None) -> None:
        check_policy(policy, threshold, patience)
        self.policy = policy
        self.threshold = None if policy == "patience" else float(threshold)
        self.patience = patience if policy == "patience" else None
        self._refresh_config()

    def set_temperatures(self, temperatures: Sequence[float]) -> None:
        values = [float(t) for t in temperatures]
        if len(values) != len(self.exit_layers) or not all(math.isfinite(t) and t > 0 for t in values):
            raise GreenlmError(
                f"temperatures must be {len(self.exit_layers)} positive numbers (one per exit), got {list(temperatures)}"
            )
        self.temperatures = tuple(values)
        self._refresh_config()

    def settings(self) -> dict:
        """What config.json's "greenlm" section holds (besides the backbone's task, labels, max_length)."""
        return {
            "format": FORMAT,
            "backbone": BACKBONE_DIR,
            "exit_layers": list(self.exit_layers),
            "num_layers": self.num_layers,
            "temperatures": [round(t, 6) for t in self.temperatures],
            "policy": self.policy,
            "threshold": self.threshold,
            "patience": self.patience,
            "exit_pooling": self.pooling,
            "exit_head": f"{self.pooling} pooling, dense + tanh, dropout, linear; last layer: the backbone's classifier",
        }

    def _refresh_config(self) -> None:
        if hasattr(self, "policy") and hasattr(self, "temperatures"):
            self.config.greenlm = {**self._backbone_greenlm, **self.settings()}

    def set_backbone_info(self, **info) -> None:
        """Record task, labels, max_length... beside the exit settings (they are saved in config.json)."""
        self._backbone_greenlm.update(info)
        self._refresh_config()

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Freeze the backbone (encoder and its classifier): only the new exits train, and full-depth
        predictions stay the original model's. The backbone then stays in eval mode (no dropout)."""
        self.encoder_frozen = frozen
        for param in self.backbone.parameters():
            param.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.encoder_frozen:
            self.backbone.eval()
        return self

    def refresh_parts(self) -> None:
        """Point the layer-by-layer path at the backbone's modules as they are now (after its linear layers were
        replaced, e.g. by dynamic int8 ones: ``greenlm.models.quantized``)."""
        self._parts = _find_parts(self.backbone)

    def exits_early(self) -> bool:
        """False when no example can leave before the last layer (then no exit head runs)."""
        return policy_exits_early(self.policy, self.threshold, self.patience, len(self.exit_layers))

    # -- forward ---------------------------------------------------------------------------------

    def _embed(self, input_ids, token_type_ids):
        hidden = self._parts.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # [B, T, E]
        return self._parts.project(hidden) if self._parts.project is not None else hidden  # [B, T, H]

    def _mask(self, hidden, attention_mask):
        """The backbone's own attention mask for its attention implementation (None when nothing is masked)."""
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self._parts.base.config, inputs_embeds=hidden,
                                         attention_mask=attention_mask)

    @staticmethod
    def _layer(layer, hidden, mask):
        out = layer(hidden, mask)
        return out[0] if isinstance(out, tuple) else out

    def exit_logits(self, input_ids, attention_mask=None, token_type_ids=None) -> list[torch.Tensor]:
        """Logits [B, K] of every exit, in exit order, running every layer (training, calibration, curves)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        outputs: list[torch.Tensor] = []
        backbone_grad = torch.is_grad_enabled() and not self.encoder_frozen
        with torch.set_grad_enabled(backbone_grad):
            hidden = self._embed(input_ids, token_type_ids)
            mask = self._mask(hidden, attention_mask)
        for i, layer in enumerate(self._parts.layers, start=1):
            with torch.set_grad_enabled(backbone_grad):
                hidden = self._layer(layer, hidden, mask)
                if i == self.num_layers:
                    outputs.append(self._parts.head(hidden))
            if str(i) in self.exits:
                outputs.append(self.exits[str(i)](hidden, attention_mask))
        return outputs

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **unused) -> EarlyExitOutput:
        extra = sorted(k for k, v in unused.items() if v is not None and k not in ("return_dict",))
        if extra:
            raise TypeError(f"EarlyExitClassifier.forward() got unexpected arguments: {', '.join(extra)}")
        if self.training:
            logits = self.exit_logits(input_ids, attention_mask, token_type_ids)
            loss = None
            if labels is not None:
                loss = sum(nn.functional.cross_entropy(z.float(), labels) for z in logits)
            return EarlyExitOutput(logits=logits[-1], exit_logits=tuple(logits), loss=loss)
        logits, layers = self._early_exit(input_ids, attention_mask, token_type_ids)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return EarlyExitOutput(logits=logits, exit_layers=layers, loss=loss)

    def _early_exit(self, input_ids, attention_mask, token_type_ids):
        """Batched early exit of one batch: rows that exit leave it. Returns logits [B, K] and exit layers [B]."""
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.predict_batches([batch])

    def predict_batches(self, batches: Iterable[dict], *, pool_size: int | None = None,
                        on_batch: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Early exit over a stream of batches (dicts of ``input_ids`` and optionally ``attention_mask``,
        ``token_type_ids``; a list or a generator, taken one at a time): logits [N, K] (float32) and exit layers
        [N] (1-based) for the rows of all batches, in order.

        Rows that go on past an exit wait for the rows of the next batches at that layer, and a layer runs
        once ``pool_size`` rows (default: the first batch's size) wait for it. So every layer runs on full batches,
        not on the few rows of one batch that did not exit: on a 2-core CPU, a layer over 4 rows of 25 tokens
        runs far below the matrix-product rate of one over 32 rows. Each row's arithmetic is unchanged (its
        padding columns are masked), so the outputs equal batch-by-batch early exit's. With one batch, this
        is batch-by-batch early exit. ``on_batch`` is called after each input batch is taken in.
        """
        return exit_engine.predict_batches(self, batches, pool_size=pool_size, on_batch=on_batch)

    # -- saving ----------------------------------------------------------------------------------

    def save_pretrained(self, save_directory, tokenizer=None, **_) -> None:
        """Write the folder layout described in ``exit_folder``'s docstring into ``save_directory``."""
        from safetensors.torch import save_file

        from greenlm.models.loading import mark_format

        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        if tokenizer is None:
            raise ValueError("an early-exit model is saved with its tokenizer (its backbone folder needs one)")
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(folder / BACKBONE_DIR)
        tokenizer.save_pretrained(folder / BACKBONE_DIR)
        config = self.backbone.config.to_dict()
        config["greenlm"] = dict(self.config.greenlm)
        atomic_write_json(folder / "config.json", mark_format(config))  # plain transformers must refuse it
        state = {f"exits.{k}": v.detach().cpu().contiguous() for k, v in self.exits.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "greenlm": FORMAT})


def _init_head(head: ExitHead, backbone, config, from_final: bool) -> None:
    """Start an exit as a copy of the backbone's own head (BERT: pooler + classifier; RoBERTa: dense + out_proj)."""
    std = getattr(config, "initializer_range", 0.02)
    for linear in (head.dense, head.classifier):
        nn.init.normal_(linear.weight, std=std)
        nn.init.zeros_(linear.bias)
    if not from_final:
        return
    base, classifier = backbone.base_model, getattr(backbone, "classifier", None)
    pairs = []
    if isinstance(classifier, nn.Linear) and getattr(base, "pooler", None) is not None:
        pairs = [(head.dense, getattr(base.pooler, "dense", None)), (head.classifier, classifier)]
    elif classifier is not None:
        pairs = [(head.dense, getattr(classifier, "dense", None)), (head.classifier, getattr(classifier, "out_proj", None))]
    if all(isinstance(src, nn.Linear) and src.weight.shape == dst.weight.shape for dst, src in pairs) and pairs:
        with torch.no_grad():
            for dst, src in pairs:
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)


@torch.no_grad()
def _check_layerwise_path(model: EarlyExitClassifier) -> None:
    """Refuse a backbone whose forward pass is not embeddings -> layers -> classifier (checked on a probe)."""
    backbone, config = model.backbone, model.backbone.config
    vocab = int(getattr(config, "vocab_size", 2))
    width = min(8, int(getattr(config, "max_position_embeddings", 8)) - 2)
    ids = (torch.arange(2 * width).reshape(2, width) * 7 + 3) % vocab
    mask = torch.ones_like(ids)
    mask[1, width // 2:] = 0  # the second row is padded
    device = next(backbone.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    was_training = model.training
    model.eval()
    try:
        expected = backbone(input_ids=ids, attention_mask=mask).logits.float()
        got = model.exit_logits(ids, mask)[-1].float()
    except Exception as err:  # any failure of the layer-by-layer path means exits cannot attach here
        raise _cannot_attach(backbone, f"running it layer by layer failed ({type(err).__name__}: {err})") from None
    finally:
        model.train(was_training)
    if expected.shape != got.shape or not torch.allclose(expected, got, atol=1e-4, rtol=1e-3):
        raise _cannot_attach(backbone, "its layer-by-layer outputs differ from its own forward pass")
