"""The early-exit wrapper: full-model equality at threshold 1.0, layer-1 cost, batch shrinking, saving, refusals."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from greenlm.common import GreenlmError
from greenlm.data import collate, encode_split
from greenlm.measure import count_flops
from greenlm.models import TinySpec, build_tiny_classifier, load_classifier
from greenlm.runtime import predict_records
from greenlm.models.early_exit import (EarlyExitClassifier, exit_confidence, measure_exit_costs, save_early_exit,
                                       simulate_exits)
from greenlm.runtime.inference import predict_outputs

from conftest import toy_split

LAYERS = 4


def tiny(layers: int = LAYERS, seed: int = 0):
    texts = toy_split(200, 0).text_a
    model, tokenizer = build_tiny_classifier(TinySpec(layers=layers, hidden=32, heads=4, ffn=37, vocab=99),
                                             ["neg", "pos"], texts, seed=seed)
    return model.eval(), tokenizer


def spread_heads(model: EarlyExitClassifier, tokenizer, seed: int = 1) -> None:
    """Exit heads that read z-scored pooled states through random weights: confidences spread over (0.5, 1)
    on toy inputs, so inputs exit at many layers (a random tiny BERT gives every input nearly the same state)."""
    batch = collate(encoded_toy(tokenizer, n=64, seed=11), list(range(64)), tokenizer.pad_token_id)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        hidden = model._embed(batch["input_ids"], batch.get("token_type_ids"))
        mask = model._mask(hidden, batch["attention_mask"])
        for i, layer in enumerate(model._parts.layers, start=1):
            hidden = model._layer(layer, hidden, mask)
            if str(i) not in model.exits:
                continue
            head = model.exits[str(i)]
            first = head.pool(hidden, batch["attention_mask"])  # [N, H]
            mean, std = first.mean(0), first.std(0) + 1e-6
            head.dense.weight.copy_(torch.diag(1 / std))
            head.dense.bias.copy_(-mean / std)
            head.classifier.weight.copy_(torch.randn(head.classifier.weight.shape, generator=generator) * 0.7)
            head.classifier.bias.zero_()


def encoded_toy(tokenizer, n: int = 24, seed: int = 5):
    return encode_split(toy_split(n, seed), tokenizer, 32)


def flops_of(fn) -> int:
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def safe_threshold(model, batch, quantile: float) -> float:
    """A threshold near a quantile of the first exit's confidences, at least 1e-4 away from every confidence
    of every exit (so float noise between batched and single runs cannot flip a decision)."""
    with torch.no_grad():
        logits = model.exit_logits(**batch)[:-1]
    conf = torch.cat([exit_confidence(z, 1.0, model.policy if model.policy != "patience" else "max_prob") for z in logits])
    target = float(torch.quantile(conf.double(), quantile))
    for step in range(2000):
        for candidate in (target + step * 1e-4, target - step * 1e-4):
            if 0 < candidate < 1 and float((conf - candidate).abs().min()) > 1e-4:
                return candidate
    raise AssertionError("no safe threshold")


def set_policy_safely(model, policy: str, batch) -> None:
    """``policy`` with patience 1, or with a threshold that rows of ``batch`` pass at several exits."""
    if policy == "patience":
        model.set_policy("patience", patience=1)
    else:
        model.set_policy(policy, threshold=0.5)
        model.set_policy(policy, threshold=safe_threshold(model, batch, 0.4))


# ---- threshold 1.0 is the original model ----------------------------------------------------------


def test_threshold_one_equals_full_model():
    backbone, tokenizer = tiny()
    model = EarlyExitClassifier(backbone, temperatures=[0.5, 2.0, 3.0, 1.0]).eval()
    batch = collate(encoded_toy(tokenizer), list(range(24)), tokenizer.pad_token_id)
    batch.pop("labels")
    with torch.no_grad():
        expected = backbone(**batch).logits
        out = model(**batch)
    assert torch.equal(out.logits, expected)
    assert out.exit_layers.tolist() == [LAYERS] * 24
    # No exit head runs at threshold 1.0: the cost is the backbone's, to the FLOP.
    assert flops_of(lambda: model(**batch)) == flops_of(lambda: backbone(**batch))


def test_patience_beyond_exits_equals_full_model():
    backbone, tokenizer = tiny()
    model = EarlyExitClassifier(backbone, policy="patience", threshold=None, patience=LAYERS - 1).eval()
    spread_heads(model, tokenizer)
    batch = collate(encoded_toy(tokenizer), list(range(24)), tokenizer.pad_token_id)
    batch.pop("labels")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, backbone(**batch).logits)


# ---- the cost of exiting at layer 1 ---------------------------------------------------------------


def test_always_exiting_at_layer_one_costs_layer_one():
    backbone, tokenizer = tiny()
    model = EarlyExitClassifier(backbone, threshold=1e-6).eval()  # every calibrated max-prob is above 1e-6
    encoded = encoded_toy(tokenizer, n=6)
    batch = collate(encoded, list(range(6)), tokenizer.pad_token_id)
    batch.pop("labels")
    b, t = batch["input_ids"].shape
    with torch.no_grad():
        out = model(**batch)
    assert out.exit_layers.tolist() == [1] * b

    bert = backbone.bert

    def layer_one_by_hand():
        hidden = bert.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
        mask = model._mask(hidden, batch["attention_mask"])
        hidden = bert.encoder.layer[0](hidden, mask)
        return model.exits["1"](hidden, batch["attention_mask"])

    with torch.no_grad():
        assert torch.allclose(out.logits, layer_one_by_hand(), atol=1e-6)
    measured = flops_of(lambda: model(**batch))
    assert measured == flops_of(layer_one_by_hand)
    costs = measure_exit_costs(model)
    assert measured == pytest.approx(float(costs.exit_flops(torch.full((b,), t), torch.ones(b, dtype=torch.long)).sum()))
    full = count_flops(backbone, t).infer_flops_per_example * b
    assert measured < 0.4 * full  # one layer of four, plus a head


def test_costs_match_count_flops_and_the_counter():
    backbone, _ = tiny()
    model = EarlyExitClassifier(backbone).eval()
    costs = measure_exit_costs(model)
    for s in (5, 17, 60):
        assert float(costs.full_flops(torch.tensor([s]))) == count_flops(backbone, s).infer_flops_per_example
    # Exiting at layer 3 runs 3 layers and the heads at layers 1, 2 and 3.
    ids = torch.full((1, 11), 7)
    per_layer = costs.layers[0][0] * 11 + costs.layers[0][1] * 121
    expected = 3 * per_layer + 3 * costs.exit_heads[1]
    assert float(costs.exit_flops(torch.tensor([11]), torch.tensor([3]))) == pytest.approx(expected)
    assert costs.exit_heads[1] == 2 * 32 * 32 + 2 * 32 * 2  # dense h x h and linear h x K on token 0
    model.set_policy("max_prob", threshold=1.0)
    assert flops_of(lambda: model(input_ids=ids)) == float(costs.full_flops(torch.tensor([11])))


# ---- batch shrinking --------------------------------------------------------------------------------


@pytest.mark.parametrize("policy,pooling", [("max_prob", "mean"), ("max_prob", "cls"), ("entropy", "mean"),
                                            ("patience", "mean")])
def test_batch_shrinking_equals_per_example_inference_in_input_order(policy, pooling):
    backbone, tokenizer = tiny()
    model = EarlyExitClassifier(backbone, temperatures=[1.5, 0.7, 1.2, 1.0], pooling=pooling).eval()
    spread_heads(model, tokenizer)
    encoded = encoded_toy(tokenizer, n=40)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(3)).tolist()  # not sorted by length
    batch = collate(encoded, order, tokenizer.pad_token_id)
    batch.pop("labels")
    set_policy_safely(model, policy, batch)
    with torch.no_grad():
        together = model(**batch)
        alone = [model(**{k: v[i:i + 1, : int(batch["attention_mask"][i].sum())] for k, v in batch.items()})
                 for i in range(len(order))]
    layers = torch.cat([o.exit_layers for o in alone])
    assert together.exit_layers.tolist() == layers.tolist()
    assert len(set(layers.tolist())) >= 2  # the batch really shrank: rows left at different layers
    # (the helper's z-scoring divides by small spreads, which magnifies float noise: hence 1e-4)
    assert torch.allclose(together.logits, torch.cat([o.logits for o in alone]), atol=1e-4)
    # The offline rule (used for the curves) takes the same decisions.
    with torch.no_grad():
        all_exits = torch.stack(model.exit_logits(**batch))
    knob = {"patience": model.patience} if policy == "patience" else {"threshold": model.threshold}
    position = simulate_exits(all_exits, model.temperatures, policy, **knob)
    assert torch.tensor(model.exit_layers)[position].tolist() == together.exit_layers.tolist()


@pytest.mark.parametrize("policy", ["max_prob", "entropy", "patience"])
@pytest.mark.parametrize("pool_size", [None, 3, 1000])
def test_pooling_rows_across_batches_equals_batch_by_batch(policy, pool_size):
    backbone, tokenizer = tiny()
    model = EarlyExitClassifier(backbone, temperatures=[1.5, 0.7, 1.2, 1.0]).eval()
    spread_heads(model, tokenizer)
    encoded = encoded_toy(tokenizer, n=45)
    order = torch.randperm(45, generator=torch.Generator().manual_seed(4)).tolist()
    groups = [order[i:i + 8] for i in range(0, 45, 8)]  # 6 batches of mixed lengths, the last one short
    batches = [collate(encoded, g, tokenizer.pad_token_id) for g in groups]
    for b in batches:
        b.pop("labels")
    whole = collate(encoded, order, tokenizer.pad_token_id)
    whole.pop("labels")
    set_policy_safely(model, policy, whole)

    rows_per_call: list[int] = []
    last_layer = model._parts.layers[-1]  # rows of every policy have left by then
    hook = last_layer.register_forward_hook(lambda mod, args, out: rows_per_call.append(int(args[0].shape[0])))
    try:
        with torch.no_grad():
            one_by_one = [model(**b) for b in batches]
            calls_batch_by_batch, rows_per_call[:] = list(rows_per_call), []
            taken = []
            logits, layers = model.predict_batches((b for b in batches), pool_size=pool_size,  # a stream
                                                   on_batch=lambda: taken.append(1))
    finally:
        hook.remove()
    assert layers.tolist() == torch.cat([o.exit_layers for o in one_by_one]).tolist()
    assert len(set(layers.tolist())) >= 2
    assert torch.allclose(logits, torch.cat([o.logits for o in one_by_one]), atol=1e-4)
    assert len(taken) == len(batches)
    # The last layer ran fewer, fuller batches: every call but the final flush had at least the pool's rows.
    pool = pool_size or 8
    assert sum(rows_per_call) == sum(calls_batch_by_batch)
    assert all(n >= pool for n in rows_per_call[:-1])
    if pool_size != 1000:
        assert len(rows_per_call) < len(calls_batch_by_batch)
    else:
        assert len(rows_per_call) == 1


def test_speed_and_runtime_paths_use_the_pooled_stream():
    from greenlm.runtime import run_batches, torch_forward
    from greenlm.runtime.engine import TorchRuntime

    backbone, tokenizer = tiny()
    model = EarlyExitClassifier(backbone).eval()
    spread_heads(model, tokenizer)
    encoded = encoded_toy(tokenizer, n=20)
    batches = [collate(encoded, list(range(i, min(i + 6, 20))), tokenizer.pad_token_id) for i in range(0, 20, 6)]
    for b in batches:
        b.pop("labels")
    whole = collate(encoded, list(range(20)), tokenizer.pad_token_id)
    whole.pop("labels")
    model.set_policy("max_prob", threshold=0.5)
    model.set_policy("max_prob", threshold=safe_threshold(model, whole, 0.5))
    calls = []
    original = model.predict_batches
    model.predict_batches = lambda bs, **kw: calls.append(len(bs)) or original(bs, **kw)
    with torch.no_grad():
        expected = [model(**b).logits for b in batches]
        calls.clear()
        got = run_batches(torch_forward(model), batches)
        assert calls == [len(batches)]  # one call for every batch
        assert [tuple(g.shape) for g in got] == [tuple(e.shape) for e in expected]
        assert all(torch.allclose(g, e, atol=1e-4) for g, e in zip(got, expected))
        runtime = TorchRuntime(model)
        numpy_batches = [{k: v.numpy() for k, v in b.items()} for b in batches]
        got = run_batches(runtime, numpy_batches)
        assert all(torch.allclose(torch.from_numpy(g), e, atol=1e-4) for g, e in zip(got, expected))
    plain = torch_forward(backbone)
    assert not hasattr(plain, "stream") and len(run_batches(plain, batches)) == len(batches)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_a_deep_copy_runs_on_its_own_weights(kind):
    """``greenlm bench`` deep-copies a model per runtime and casts the copy (torch-bf16): every part the copy
    runs, the backbone's own classifier included, must be the copy's."""
    import copy

    backbone = tiny()[0] if kind == "bert" else _other_family("roberta")
    model = EarlyExitClassifier(backbone).eval()
    ids = torch.arange(2, 20).reshape(2, 9) % 90 + 3
    with torch.no_grad():
        before = model(input_ids=ids).logits.clone()
        twin = copy.deepcopy(model).to(torch.bfloat16)
        assert twin(input_ids=ids).logits.dtype == torch.float32  # ran in bf16 without a dtype clash
        for p in twin.parameters():
            p.zero_()
        assert torch.allclose(model(input_ids=ids).logits, before)  # the original is untouched
        assert torch.count_nonzero(twin(input_ids=ids).logits) == 0  # the copy's zeroed classifier answers


def test_predict_outputs_and_records_report_exit_layers():
    backbone, tokenizer = tiny()
    model = EarlyExitClassifier(backbone, tokenizer=tokenizer).eval()
    spread_heads(model, tokenizer)
    encoded = encoded_toy(tokenizer, n=30)
    whole = collate(encoded, list(range(30)), tokenizer.pad_token_id)
    whole.pop("labels")
    model.set_policy("max_prob", threshold=0.5)
    model.set_policy("max_prob", threshold=safe_threshold(model, whole, 0.5))
    logits, layers = predict_outputs(model, encoded, pad_token_id=tokenizer.pad_token_id, batch_size=7)
    for i in range(30):
        single = collate(encoded, [i], tokenizer.pad_token_id)
        single.pop("labels")
        with torch.no_grad():
            out = model(**single)
        assert int(layers[i]) == int(out.exit_layers[0])
        assert torch.allclose(logits[i], out.logits[0], atol=1e-5)
    split = toy_split(30, 5)
    records = predict_records(model, tokenizer, split, ["neg", "pos"], max_length=32, batch_size=7)
    assert [r["exit_layer"] for r in records] == layers.tolist()
    plain = predict_records(backbone, tokenizer, split, ["neg", "pos"], max_length=32)
    assert "exit_layer" not in plain[0]
    assert predict_outputs(backbone, encoded, pad_token_id=tokenizer.pad_token_id)[1] is None


# ---- other backbones ---------------------------------------------------------------------------------


def _other_family(kind: str):
    from transformers import (BertConfig, BertForSequenceClassification, ElectraConfig, ElectraForSequenceClassification,
                              RobertaConfig, RobertaForSequenceClassification)

    common = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
                  num_labels=3, max_position_embeddings=64)
    torch.manual_seed(0)
    if kind == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(pad_token_id=1, **common)).eval()
    if kind == "electra":
        return ElectraForSequenceClassification(ElectraConfig(embedding_size=16, **common)).eval()
    model = BertForSequenceClassification(BertConfig(**common)).eval()
    # A pruned-like BERT: layer 0 keeps 2 of 4 heads and 20 of 37 FFN units (sliced weights, smaller compute).
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():
        for name in ("query", "key", "value"):
            old = getattr(layer.attention.self, name)
            new = torch.nn.Linear(32, 16)
            new.weight.copy_(old.weight[:16]), new.bias.copy_(old.bias[:16])
            setattr(layer.attention.self, name, new)
        old = layer.attention.output.dense
        new = torch.nn.Linear(16, 32)
        new.weight.copy_(old.weight[:, :16]), new.bias.copy_(old.bias)
        layer.attention.output.dense = new
        up, down = layer.intermediate.dense, layer.output.dense
        new_up, new_down = torch.nn.Linear(32, 20), torch.nn.Linear(20, 32)
        new_up.weight.copy_(up.weight[:20]), new_up.bias.copy_(up.bias[:20])
        new_down.weight.copy_(down.weight[:, :20]), new_down.bias.copy_(down.bias)
        layer.intermediate.dense, layer.output.dense = new_up, new_down
    return model


@pytest.mark.parametrize("kind", ["roberta", "electra", "pruned-bert"])
def test_other_bert_family_models(kind):
    backbone = _other_family(kind)
    model = EarlyExitClassifier(backbone, [1, 2]).eval()
    ids = torch.tensor([[0, 5, 9, 14, 20, 2, 1, 1], [0, 7, 8, 2, 1, 1, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids, attention_mask=mask).logits,
                              backbone(input_ids=ids, attention_mask=mask).logits, atol=1e-6)
    costs = measure_exit_costs(model)
    with torch.no_grad():
        counted = flops_of(lambda: backbone(input_ids=ids[:1, :6]))
    assert float(costs.full_flops(torch.tensor([6]))) == counted
    if kind == "pruned-bert":
        assert costs.layers[0][0] < costs.layers[1][0] and costs.layers[0][1] == costs.layers[1][1] / 2


# ---- saving and loading --------------------------------------------------------------------------------


def test_save_and_load_keep_exits_calibration_and_policy(tmp_path):
    backbone, tokenizer = tiny()
    backbone.config.greenlm = {"task": "toy", "labels": ["neg", "pos"], "max_length": 32}
    model = EarlyExitClassifier(backbone, [1, 3], temperatures=[1.7, 0.8, 1.0], pooling="cls", tokenizer=tokenizer).eval()
    spread_heads(model, tokenizer)
    model.set_policy("entropy", threshold=0.3)
    save_early_exit(model, tokenizer, tmp_path / "ee", {"metrics.json": {"x": 1}})
    config = json.loads((tmp_path / "ee" / "config.json").read_text())
    assert config["greenlm"]["format"] == "early_exit"
    assert config["greenlm"]["exit_layers"] == [1, 3, 4] and config["greenlm"]["temperatures"] == [1.7, 0.8, 1.0]
    assert config["greenlm"]["max_length"] == 32

    loaded = load_classifier(str(tmp_path / "ee"))
    again = loaded.model
    assert isinstance(again, EarlyExitClassifier) and loaded.labels == ["neg", "pos"]
    assert (again.exit_layers, again.temperatures, again.policy, again.threshold) == ((1, 3, 4), (1.7, 0.8, 1.0), "entropy", 0.3)
    assert again.pooling == "cls" and again.exits["1"].pooling == "cls"
    assert again.config.greenlm["max_length"] == 32
    encoded = encoded_toy(tokenizer, n=20)
    before = predict_outputs(model, encoded, pad_token_id=tokenizer.pad_token_id)
    after = predict_outputs(again, encoded, pad_token_id=loaded.tokenizer.pad_token_id)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    # The backbone folder is a complete model of its own.
    inner = load_classifier(str(tmp_path / "ee" / "backbone")).model
    with torch.no_grad():
        batch = collate(encoded, list(range(20)), tokenizer.pad_token_id)
        batch.pop("labels")
        assert torch.equal(inner(**batch).logits, backbone(**batch).logits)
    with pytest.raises(GreenlmError, match="cannot be given other labels"):
        load_classifier(str(tmp_path / "ee"), labels=["a", "b", "c"])


def test_damaged_folder_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    backbone, tokenizer = tiny()
    save_early_exit(EarlyExitClassifier(backbone, tokenizer=tokenizer), tokenizer, tmp_path / "ee")
    weights = tmp_path / "ee" / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if not k.startswith("exits.2.")}, str(weights))
    with pytest.raises(GreenlmError, match="exit weights that do not match"):
        load_classifier(str(tmp_path / "ee"))


# ---- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [[0], [5], [2, 9], [-1], [1.5]])
def test_exit_layers_out_of_range(layers):
    backbone, _ = tiny()
    with pytest.raises(GreenlmError, match="exit layer .* (out of range|not a whole number)"):
        EarlyExitClassifier(backbone, layers)


def test_exit_layers_are_sorted_and_end_at_the_last_layer():
    backbone, _ = tiny()
    assert EarlyExitClassifier(backbone, [3, 1, 3]).exit_layers == (1, 3, 4)
    assert EarlyExitClassifier(backbone).exit_layers == (1, 2, 3, 4)
    with pytest.raises(GreenlmError, match="no exit layers"):
        EarlyExitClassifier(backbone, [])


@pytest.mark.parametrize("threshold", [0, 0.0, 1.5, -0.2, math.nan, True, "0.9", None])
def test_threshold_outside_zero_one(threshold):
    backbone, _ = tiny()
    with pytest.raises(GreenlmError, match=r"outside \(0, 1\]"):
        EarlyExitClassifier(backbone, threshold=threshold)


def test_bad_policy_and_patience():
    backbone, _ = tiny()
    with pytest.raises(GreenlmError, match="unknown exit policy 'maxprob'"):
        EarlyExitClassifier(backbone, policy="maxprob")
    with pytest.raises(GreenlmError, match="patience must be a whole number >= 1"):
        EarlyExitClassifier(backbone, policy="patience", patience=0)
    with pytest.raises(GreenlmError, match="unknown exit pooling 'max'"):
        EarlyExitClassifier(backbone, pooling="max")
    with pytest.raises(GreenlmError, match="temperatures must be 4 positive numbers"):
        EarlyExitClassifier(backbone, temperatures=[1.0, 0.0, 1.0, 1.0])


def test_architectures_exits_cannot_attach_to():
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertForSequenceClassification

    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=4,
                                                                  hidden_dim=37))
    with pytest.raises(GreenlmError, match="cannot attach early exits to DistilBertForSequenceClassification"):
        EarlyExitClassifier(distil)
    bare = BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=37))
    with pytest.raises(GreenlmError, match="cannot attach early exits to BertModel"):
        EarlyExitClassifier(bare)
    with pytest.raises(GreenlmError, match="not a PyTorch module"):
        EarlyExitClassifier(object())
    backbone, _ = tiny()
    with pytest.raises(GreenlmError, match="already has early exits"):
        EarlyExitClassifier(EarlyExitClassifier(backbone))


def test_a_model_with_its_own_forward_is_refused():
    backbone, _ = tiny()

    class Doubled(type(backbone)):  # a forward pass that is not embeddings -> layers -> classifier
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 2 + 1
            return out

    odd = Doubled(backbone.config).eval()
    with pytest.raises(GreenlmError, match="layer-by-layer outputs differ"):
        EarlyExitClassifier(odd)


def test_training_mode_returns_every_exit_and_frozen_encoder_gets_no_gradient():
    backbone, tokenizer = tiny()
    model = EarlyExitClassifier(backbone)
    model.freeze_encoder()
    model.train()
    assert not backbone.training  # frozen: no dropout in the encoder
    batch = collate(encoded_toy(tokenizer, n=8), list(range(8)), tokenizer.pad_token_id)
    out = model(**batch)
    assert len(out.exit_logits) == LAYERS and out.loss is not None
    out.loss.backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert all(p.grad is not None for p in model.exits.parameters())
