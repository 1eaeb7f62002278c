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

Saved layout (greenlm format ``early_exit``, loaded back by ``greenlm.models.load_classifier``):
  config.json        the backbone's config; "greenlm": {"format": "early_exit", exit_layers, temperatures,
                     policy, threshold, patience, exit_pooling, ...}
  model.safetensors  the exit heads (``exits.<layer>.dense`` / ``exits.<layer>.classifier``)
  tokenizer files
  backbone/          the backbone as a complete model folder (plain or pruned), loadable on its own
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from greenlm.common import GreenlmError, atomic_dir, atomic_write_json, atomic_write_text

FORMAT = "early_exit"
from greenlm.models.exit_policies import POLICIES, POOLINGS  # noqa: E402 (re-exported)
BACKBONE_DIR = "backbone"
WEIGHTS_FILE = "model.safetensors"


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
    if isinstance(classifier, nn.Linear):  # BERT: pooler (dense + tanh on token 0) -> dropout -> linear
        pooler = getattr(base, "pooler", None)
        if pooler is None:
            raise _cannot_attach(model, "its linear classifier has no pooler to read")
        head = _PoolerHead(pooler, getattr(model, "dropout", None) or nn.Identity(), classifier)
    elif isinstance(classifier, nn.Module):  # RoBERTa / ELECTRA: a head module that reads token 0 itself
        head = classifier
    else:
        raise _cannot_attach(model, "it has no 'classifier' module")
    return _Parts(base, embeddings, getattr(base, "embeddings_project", None), layers, head)


# ---- exit heads and policies -------------------------------------------------------------------


class ExitHead(nn.Module):
    """An exit after one layer (DeeBERT's "off-ramp"): pool, dense + tanh, dropout, linear.

    hidden states [B, T, H] (+ attention mask [B, T]) -> logits [B, K]. Pooling is "mean" (masked mean of
    the tokens' states: s*H additions, no matrix product) or "cls" (the first token's state, as BERT's
    pooler). Mean is the default: in early layers the first token has gathered little of the sentence, and
    in models trained with mean pooling (sentence-transformers' MiniLM) its state is dominated by a few
    large, input-independent dimensions that a dense + tanh head does not learn through. Matrix products:
    2*H*H + 2*H*K FLOPs per example, whatever T.
    """

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise GreenlmError(f"unknown exit pooling '{pooling}'; use one of: {', '.join(POOLINGS)}")
        self.pooling = pooling
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def pool(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """[B, T, H] -> [B, H]."""
        if self.pooling == "cls":
            return hidden_states[:, 0]
        if attention_mask is None:
            return hidden_states.mean(dim=1)
        mask = attention_mask[:, :, None].to(hidden_states.dtype)  # [B, T, 1]
        return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        pooled = torch.tanh(self.dense(self.pool(hidden_states, attention_mask)))  # [B, H]
        return self.classifier(self.dropout(pooled))  # [B, K]


def exit_confidence(logits: torch.Tensor, temperature: float, policy: str) -> torch.Tensor:
    """Confidence in [0, 1] of each row of ``logits`` [..., K] after temperature scaling."""
    log_p = torch.log_softmax(logits.float() / temperature, dim=-1)
    if policy == "max_prob":
        return log_p.max(dim=-1).values.exp()
    if policy == "entropy":
        entropy = -(log_p.exp() * log_p).sum(dim=-1)  # nats, in [0, ln K]
        return 1.0 - entropy / math.log(logits.shape[-1])
    raise ValueError(f"policy {policy!r} has no confidence")


def check_policy(policy: str, threshold: float | None, patience: int | None) -> None:
    """Raise ``GreenlmError`` for a policy setting a user could not mean."""
    if policy not in POLICIES:
        raise GreenlmError(f"unknown exit policy '{policy}'; use one of: {', '.join(POLICIES)}")
    if policy == "patience":
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise GreenlmError(f"patience must be a whole number >= 1 (exits that must agree), got {patience!r}")
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
        raise GreenlmError(
            f"exit threshold {threshold!r} is outside (0, 1]: 1.0 never exits early, smaller values exit earlier"
        )


def policy_exits_early(policy: str, threshold: float | None, patience: int | None, num_exits: int) -> bool:
    """False when no example can leave before the last of ``num_exits`` exits (then no exit head needs to run)."""
    if policy == "patience":
        return patience <= num_exits - 2  # the streak at the j-th exit (1-based) is at most j - 1
    return threshold < 1.0


def simulate_exits(exit_logits: torch.Tensor, temperatures: Sequence[float], policy: str,
                   threshold: float | None = None, patience: int | None = None) -> torch.Tensor:
    """Which exit each example takes, from the logits of every exit: [E, N, K] -> exit positions [N] in 0..E-1.

    The same rule as the batched forward pass, applied offline: one full pass gives the whole
    speed/accuracy curve over thresholds.
    """
    check_policy(policy, threshold, patience)
    num_exits, n = exit_logits.shape[0], exit_logits.shape[1]
    position = torch.full((n,), num_exits - 1, dtype=torch.long)
    decided = torch.zeros(n, dtype=torch.bool)
    streak = torch.zeros(n, dtype=torch.long)
    previous = torch.full((n,), -1, dtype=torch.long)
    for j in range(num_exits - 1):
        if policy == "patience":
            prediction = exit_logits[j].argmax(-1)
            streak = torch.where(prediction == previous, streak + 1, torch.zeros_like(streak))
            previous = prediction
            now = streak >= patience
        else:
            now = exit_confidence(exit_logits[j], temperatures[j], policy) > threshold
        now &= ~decided
        position[now] = j
        decided |= now
    return position


@dataclass
class EarlyExitOutput:
    """What the wrapper returns; ``logits`` is what every greenlm consumer reads."""

    logits: torch.Tensor  # [B, K]: the exit each example took (eval), the last exit (train)
    exit_layers: torch.Tensor | None = None  # [B] long, 1-based layer each example exited after (eval)
    exit_logits: tuple[torch.Tensor, ...] | None = None  # every exit's [B, K], in exit order (train)
    loss: torch.Tensor | None = None  # with labels: sum of exit cross-entropies (train), CE of logits (eval)


@dataclass
class _Rows:
    """Rows of a batched early exit still running: where each came from and its state after the last layer run."""

    index: torch.Tensor  # [b] positions in the output
    hidden: torch.Tensor  # [b, t, H]
    attention_mask: torch.Tensor  # [b, t]
    streak: torch.Tensor  # [b] patience: agreeing exits in a row
    previous: torch.Tensor  # [b] patience: the last exit's prediction (-1: none yet)

    @property
    def size(self) -> int:
        return int(self.index.shape[0])

    @classmethod
    def start(cls, index, hidden, attention_mask) -> _Rows:
        return cls(index, hidden, attention_mask, torch.zeros_like(index), torch.full_like(index, -1))

    def select(self, keep: torch.Tensor) -> _Rows:
        """The rows where ``keep`` [b] is True, without the padding columns none of them needs."""
        attention_mask = self.attention_mask[keep]
        width = int(attention_mask.any(dim=0).nonzero().max()) + 1 if attention_mask.numel() else 0
        return _Rows(self.index[keep], self.hidden[keep][:, :width], attention_mask[:, :width],
                     self.streak[keep], self.previous[keep])

    @staticmethod
    def merge(parts: list[_Rows]) -> _Rows:
        """One batch of several groups' rows, right-padded to the widest (padding is masked)."""
        if len(parts) == 1:
            return parts[0]
        width = max(p.hidden.shape[1] for p in parts)
        pad = nn.functional.pad
        return _Rows(
            torch.cat([p.index for p in parts]),
            torch.cat([pad(p.hidden, (0, 0, 0, width - p.hidden.shape[1])) for p in parts]),
            torch.cat([pad(p.attention_mask, (0, width - p.attention_mask.shape[1])) for p in parts]),
            torch.cat([p.streak for p in parts]),
            torch.cat([p.previous for p in parts]),
        )


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
        pool = pool_size
        device = next(self.parameters()).device
        finished: list[tuple[torch.Tensor, torch.Tensor, int]] = []  # (output positions, logits [b, K], layer)
        early = self.exits_early()
        waiting: list[list[_Rows]] = [[] for _ in range(self.num_layers)]  # [i]: rows about to run layer i + 1

        def run(i: int) -> None:  # layer i + 1 on every row waiting for it; exits; the rest wait for layer i + 2
            rows = _Rows.merge(waiting[i])
            waiting[i] = []
            hidden = self._layer(self._parts.layers[i], rows.hidden, self._mask(rows.hidden, rows.attention_mask))
            layer = i + 1
            if layer == self.num_layers:
                finished.append((rows.index, self._parts.head(hidden).float(), layer))
                return
            rows.hidden = hidden
            if not early or str(layer) not in self.exits:
                waiting[layer].append(rows)
                return
            logits = self.exits[str(layer)](hidden, rows.attention_mask)  # [b, K]
            if self.policy == "patience":
                prediction = logits.argmax(-1)
                rows.streak = torch.where(prediction == rows.previous, rows.streak + 1, torch.zeros_like(rows.streak))
                rows.previous = prediction
                done = rows.streak >= self.patience
            else:
                j = self.exit_layers.index(layer)
                done = exit_confidence(logits, self.temperatures[j], self.policy) > self.threshold
            if bool(done.any()):
                finished.append((rows.index[done], logits[done].float(), layer))
                rows = rows.select(~done)
            if rows.size:
                waiting[layer].append(rows)

        start = 0
        for batch in batches:
            input_ids = batch["input_ids"].to(device)
            size = int(input_ids.shape[0])
            pool = pool or size
            attention_mask = batch.get("attention_mask")
            attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device)
            token_type_ids = batch.get("token_type_ids")
            token_type_ids = None if token_type_ids is None else token_type_ids.to(device)
            waiting[0].append(_Rows.start(torch.arange(start, start + size, device=device),
                                          self._embed(input_ids, token_type_ids), attention_mask))
            start += size
            for i in range(self.num_layers):
                if sum(rows.size for rows in waiting[i]) >= pool:
                    run(i)
            if on_batch is not None:
                on_batch()
        for i in range(self.num_layers):  # the last rows, however few
            if waiting[i]:
                run(i)
        out_logits = torch.zeros(start, self.config.num_labels, dtype=torch.float32, device=device)
        out_layers = torch.full((start,), self.num_layers, dtype=torch.long, device=device)
        for index, logits, layer in finished:
            out_logits[index] = logits
            out_layers[index] = layer
        return out_logits, out_layers

    # -- saving ----------------------------------------------------------------------------------

    def save_pretrained(self, save_directory, tokenizer=None, **_) -> None:
        """Write the folder layout described in this module's docstring into ``save_directory``."""
        from safetensors.torch import save_file

        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        if tokenizer is None:
            raise ValueError("an early-exit model is saved with its tokenizer (its backbone folder needs one)")
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(folder / BACKBONE_DIR)
        tokenizer.save_pretrained(folder / BACKBONE_DIR)
        config = self.backbone.config.to_dict()
        config["greenlm"] = dict(self.config.greenlm)
        atomic_write_json(folder / "config.json", config)
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


# ---- cost model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExitCosts:
    """Forward FLOPs per example of each piece, in greenlm's ``matmul`` convention (2 per multiply-add of
    every matrix product run, as ``greenlm.measure.count_flops``). A piece costs ``a*s + b*s^2`` at s tokens
    (linear maps: a; attention scores and weighted sums: b); heads read token 0 only: a constant."""

    embeddings: tuple[float, float]  # (a, b)
    layers: tuple[tuple[float, float], ...]  # (a, b) per layer, in order (pruned layers differ)
    exit_heads: dict  # layer (int) -> FLOPs of its exit head
    final_head: float  # the backbone's classifier (pooler included)

    def _encoder(self, seq_len: torch.Tensor, upto: torch.Tensor) -> torch.Tensor:
        s = seq_len.double()
        total = self.embeddings[0] * s + self.embeddings[1] * s * s
        for i, (a, b) in enumerate(self.layers, start=1):
            total = total + torch.where(upto >= i, a * s + b * s * s, torch.zeros_like(s))
        return total

    def full_flops(self, seq_len: torch.Tensor) -> torch.Tensor:
        """The backbone alone, every layer: [N] lengths -> [N] FLOPs."""
        seq_len = torch.as_tensor(seq_len)
        return self._encoder(seq_len, torch.full_like(seq_len, len(self.layers))) + self.final_head

    def exit_flops(self, seq_len: torch.Tensor, exit_layer: torch.Tensor, heads_run: bool = True) -> torch.Tensor:
        """FLOPs of examples that exit after ``exit_layer`` (1-based) [N]; ``heads_run``: the exit heads on the
        way were evaluated (False when the policy never exits early, so no head runs)."""
        seq_len, exit_layer = torch.as_tensor(seq_len), torch.as_tensor(exit_layer)
        total = self._encoder(seq_len, exit_layer)
        if heads_run:
            for layer, flops in self.exit_heads.items():
                total = total + (exit_layer >= layer).double() * flops
        return total + (exit_layer == len(self.layers)).double() * self.final_head


@torch.no_grad()
def measure_exit_costs(model: EarlyExitClassifier) -> ExitCosts:
    """Count each piece's FLOPs with ``torch.utils.flop_counter`` on a probe at two lengths, so layers of any
    shape (pruned heads or FFN) are counted as they are. Attention runs on SDPA's math kernel while counting:
    the fused CPU kernel is invisible to the counter."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    def count(fn) -> float:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    token = min(5, int(getattr(model.config, "vocab_size", 6)) - 1)
    measured: dict[int, dict] = {}
    for s in (4, 8):  # f(s) = a*s + b*s^2 is fixed by two lengths
        ids = torch.full((1, s), token, dtype=torch.long, device=device)
        hidden = model._embed(ids, None)
        found = {"embeddings": count(lambda: model._embed(ids, None)), "layers": []}
        mask = model._mask(hidden, torch.ones_like(ids))
        for layer in model._parts.layers:
            found["layers"].append(count(lambda: model._layer(layer, hidden, mask)))
            hidden = model._layer(layer, hidden, mask)
        found["heads"] = {int(k): count(lambda: head(hidden, torch.ones_like(ids))) for k, head in model.exits.items()}
        found["final"] = count(lambda: model._parts.head(hidden))
        measured[s] = found
    model.train(was_training)

    def fit(f4: float, f8: float) -> tuple[float, float]:
        b = (f8 - 2 * f4) / 32  # f8 - 2*f4 = 64b - 32b
        return ((f4 - 16 * b) / 4, b)

    return ExitCosts(
        embeddings=fit(measured[4]["embeddings"], measured[8]["embeddings"]),
        layers=tuple(fit(x, y) for x, y in zip(measured[4]["layers"], measured[8]["layers"])),
        exit_heads=measured[4]["heads"],
        final_head=measured[4]["final"],
    )


# ---- saving and loading ---------------------------------------------------------------------------


def save_early_exit(model: EarlyExitClassifier, tokenizer, out_dir: str | Path,
                    extra_json: dict[str, object] | None = None, extra_text: dict[str, str] | None = None) -> Path:
    """Write the complete folder atomically: it appears whole or not at all (any older content stays until then)."""
    from greenlm.models.loading import _quiet_transformers

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        with _quiet_transformers():
            model.save_pretrained(tmp, tokenizer=tokenizer)
            tokenizer.save_pretrained(tmp)
        for name, payload in (extra_json or {}).items():
            atomic_write_json(tmp / name, payload)
        for name, text in (extra_text or {}).items():
            atomic_write_text(tmp / name, text)
    return out_dir


def load_early_exit(source, labels: Sequence[str] | None = None):
    """The ``_FORMAT_LOADERS`` entry for ``early_exit`` folders: backbone, exits, calibration and policy."""
    from safetensors.torch import load_file

    from greenlm.models.loading import LoadedModel, load_classifier, load_tokenizer

    folder = Path(source.location)
    settings = json.loads((folder / "config.json").read_text()).get("greenlm") or {}
    try:
        exit_layers = [int(x) for x in settings["exit_layers"]]
        temperatures = [float(t) for t in settings["temperatures"]]
        policy, threshold, patience = settings["policy"], settings.get("threshold"), settings.get("patience")
        pooling = str(settings.get("exit_pooling", "mean"))
        backbone_dir = folder / str(settings.get("backbone", BACKBONE_DIR))
    except (KeyError, TypeError, ValueError) as err:
        raise GreenlmError(f"early-exit model '{folder}' has a damaged config.json (greenlm section: {err});"
                           " save it again") from None
    if not backbone_dir.is_dir():
        raise GreenlmError(f"early-exit model '{folder}' has no {backbone_dir.name}/ folder; was it saved completely?")
    inner = load_classifier(str(backbone_dir))
    if labels is not None and list(labels) != list(inner.labels):
        raise GreenlmError(
            f"early-exit model '{folder}' classifies {inner.labels}; its exits cannot be given other labels"
            f" ({list(labels)}): add exits to a model fine-tuned on them"
        )
    model = EarlyExitClassifier(inner.model, exit_layers, policy=policy, threshold=threshold, patience=patience,
                                temperatures=temperatures, pooling=pooling, tokenizer=inner.tokenizer,
                                init_from_final=False)
    if list(model.exit_layers) != exit_layers:
        raise GreenlmError(f"early-exit model '{folder}' lists exit layers {exit_layers} its backbone cannot have")
    state = load_file(str(folder / WEIGHTS_FILE))
    heads = {k.removeprefix("exits."): v for k, v in state.items() if k.startswith("exits.")}
    missing, unexpected = model.exits.load_state_dict(heads, strict=False)
    if missing or unexpected or len(heads) != len(state):
        raise GreenlmError(f"early-exit model '{folder}' has exit weights that do not match its config"
                           f" (missing {len(missing)}, unexpected {len(unexpected)}); was it saved completely?")
    model.set_backbone_info(**{k: v for k, v in settings.items() if k not in model.settings()})
    model.eval()
    notes = list(inner.notes) + [
        f"early exit after layers {exit_layers} ({policy}, "
        + (f"patience {patience})" if policy == "patience" else f"threshold {threshold})")
    ]
    return LoadedModel(model, load_tokenizer(str(folder)), source, list(inner.labels), notes)
