"""The models pre-training trains: a masked LM (BERT), or ELECTRA's generator + discriminator.

MLM (Devlin et al. 2019): ``BertForMaskedLM`` from a tiny spec, or any ``AutoModelForMaskedLM`` from a folder. A
folder without an MLM head (``minilm``: a sentence encoder saved as ``BertModel``) gets a new one: transform
(dense h -> h, GELU, LayerNorm) initialised at random, decoder tied to the word embeddings.

ELECTRA (Clark et al. 2020): a discriminator ``ElectraForPreTraining`` (encoder + dense h -> h, GELU, one logit
per token: "was this token replaced?") and a generator ``ElectraForMaskedLM`` with the same depth and embeddings
but ``generator_fraction`` of the width: heads scaled (head size kept), hidden = heads x head size, FFN scaled.
Generator and discriminator share one embeddings module (token, position, segment; section 3.2 "weight sharing"),
of the discriminator's embedding width; the narrower generator projects it to its hidden size
(``embeddings_project``) and its MLM decoder is tied to the same word embeddings. The loss is
  L = L_MLM(generator) + lambda * L_Disc,  lambda = 50 (section 3)
with the generator's samples (softmax, temperature 1, no gradient through sampling) replacing the masked tokens.
A BERT folder (e.g. ``minilm``) becomes the discriminator's encoder: BERT and ELECTRA layers are the same modules.

Shapes: B blocks x T tokens, h hidden, e embedding width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from greenlm.common import GreenlmError
from greenlm.models import TinySpec, load_tokenizer, resolve_model_source
from greenlm.models.loading import _quiet_transformers as quiet_transformers
from greenlm.models.loading import check_local_weights, model_config
from greenlm.pretrain.masking import IGNORE


@dataclass
class PretrainModels:
    model: torch.nn.Module  # what the training loop runs: model(**batch).loss
    encoder: torch.nn.Module  # what is saved and fine-tuned: the MLM model, or the discriminator
    generator: torch.nn.Module | None  # ELECTRA's generator (None for MLM)
    notes: list[str] = field(default_factory=list)


@dataclass
class ElectraOutput:
    loss: torch.Tensor  # L_MLM + lambda * L_Disc
    generator_loss: torch.Tensor
    discriminator_loss: torch.Tensor
    discriminator_logits: torch.Tensor  # [B, T]
    replaced: torch.Tensor  # [B, T] bool: the token fed to the discriminator differs from the original


class ElectraPretrainer(torch.nn.Module):
    """Generator and discriminator trained together on replaced-token detection."""

    def __init__(self, generator, discriminator, disc_weight: float):
        super().__init__()
        self.generator, self.discriminator, self.disc_weight = generator, discriminator, disc_weight
        self.config = discriminator.config

    def forward(self, input_ids, attention_mask, labels, token_type_ids=None, sample_generator=None) -> ElectraOutput:
        # input_ids [B, T] with masks in place; labels [B, T]: the original token where masked, else IGNORE
        gen = self.generator(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             labels=labels)
        masked = labels != IGNORE  # [B, T]
        with torch.no_grad():
            probs = torch.softmax(gen.logits[masked].float(), dim=-1)  # [M, V]
            sampled = torch.multinomial(probs, 1, generator=sample_generator).squeeze(-1) if probs.numel() else \
                labels[masked]
        original = torch.where(masked, labels, input_ids)  # [B, T]
        corrupted = original.clone()
        corrupted[masked] = sampled
        replaced = corrupted != original  # a sample equal to the original counts as original (paper, 3.1)
        disc = self.discriminator(input_ids=corrupted, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                  labels=replaced.long())
        loss = gen.loss + self.disc_weight * disc.loss
        return ElectraOutput(loss, gen.loss.detach(), disc.loss.detach(), disc.logits.detach(), replaced)


def source_tokenizer(model_spec: str):
    """(tokenizer or None, folder or None): the tokenizer of a pre-trained folder; None for a tiny spec."""
    source = resolve_model_source(model_spec)
    if source.kind == "tiny":
        return None, None
    if source.kind != "local":
        raise GreenlmError(f"pre-training starts from 'tiny:...', 'minilm' or a local folder, not the hub id"
                           f" '{model_spec}'; download it into a folder first")
    try:
        return load_tokenizer(source.location), source.location
    except Exception as err:  # transformers raises many types for a folder without tokenizer files
        raise GreenlmError(f"model folder '{model_spec}' has no usable tokenizer: {str(err).splitlines()[0]}") from None


def build_models(model_spec: str, tokenizer, *, objective: str, generator_fraction: float, disc_weight: float,
                 max_length: int, seed: int, new_vocab: bool, old_tokenizer=None,
                 attention: str = "softmax") -> PretrainModels:
    """The models for ``objective``, sized for ``tokenizer`` (a new vocabulary resizes a pre-trained model's
    embeddings, each new token starting as the mean of its pieces under the old tokenizer), with ``attention``
    (greenlm.models.attention_spec; for ELECTRA the generator gets the same kind). A pre-trained model whose
    position table is shorter than ``max_length`` gets it extended by copying (Longformer's initialisation)."""
    from greenlm.models.attention_spec import AttentionSpec
    from greenlm.models.linear_attention import (SUPPORTED, SUPPORTED_TYPES, extend_positions, position_limit,
                                                 swap_attention)

    source = resolve_model_source(model_spec)
    notes: list[str] = []
    wanted = AttentionSpec.parse(attention)
    with torch.random.fork_rng(), quiet_transformers():
        torch.manual_seed(seed)
        if source.kind == "tiny":
            spec = TinySpec.parse(source.location)
            if max_length > spec.positions:
                raise GreenlmError(f"--max-length {max_length} is longer than the tiny model's positions"
                                   f" ({spec.positions}); add positions={max_length} to the spec")
            own = AttentionSpec.parse(spec.attention)
            if own.linear and wanted.linear and own != wanted:
                raise GreenlmError(f"the tiny spec asks for {own.describe()} attention and --attention for"
                                   f" {wanted.describe()}; give one")
            wanted = wanted if wanted.linear else own
            encoder = _tiny_encoder(spec, tokenizer, objective)
            notes.append(f"built from scratch: {source.location}")
        else:
            encoder = _pretrained_encoder(source.location, objective, notes)
            own = _saved_attention(encoder.config)
            if own.linear and wanted.linear and own != wanted:
                raise GreenlmError(f"'{source.location}' already runs {own.describe()} attention; --attention"
                                   f" {wanted.describe()} would replace trained weights: leave --attention out")
            wanted = own if own.linear else wanted
            limit = position_limit(encoder.config)
            if max_length > limit:
                if encoder.config.model_type not in SUPPORTED_TYPES:
                    raise GreenlmError(f"--max-length {max_length} is above what the model's positions allow ({limit});"
                                       f" greenlm extends the position tables of {SUPPORTED} only")
                extend_positions(encoder, max_length)
                notes.append(f"positions extended from {limit} to {max_length} tokens by copying the learned table"
                             " (Longformer's initialisation); pre-training adapts the copies")
            if new_vocab:
                _transfer_vocabulary(encoder, old_tokenizer, tokenizer)
                notes.append(f"new vocabulary of {len(tokenizer)} tokens: embeddings of each new token start as the"
                             " mean of its pieces under the old vocabulary")
        encoder.config.pad_token_id = tokenizer.pad_token_id
        if wanted.linear and not _saved_attention(encoder.config).linear:  # a continued folder runs its own already
            swap_attention(encoder, wanted)  # (softmax: the model is left as it is, whatever its type)
        if wanted.linear:
            notes.append(f"self-attention: {wanted.describe()} (linear in length; greenlm loads the folder, plain"
                         " transformers would run it as softmax attention)")
        if objective == "mlm":
            return PretrainModels(encoder, encoder, None, notes)
        generator = _generator_for(encoder, generator_fraction)
        if wanted.linear:
            swap_attention(generator, wanted)
        notes.append(f"ELECTRA generator: {generator.config.num_attention_heads} heads, hidden"
                     f" {generator.config.hidden_size}, FFN {generator.config.intermediate_size}"
                     f" ({generator_fraction:g} of the discriminator); embeddings shared")
        return PretrainModels(ElectraPretrainer(generator, encoder, disc_weight), encoder, generator, notes)


def _tiny_encoder(spec: TinySpec, tokenizer, objective: str):
    from transformers import BertConfig, BertForMaskedLM, ElectraConfig, ElectraForPreTraining

    shape = dict(vocab_size=len(tokenizer), hidden_size=spec.hidden, num_hidden_layers=spec.layers,
                 num_attention_heads=spec.heads, intermediate_size=spec.ffn, max_position_embeddings=spec.positions,
                 pad_token_id=tokenizer.pad_token_id)
    if objective == "mlm":
        return BertForMaskedLM(BertConfig(**shape))
    return ElectraForPreTraining(ElectraConfig(embedding_size=spec.hidden, **shape))


def _pretrained_encoder(folder: str, objective: str, notes: list[str]):
    from pathlib import Path

    from transformers import AutoModel, AutoModelForMaskedLM, ElectraConfig, ElectraForPreTraining

    if not (Path(folder) / "model.safetensors").is_file():
        raise GreenlmError(f"model folder '{folder}' has no model.safetensors (greenlm loads safetensors weights only)")
    check_local_weights(Path(folder), allow_pickle=False)  # a safetensors index may still name pickle shards
    config = model_config(folder)
    archs = getattr(config, "architectures", None) or []
    if _saved_attention(config).linear:
        return _linear_attention_encoder(folder, config, objective, notes)
    if objective == "mlm":
        if not any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in archs):
            notes.append("the model had no masked-LM head: a new one is initialised (decoder tied to the embeddings)")
        return AutoModelForMaskedLM.from_pretrained(folder, use_safetensors=True)
    if config.model_type == "electra":
        if not any(a == "ElectraForPreTraining" for a in archs):
            notes.append("the model had no replaced-token head: a new one is initialised")
        return ElectraForPreTraining.from_pretrained(folder, use_safetensors=True)
    if config.model_type != "bert":
        raise GreenlmError(f"ELECTRA pre-training continues BERT or ELECTRA models; '{folder}' is"
                           f" {config.model_type!r}: use --objective mlm")
    base = AutoModel.from_pretrained(folder, use_safetensors=True)  # BertModel: embeddings, encoder, pooler
    fields = {k: getattr(config, k) for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                              "intermediate_size", "hidden_act", "hidden_dropout_prob",
                                              "attention_probs_dropout_prob", "max_position_embeddings",
                                              "type_vocab_size", "layer_norm_eps", "pad_token_id")}
    disc = ElectraForPreTraining(ElectraConfig(embedding_size=config.hidden_size, **fields))
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("pooler.")}
    missing, unexpected = disc.electra.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise GreenlmError(f"cannot carry the BERT weights of '{folder}' into an ELECTRA discriminator"
                           f" (missing {missing[:3]}, unexpected {unexpected[:3]})")
    notes.append("BERT encoder carried into an ELECTRA discriminator (same layers; pooler dropped, new"
                 " replaced-token head)")
    return disc


def _saved_attention(config):
    from greenlm.models.attention_spec import AttentionSpec

    meta = getattr(config, "greenlm", None)
    if isinstance(meta, dict) and meta.get("format") == "linear_attention":
        return AttentionSpec.from_dict(meta.get("attention") or {})
    return AttentionSpec()


def _linear_attention_encoder(folder: str, config, objective: str, notes: list[str]):
    """A folder saved with linear attention (its own modules and weights: projections, 1/sigma, ABC's control):
    rebuilt from its config, attention swapped back in, then every encoder tensor loaded (a head the objective needs
    and the folder lacks starts new)."""
    from pathlib import Path

    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM, ElectraForPreTraining

    from greenlm.models.linear_attention import swap_attention

    spec = _saved_attention(config)
    if objective == "electra" and config.model_type != "electra":
        raise GreenlmError(f"'{folder}' is a {config.model_type} model with {spec.describe()} attention: continue it"
                           " with --objective mlm (ELECTRA continues ELECTRA folders with linear attention)")
    meta = dict(config.greenlm)
    meta.pop("format", None)
    config.greenlm = meta  # swap_attention writes it back
    model = ElectraForPreTraining(config) if objective == "electra" else AutoModelForMaskedLM.from_config(config)
    swap_attention(model, spec)
    state = load_file(str(Path(folder) / "model.safetensors"))
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    prefix = model.base_model_prefix + "."
    lacking = [k for k in own if k.startswith(prefix) and k not in usable and not k.endswith("position_ids")]
    if lacking:
        raise GreenlmError(f"model folder '{folder}': its weights do not fit its config.json with {spec.describe()}"
                           f" attention (missing {lacking[:3]}); was it saved completely?")
    model.load_state_dict(usable, strict=False)
    tied = getattr(model, "_tied_weights_keys", None) or ()
    tied = set(tied.keys() if isinstance(tied, dict) else tied)  # saved once, under the embeddings' name
    if any(not k.startswith(prefix) and k not in tied for k in own if k not in usable):
        notes.append(f"the model had no {'replaced-token' if objective == 'electra' else 'masked-LM'} head: a new"
                     " one is initialised")
    notes.append(f"continued with its own {spec.describe()} attention")
    return model


def generator_config(disc_config, fraction: float):
    """ELECTRA's generator shape: same depth and embeddings, ``fraction`` of the heads (head size kept) and FFN."""
    from transformers import ElectraConfig

    head_dim = disc_config.hidden_size // disc_config.num_attention_heads
    heads = max(1, round(disc_config.num_attention_heads * fraction))
    fields = disc_config.to_dict()
    for key in ("architectures", "model_type", "transformers_version", "id2label", "label2id"):
        fields.pop(key, None)
    fields.update(hidden_size=heads * head_dim, num_attention_heads=heads,
                  intermediate_size=max(1, round(disc_config.intermediate_size * fraction)),
                  embedding_size=disc_config.embedding_size, architectures=["ElectraForMaskedLM"])
    return ElectraConfig(**fields)


def _generator_for(discriminator, fraction: float):
    from transformers import ElectraForMaskedLM

    generator = ElectraForMaskedLM(generator_config(discriminator.config, fraction))
    shared = discriminator.electra.embeddings
    generator.electra.embeddings = shared  # one module: token, position and segment embeddings, LayerNorm
    generator.generator_lm_head.weight = shared.word_embeddings.weight  # decoder tied to the shared embeddings
    return generator


def _transfer_vocabulary(model, old_tokenizer, new_tokenizer) -> None:
    """Resize ``model``'s embeddings to ``new_tokenizer``; each new token starts as the mean of the old embeddings of
    its pieces under ``old_tokenizer`` (special tokens map to their old namesakes; a token with no pieces gets the
    mean embedding)."""
    old = model.get_input_embeddings().weight.detach().clone()  # [V_old, e]
    specials = {getattr(new_tokenizer, name): getattr(old_tokenizer, name)
                for name in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")
                if getattr(new_tokenizer, name, None) and getattr(old_tokenizer, name, None)}
    rows = []
    for token in new_tokenizer.convert_ids_to_tokens(list(range(len(new_tokenizer)))):
        if token in specials:
            ids = [old_tokenizer.convert_tokens_to_ids(specials[token])]
        else:
            ids = old_tokenizer(token.removeprefix("##"), add_special_tokens=False)["input_ids"]
        ids = [i for i in ids if i is not None and 0 <= i < old.shape[0]]
        rows.append(old[ids].mean(dim=0) if ids else old.mean(dim=0))
    model.resize_token_embeddings(len(new_tokenizer))
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(torch.stack(rows))
