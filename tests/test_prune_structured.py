"""Structured pruning: physically pruned models equal masked ones, importance equals a hand computation,
counts drop by exactly what was removed, saved models reload with their per-layer shapes."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from greenlm.common import GreenlmError
from greenlm.compress.importance import gate_importance, normalize_per_layer
from greenlm.compress.prune import PrunePlan, apply_plan, select_lowest
from greenlm.data import collate, encode_split
from greenlm.models import TinySpec, build_tiny_classifier, load_classifier, save_classifier
from greenlm.models import pruned


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP barrier waits on a busy machine (10-1000x slower with 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Pruned vs masked logits: the pruned model sums fewer terms (the masked ones are exact zeros), so
# only float summation order differs. Tolerance on fp32 logits:
ATOL = 1e-5

HIDDEN, HEADS, FFN, LAYERS, VOCAB = 32, 4, 37, 3, 99
D = HIDDEN // HEADS


def tiny_model(family: str, seed: int = 0):
    import transformers as tf

    # A wide init (BERT uses 0.02) so that removing a head visibly changes the logits.
    common = dict(vocab_size=VOCAB, num_labels=3, initializer_range=0.3)
    if family == "distilbert":
        config = tf.DistilBertConfig(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN,
                                     max_position_embeddings=64, **common)
        cls = tf.DistilBertForSequenceClassification
    else:
        sizes = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                     intermediate_size=FFN, max_position_embeddings=66, **common)
        config, cls = {
            "bert": (lambda: tf.BertConfig(**sizes), tf.BertForSequenceClassification),
            "roberta": (lambda: tf.RobertaConfig(pad_token_id=1, **sizes), tf.RobertaForSequenceClassification),
            "xlm-roberta": (lambda: tf.XLMRobertaConfig(pad_token_id=1, **sizes),
                            tf.XLMRobertaForSequenceClassification),
            "electra": (lambda: tf.ElectraConfig(embedding_size=16, **sizes), tf.ElectraForSequenceClassification),
        }[family]
        config = config()
    torch.manual_seed(seed)
    model = cls(config).eval()
    model.config._attn_implementation = "eager"  # FlopCounterMode counts eager attention's matmuls
    return model


def inputs(batch: int = 3, length: int = 9, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, 6:] = 0  # one padded row
    return {"input_ids": ids, "attention_mask": mask}


FAMILIES = ["bert", "roberta", "xlm-roberta", "electra", "distilbert"]


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_equals_masked(family):
    model = tiny_model(family)
    x = inputs()
    heads_removed = {0: [1, 3], 1: [0, 1, 2, 3], 2: [2]}  # layer 1 loses every head
    neurons_removed = {0: list(range(0, FFN, 3)), 2: list(range(FFN))}  # layer 2 loses its whole FFN
    head_gates = [torch.ones(HEADS) for _ in range(LAYERS)]
    neuron_gates = [torch.ones(FFN) for _ in range(LAYERS)]
    for layer, heads in heads_removed.items():
        head_gates[layer][heads] = 0
    for layer, neurons in neurons_removed.items():
        neuron_gates[layer][neurons] = 0
    with torch.no_grad(), pruned.gated(model, heads=head_gates, neurons=neuron_gates):
        masked = model(**x).logits
    with torch.no_grad():
        full = model(**x).logits
    assert (masked - full).abs().max() > 100 * ATOL  # the masks do change the function

    pruned.prune_heads(model, heads_removed)
    pruned.prune_neurons(model, neurons_removed)
    assert pruned.heads_per_layer(model) == [2, 0, 3]
    assert pruned.intermediate_per_layer(model) == [FFN - len(neurons_removed[0]), FFN, 0]
    with torch.no_grad():
        out = model(**x).logits
    torch.testing.assert_close(out, masked, atol=ATOL, rtol=0)
    # Which original heads are left is recorded for the config.
    assert model.config.greenlm["pruned_from"]["heads"] == [[0, 2], [], [0, 1, 3]]


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_dropped_layer_equals_zero_layer_gate(family):
    model = tiny_model(family)
    x = inputs()
    with torch.no_grad(), pruned.gated(model, layers=torch.tensor([1.0, 0.0, 1.0])):
        masked = model(**x).logits
    pruned.drop_layers(model, [1])
    with torch.no_grad():
        out = model(**x).logits
    torch.testing.assert_close(out, masked, atol=ATOL, rtol=0)
    layers_field = "n_layers" if family == "distilbert" else "num_hidden_layers"
    assert getattr(model.config, layers_field) == 2
    assert model.config.greenlm["pruned_from"]["layers"] == [0, 2]
    with pytest.raises(GreenlmError, match="whole encoder"):
        pruned.drop_layers(model, [0, 1])


def test_unknown_architecture_refused():
    from transformers import BertConfig, GPT2Config

    with pytest.raises(GreenlmError, match="gpt2.*supported: BERT"):
        pruned.layout_of(GPT2Config())
    with pytest.raises(GreenlmError, match="decoder"):
        pruned.layout_of(BertConfig(is_decoder=True))


# ---- importance: the gate gradient against a hand computation ----------------------------------------


def per_example_loss(model, batch, params=None):
    labels = batch["labels"]
    inputs_only = {k: v for k, v in batch.items() if k != "labels"}
    logits = functional_call(model, params, kwargs=inputs_only).logits if params else model(**inputs_only).logits
    return torch.nn.functional.cross_entropy(logits, labels)


def test_importance_matches_hand_computation(toy_task):
    task_train = toy_task.split("train").subset(24, seed=3)
    model, tok = build_tiny_classifier(TinySpec(layers=2, hidden=32, heads=4, ffn=37, vocab=99), list(toy_task.labels),
                                       toy_task.split("train").text_a)
    model.eval()
    encoded = encode_split(task_train, tok, 32)
    got = gate_importance(model, encoded, pad_token_id=tok.pad_token_id, batch_size=5)
    same = gate_importance(model, encoded, pad_token_id=tok.pad_token_id, batch_size=24)
    for a, b in zip(got.raw_heads + got.raw_neurons + [got.raw_layers], same.raw_heads + same.raw_neurons + [same.raw_layers]):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-5)  # per-example gradients: batching changes nothing

    # By hand, one example at a time, without gates:
    #  - head h: scaling the value rows of head h by xi scales its output by xi (softmax(QK) V_h xi);
    #  - neuron n: dL/dxi_n = sum_j W_out[j, n] * dL/dW_out[j, n] (the neuron's column of the FFN output);
    #  - layer l: dL/dxi = <dL/d out_l, out_l - in_l>, read off the layer's input and output.
    params = dict(model.named_parameters())
    hand_heads = torch.zeros(2, 4)
    hand_neurons = torch.zeros(2, 37)
    hand_layers = torch.zeros(2)
    for i in range(len(encoded)):
        batch = collate(encoded, [i], tok.pad_token_id)
        for layer in range(2):
            prefix = f"bert.encoder.layer.{layer}"
            for h in range(4):
                xi = torch.ones((), requires_grad=True)
                rows = torch.zeros(32)
                rows[h * 8 : (h + 1) * 8] = 1
                scale = 1 - rows + rows * xi
                swapped = dict(params)
                swapped[f"{prefix}.attention.self.value.weight"] = params[f"{prefix}.attention.self.value.weight"] * scale[:, None]
                swapped[f"{prefix}.attention.self.value.bias"] = params[f"{prefix}.attention.self.value.bias"] * scale
                (grad,) = torch.autograd.grad(per_example_loss(model, batch, swapped), xi)
                hand_heads[layer, h] += grad.abs()
            w_out = params[f"{prefix}.output.dense.weight"]
            (grad_w,) = torch.autograd.grad(per_example_loss(model, batch), w_out)
            hand_neurons[layer] += (w_out * grad_w).sum(0).abs().detach()
        seen = {}

        def keep(index):
            def hook(module, args, output):
                output.retain_grad()
                seen[index] = (args[0], output)
            return hook

        handles = [layer.register_forward_hook(keep(j)) for j, layer in enumerate(model.bert.encoder.layer)]
        per_example_loss(model, batch).backward()
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        for j, (x_in, out) in seen.items():
            hand_layers[j] += ((out - x_in) * out.grad).sum().abs().detach()
    n = len(encoded)
    for layer in range(2):
        torch.testing.assert_close(got.raw_heads[layer], hand_heads[layer] / n, rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(got.raw_neurons[layer], hand_neurons[layer] / n, rtol=1e-4, atol=1e-9)
        # Michel et al.'s per-layer l2 normalisation
        torch.testing.assert_close(got.heads[layer], got.raw_heads[layer] / got.raw_heads[layer].norm())
    torch.testing.assert_close(got.raw_layers, hand_layers / n, rtol=1e-4, atol=1e-9)
    assert all(h.min() > 0 for h in got.raw_heads)


def test_normalize_per_layer_handles_empty_and_zero():
    out = normalize_per_layer([torch.tensor([3.0, 4.0]), torch.zeros(0), torch.zeros(2)])
    torch.testing.assert_close(out[0], torch.tensor([0.6, 0.8]))
    assert out[1].numel() == 0 and out[2].tolist() == [0.0, 0.0]


# ---- selection ---------------------------------------------------------------------------------------


def test_select_lowest_global_respects_minimum():
    scores = [torch.tensor([0.1, 0.2, 0.9]), torch.tensor([0.5, 0.6, 0.7]), torch.tensor([0.05, 0.8, 0.3])]
    got = select_lowest(scores, 4, minimum=1, ranking="global")
    # lowest: (2,0)=.05, (0,0)=.1, (0,1)=.2 -> layer 0 now at its minimum, (2,2)=.3 next
    assert got == {0: [0, 1], 2: [0, 2]}
    got = select_lowest(scores, 5, minimum=0, ranking="global", skip={0})
    # layer 0 untouched; .05, .3, .5, .6, .7 -> layer 1 may lose all three with minimum 0
    assert got == {1: [0, 1, 2], 2: [0, 2]}
    with pytest.raises(GreenlmError, match="at least 1 per layer"):
        select_lowest(scores, 7, minimum=1, ranking="global")


def test_select_lowest_per_layer_same_share():
    scores = [torch.arange(4.0), torch.arange(4.0).flip(0), torch.tensor([2.0, 0.0, 3.0, 1.0])]
    got = select_lowest(scores, 6, minimum=1, ranking="per_layer")
    assert got == {0: [0, 1], 1: [2, 3], 2: [1, 3]}


# ---- counts drop by exactly what was removed ---------------------------------------------------------


def flop_count(model, x) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(**x)
    return counter.get_total_flops()


@pytest.mark.parametrize("family", ["bert", "distilbert", "electra"])
def test_params_and_flops_drop_exactly(family):
    from greenlm.measure import count_flops, count_params

    model = tiny_model(family)
    seq = 9
    x = {"input_ids": torch.randint(5, VOCAB, (1, seq))}
    params_before = sum(p.numel() for p in model.parameters())
    flops_before = flop_count(model, x)
    measured_before = count_flops(model, seq).infer_flops_per_example
    assert measured_before == flops_before

    heads_gone, neurons_gone = 9, 20  # layer 1 loses every head
    apply_plan(model, PrunePlan(heads={0: [0, 2], 1: [0, 1, 2, 3], 2: [1, 2, 3]},
                                neurons={0: list(range(12)), 1: list(range(8))}))
    # Per head: q, k, v rows (3 * (HIDDEN * D + D)) and D output columns; per neuron: one row + bias, one column.
    per_head_params = 3 * (HIDDEN * D + D) + HIDDEN * D
    per_neuron_params = HIDDEN + 1 + HIDDEN
    expected_params = params_before - heads_gone * per_head_params - neurons_gone * per_neuron_params
    assert sum(p.numel() for p in model.parameters()) == expected_params
    assert count_params(model)["total"] == expected_params
    # FLOPs (2 per multiply-add): a head's q, k, v, output projections over seq tokens, plus its scores
    # QK^T and weighted sum AV (seq x seq x D each); a neuron's two FFN products.
    per_head_flops = 2 * seq * (4 * HIDDEN * D) + 2 * 2 * seq * seq * D
    per_neuron_flops = 2 * seq * 2 * HIDDEN
    expected_flops = flops_before - heads_gone * per_head_flops - neurons_gone * per_neuron_flops
    assert flop_count(model, x) == expected_flops
    assert count_flops(model, seq).infer_flops_per_example == expected_flops
    # ... and read back from the config alone (what a saved folder's config.json says)
    assert count_flops(model.config, seq).infer_flops_per_example == expected_flops

    layer_params = sum(p.numel() for p in pruned.encoder_layers(model)[1].parameters())
    before_drop = sum(p.numel() for p in model.parameters())
    pruned.drop_layers(model, [1])
    assert sum(p.numel() for p in model.parameters()) == before_drop - layer_params


# ---- saved folders reload with their shapes ----------------------------------------------------------


def test_reload_keeps_per_layer_shapes(toy_task, tmp_path):
    model, tok = build_tiny_classifier(TinySpec(layers=3, hidden=32, heads=4, ffn=37, vocab=99), list(toy_task.labels),
                                       toy_task.split("train").text_a)
    model.eval()
    apply_plan(model, PrunePlan(heads={0: [3], 1: [0, 1, 2, 3]}, neurons={2: list(range(30))}))
    pruned.drop_layers(model, [0])  # layers left: original 1 (no heads) and 2
    encoded = encode_split(toy_task.split("dev"), tok, 32)
    batch = collate(encoded, list(range(8)), tok.pad_token_id)
    batch.pop("labels")
    with torch.no_grad():
        expected = model(**batch).logits
    save_classifier(model, tok, tmp_path / "m")

    import json

    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["greenlm_heads_per_layer"] == [0, 4]
    assert saved["greenlm_intermediate_per_layer"] == [37, 7]
    assert saved["num_hidden_layers"] == 2 and saved["num_attention_heads"] == 4
    assert saved["greenlm"]["format"] == "pruned"

    loaded = load_classifier(str(tmp_path / "m"))
    assert pruned.heads_per_layer(loaded.model) == [0, 4]
    assert pruned.intermediate_per_layer(loaded.model) == [37, 7]
    assert loaded.labels == list(toy_task.labels) and not loaded.notes
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**batch).logits, expected, atol=0, rtol=0)

    relabelled = load_classifier(str(tmp_path / "m"), labels=["a", "b", "c"])
    assert relabelled.labels == ["a", "b", "c"] and "new classification head" in relabelled.notes[0]
    assert pruned.heads_per_layer(relabelled.model) == [0, 4]


def test_reload_refuses_tampered_config(toy_task, tmp_path):
    import json

    model, tok = build_tiny_classifier(TinySpec(layers=2), list(toy_task.labels), toy_task.split("train").text_a)
    apply_plan(model, PrunePlan(heads={0: [0]}))
    save_classifier(model, tok, tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    config["greenlm_heads_per_layer"] = [3]  # one entry for two layers
    path.write_text(json.dumps(config))
    with pytest.raises(GreenlmError, match="greenlm_heads_per_layer must list one whole number per layer"):
        load_classifier(str(tmp_path / "m"))
