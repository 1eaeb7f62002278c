"""FLOPs and parameter counts: matmul = FlopCounterMode on real forward passes, electra convention
against hand-derived sums, pruned / layer-dropped configs, every input form, and bad input."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from greenlm.common import GreenlmError
from greenlm.measure import count_flops, count_params

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
TINY_DISTIL = dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37)
HEAD_CLASSES = ["Model", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMaskedLM", "ForPreTraining"]


def _config(family: str, **extra):
    # eager attention: FlopCounterMode has no FLOP formula for the CPU SDPA kernel, so it would count 0 there
    if family == "DistilBert":
        return transformers.DistilBertConfig(**{**TINY_DISTIL, **extra}, attn_implementation="eager")
    if family == "Electra":
        return transformers.ElectraConfig(**{**TINY, "embedding_size": 16, **extra}, attn_implementation="eager")
    return getattr(transformers, f"{family}Config")(**{**TINY, **extra}, attn_implementation="eager")


def _cases():
    for family in ("Bert", "Roberta", "DistilBert", "Electra"):
        for head in HEAD_CLASSES:
            if hasattr(transformers, family + head):
                yield family, head


def _counted(model, input_ids, backward=False) -> int:
    with FlopCounterMode(display=False) as counter:
        out = model(input_ids=input_ids)
        if backward:
            logits = out.logits if hasattr(out, "logits") else out.last_hidden_state
            logits.float().pow(2).mean().backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("family,head", list(_cases()))
def test_matmul_equals_flop_counter_mode_and_params_match_the_model(family, head):
    torch.manual_seed(0)
    cls = getattr(transformers, family + head)
    config = _config(family)
    model = cls(config).eval()
    seq_len = 9
    ids = torch.randint(3, 99, (1, seq_len))
    with torch.no_grad():
        measured = _counted(model, ids)
    from_model = count_flops(model, seq_len)
    assert from_model.infer_flops == measured
    # the same figure from the config alone, the head read from `architectures`
    as_config = type(config)(**{**config.to_dict(), "architectures": [cls.__name__]})
    assert count_flops(as_config, seq_len).infer_flops == measured
    # parameters: formula from the config == the model's real tensors, module by module
    assert count_params(as_config) | {"counted_from": ""} == count_params(model) | {"counted_from": ""}
    assert count_params(model)["total"] == sum(p.numel() for p in model.parameters())


def test_matmul_scales_with_batch_and_counts_attention_quadratically():
    model = transformers.BertModel(_config("Bert")).eval()
    with torch.no_grad():
        for seq_len in (4, 16):
            ids = torch.randint(3, 99, (3, seq_len))
            assert _counted(model, ids) == 3 * count_flops(model, seq_len).infer_flops
    by = count_flops(model, 16).infer_flops_by_module
    # attention = q,k,v,o projections (linear in s) + QK^T and AV (quadratic in s)
    assert by["attention"] == 2 * (4 * 2 * 16 * 32 * 32 + 2 * 2 * 16 * 16 * 32)
    assert by["ffn"] == 2 * (2 * 2 * 16 * 32 * 37)
    assert by["embeddings"] == 0  # lookups are gathers


def test_matmul_training_is_three_forward_passes():
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(_config("Bert")).train()
    ids = torch.randint(3, 99, (2, 8))
    measured = _counted(model, ids, backward=True)
    report = count_flops(model, 8, train_steps=5, batch_size=2)
    assert report.train_flops_per_example * 2 == measured
    assert report.train_flops == measured * 5


def _prune(model, heads_per_layer, ffn_per_layer):
    """Shrink a BERT's layers for real (fewer heads, narrower FFN), as a structured pruning would."""
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    for layer, heads, ffn in zip(model.bert.encoder.layer, heads_per_layer, ffn_per_layer):
        att = layer.attention.self
        keep = heads * head_dim
        for name in ("query", "key", "value"):
            old = getattr(att, name)
            new = torch.nn.Linear(old.in_features, keep)
            new.weight.data, new.bias.data = old.weight.data[:keep].clone(), old.bias.data[:keep].clone()
            setattr(att, name, new)
        att.num_attention_heads, att.all_head_size = heads, keep
        out = layer.attention.output.dense
        new = torch.nn.Linear(keep, out.out_features)
        new.weight.data, new.bias.data = out.weight.data[:, :keep].clone(), out.bias.data.clone()
        layer.attention.output.dense = new
        up, down = layer.intermediate.dense, layer.output.dense
        new_up, new_down = torch.nn.Linear(up.in_features, ffn), torch.nn.Linear(ffn, down.out_features)
        new_up.weight.data, new_up.bias.data = up.weight.data[:ffn].clone(), up.bias.data[:ffn].clone()
        new_down.weight.data, new_down.bias.data = down.weight.data[:, :ffn].clone(), down.bias.data.clone()
        layer.intermediate.dense, layer.output.dense = new_up, new_down
    return model


def test_pruned_model_and_pruned_config_agree_with_flop_counter():
    torch.manual_seed(0)
    heads, ffn = [1, 3], [20, 37]
    model = _prune(transformers.BertForSequenceClassification(_config("Bert")).eval(), heads, ffn)
    ids = torch.randint(3, 99, (1, 10))
    with torch.no_grad():
        measured = _counted(model, ids)
    assert count_flops(model, 10).infer_flops == measured
    config = _config("Bert", architectures=["BertForSequenceClassification"],
                     greenlm_heads_per_layer=heads, greenlm_intermediate_per_layer=ffn)
    assert count_flops(config, 10).infer_flops == measured
    assert count_params(config)["total"] == sum(p.numel() for p in model.parameters())


def test_dropped_layers_and_electra_embedding_size(tmp_path):
    two = count_flops(_config("Bert", architectures=["BertModel"]), 12).infer_flops_by_module
    one = count_flops(_config("Bert", architectures=["BertModel"], num_hidden_layers=1), 12).infer_flops_by_module
    assert one["attention"] * 2 == two["attention"] and one["ffn"] * 2 == two["ffn"]
    electra = count_flops(_config("Electra", architectures=["ElectraModel"]), 12)
    assert electra.infer_flops_by_module["embeddings"] == 2 * 12 * 16 * 32  # projection e=16 -> h=32
    assert electra.params["embedding"] == (99 + 512 + 2) * 16


def test_folder_and_config_json_inputs(tmp_path):
    config = _config("Roberta", architectures=["RobertaForSequenceClassification"])
    config.save_pretrained(tmp_path)
    by_folder = count_flops(tmp_path, 16)
    by_file = count_flops(tmp_path / "config.json", 16)
    by_object = count_flops(config, 16)
    assert by_folder.infer_flops == by_file.infer_flops == by_object.infer_flops
    data = by_folder.to_dict()
    json.dumps(data)
    assert data["infer_flops"] == by_folder.infer_flops_per_example and data["params"]["total"] > 0


# ---- electra convention: hand-derived sums on a small config ---------------------------------------


def _electra_hand(h, layers, heads, f, v, e, s):
    """ELECTRA's accounting written out term by term for one forward pass (classifier head)."""
    kqv = h
    block = (3 * 2 * h * kqv + 3 * kqv + 2 * kqv * s + 5 * s * heads + 4 * s * heads + s * heads + 2 * kqv * s
             + 2 * kqv * h + h + 4 * h + h + 5 * h
             + 2 * h * f + f + 8 * f + 2 * h * f + h + 4 * h + h + 5 * h) * s
    emb = (2 * e * v + 2 * e * (s + 2) + 2 * e + 5 * e + 4 * e + (2 * h * e + h if e != h else 0)) * s
    cls = (2 * h * h + h + 8 * h + 2 * h) * s
    mlm = 0.15625 * (2 * e * v + 2 * h * e + e + 8 * e + 5 * e + 5 * v + 2 * v) * s
    return layers * block, emb, cls, mlm


def test_electra_convention_matches_hand_derivation():
    h, layers, heads, f, v, e, s = 32, 2, 4, 37, 99, 16, 8
    blocks, emb, cls, mlm = _electra_hand(h, layers, heads, f, v, e, s)
    config = _config("Electra", architectures=["ElectraForPreTraining"])
    report = count_flops(config, s, convention="electra", train_steps=10, batch_size=4, pretraining="mlm")
    assert report.infer_flops == pytest.approx(blocks + emb + cls, rel=1e-12)
    assert report.infer_flops_by_module["head"] == pytest.approx(cls)
    assert report.train_flops_per_example == pytest.approx(2 * (blocks + emb + mlm))
    assert report.train_flops == pytest.approx(2 * (blocks + emb + mlm) * 4 * 10)
    finetune = count_flops(config, s, convention="electra", train_steps=10, batch_size=4)
    assert finetune.train_flops == pytest.approx(2 * (blocks + emb + cls) * 40)


def test_electra_pretraining_adds_the_generator():
    disc = _config("Electra", architectures=["ElectraForPreTraining"])
    gen = transformers.ElectraConfig(vocab_size=99, hidden_size=8, num_hidden_layers=2, num_attention_heads=1,
                                     intermediate_size=32, embedding_size=16)
    both = count_flops(disc, 8, convention="electra", train_steps=3, batch_size=2, pretraining="electra", generator=gen)
    d = count_flops(disc, 8, convention="electra", train_steps=3, batch_size=2)
    g = count_flops(gen, 8, convention="electra", train_steps=3, batch_size=2, pretraining="mlm")
    assert both.train_flops == pytest.approx(d.train_flops + g.train_flops)


# ---- bad input: one clear line each ----------------------------------------------------------------


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda p: count_flops(p / "missing", 8), "does not exist"),
        (lambda p: count_flops(p, 8), "has no config.json"),
        (lambda p: count_flops(_write(p, "{bad json"), 8), r"config.json is damaged: not valid JSON"),
        (lambda p: count_flops(_write(p, '{"hidden_size": 8}'), 8), "no model_type"),
        (lambda p: count_flops(_write(p, '{"model_type": "gpt2"}'), 8), "not supported"),
        (lambda p: count_flops(_config("Bert"), 0), "sequence length must be 1 or more"),
        (lambda p: count_flops(_config("Bert"), 4096), "longer than"),
        (lambda p: count_flops(_config("Bert"), 8, convention="tf"), "unknown FLOP convention"),
        (lambda p: count_flops(_config("Bert"), 8, train_steps=10), "both train steps and batch size"),
        (lambda p: count_flops(_config("Bert"), 8, pretraining="electra"), "needs a generator"),
        (lambda p: count_flops(_config("Bert", greenlm_heads_per_layer=[4]), 8), "has 1 entries but the model has 2"),
        (lambda p: count_flops(_config("Bert"), 8, head="lm"), "unknown head"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, call, message):
    with pytest.raises(GreenlmError, match=message) as err:
        call(tmp_path)
    assert "\n" not in str(err.value)


def _write(folder, text):
    path = folder / "config.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize("attention", ["rfa:features=8", "performer:features=12", "t2r:features=6", "abc:k=5"])
@pytest.mark.parametrize("head", ["ForSequenceClassification", "ForMaskedLM"])
def test_linear_attention_matmul_equals_flop_counter_mode_and_grows_linearly(attention, head):
    """A model with linear attention (greenlm.models.linear_attention) is counted from its own kernels' products."""
    from greenlm.models.linear_attention import swap_attention

    torch.manual_seed(0)
    model = getattr(transformers, "Bert" + head)(_config("Bert")).eval()
    swap_attention(model, attention)
    for seq_len in (9, 40):
        ids = torch.randint(3, 99, (1, seq_len))
        with torch.no_grad():
            assert count_flops(model, seq_len).infer_flops == _counted(model, ids), seq_len
    model.config.architectures = [type(model).__name__]
    assert count_flops(model.config, 40).infer_flops == count_flops(model, 40).infer_flops  # config alone: the same
    # the token mixing is linear in s: twice the tokens, twice the attention FLOPs (softmax: more than twice)
    linear = [count_flops(model, s).infer_flops_by_module["attention"] for s in (256, 512)]
    softmax = transformers.BertModel(_config("Bert", max_position_embeddings=512)).eval()
    quadratic = [count_flops(softmax, s).infer_flops_by_module["attention"] for s in (256, 512)]
    assert linear[1] == 2 * linear[0] and quadratic[1] > 2.2 * quadratic[0]
    electra = [count_flops(model, s, convention="electra").infer_flops_by_module["attention"] for s in (256, 512)]
    assert electra[1] == 2 * electra[0]
