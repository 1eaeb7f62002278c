"""Linear attention inside a BERT model: the swap keeps weights, masks work under sdpa and eager, batched equals
one by one, a saved folder reloads and predicts identically, positions extend by copying, bad input is refused."""

from __future__ import annotations

import json

import pytest
import torch

from greenlm.common import GreenlmError
from greenlm.models import load_classifier, save_classifier
from greenlm.models import linear_attention as la
from greenlm.models.tiny import TinySpec, build_tiny_classifier

TEXTS = ["the film was good", "awful plot and a dull actor", "it was fine", "boring story"]
SPECS = ["rfa:features=8", "performer:features=8", "t2r:features=8", "abc:k=4"]


def _tiny(positions=64):
    model, tokenizer = build_tiny_classifier(TinySpec(positions=positions), ["neg", "pos"], TEXTS, seed=0)
    return model.eval(), tokenizer


def _padded_batch(tokenizer):
    enc = tokenizer(["the film was good and it was fine", "boring"], padding=True, return_tensors="pt")
    assert int(enc["attention_mask"].sum()) < enc["attention_mask"].numel()  # there is padding
    return enc


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_swapped_model_batched_equals_one_by_one(spec, impl):
    model, tokenizer = _tiny()
    model.set_attn_implementation(impl)
    q_before = model.bert.encoder.layer[0].attention.self.query.weight.clone()
    la.swap_attention(model, spec)
    layer = model.bert.encoder.layer[0].attention.self
    assert isinstance(layer, la.LinearSelfAttention) and torch.equal(layer.query.weight, q_before)
    assert model.config.greenlm["format"] == "linear_attention"
    enc = _padded_batch(tokenizer)
    with torch.no_grad():
        together = model(**enc).logits
        for i in range(2):
            n = int(enc["attention_mask"][i].sum())
            alone = model(input_ids=enc["input_ids"][i:i + 1, :n]).logits
            torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-4, atol=1e-5)


def test_swap_changes_the_computation_and_softmax_is_a_no_op():
    model, tokenizer = _tiny()
    enc = _padded_batch(tokenizer)
    with torch.no_grad():
        before = model(**enc).logits
        la.swap_attention(model, "softmax")
        assert torch.equal(model(**enc).logits, before)
        la.swap_attention(model, "performer:features=8")
        after = model(**enc).logits
    assert not torch.allclose(before, after)
    with pytest.raises(GreenlmError, match="already runs performer"):
        la.swap_attention(model, "rfa")


@pytest.mark.parametrize("spec", SPECS)
def test_saved_folder_reloads_and_predicts_identically(spec, tmp_path):
    model, tokenizer = _tiny()
    la.swap_attention(model, spec)
    with torch.no_grad():  # move the learned parts away from their initial values, so a reload must read them
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    enc = _padded_batch(tokenizer)
    with torch.no_grad():
        want = model(**enc).logits
    save_classifier(model, tokenizer, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["greenlm"]
    assert saved["format"] == "linear_attention" and saved["attention"]["kind"] == spec.split(":")[0]
    loaded = load_classifier(str(tmp_path / "m"))
    assert isinstance(loaded.model.bert.encoder.layer[1].attention.self, la.LinearSelfAttention)
    with torch.no_grad():
        got = loaded.model(**enc).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    if spec.startswith(("rfa", "performer")):  # the random projection came from the file, not from the seed
        original = model.bert.encoder.layer[1].attention.self.projection
        assert torch.equal(loaded.model.bert.encoder.layer[1].attention.self.projection, original)


def test_per_forward_redraw_changes_training_forwards_only():
    model, tokenizer = _tiny()
    la.swap_attention(model, "performer:features=8,redraw=per_forward")
    enc = _padded_batch(tokenizer)
    attn = model.bert.encoder.layer[0].attention.self
    first = attn.projection.clone()
    model.eval()
    with torch.no_grad():
        model(**enc)
    assert torch.equal(attn.projection, first)
    model.train()
    with torch.no_grad():
        model(**enc)
    assert not torch.equal(attn.projection, first)


def test_extend_positions_copies_the_table_and_runs_longer_inputs():
    model, _ = _tiny(positions=16)
    table = model.bert.embeddings.position_embeddings.weight.detach().clone()
    la.swap_attention(model, "abc:k=4")
    assert la.extend_positions(model, 40)
    new = model.bert.embeddings.position_embeddings.weight
    assert new.shape == (40, table.shape[1]) and model.config.max_position_embeddings == 40
    assert torch.equal(new[:16], table) and torch.equal(new[16:32], table) and torch.equal(new[32:40], table[:8])
    assert model.config.greenlm["positions"] == {"extended_from": 16, "to": 40, "init": "copied"}
    with torch.no_grad():
        out = model(input_ids=torch.randint(5, 20, (2, 40))).logits
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    assert not la.extend_positions(model, 30)  # long enough already


def test_roberta_positions_keep_their_offset():
    from transformers import RobertaConfig, RobertaForSequenceClassification

    model = RobertaForSequenceClassification(RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                           num_attention_heads=2, intermediate_size=20,
                                                           max_position_embeddings=12, pad_token_id=1))
    table = model.roberta.embeddings.position_embeddings.weight.detach().clone()
    assert la.position_limit(model.config) == 10
    la.extend_positions(model, 25)
    new = model.roberta.embeddings.position_embeddings.weight
    assert new.shape[0] == 27 and la.position_limit(model.config) == 25
    assert torch.equal(new[:12], table) and torch.equal(new[12:22], table[2:12])
    with torch.no_grad():
        assert model(input_ids=torch.randint(3, 50, (1, 25))).logits.shape == (1, 2)


def test_unsupported_model_types_and_lengths_are_refused():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2,
                                                                  hidden_dim=20))
    with pytest.raises(GreenlmError, match="cannot convert the attention of model type 'distilbert'; supported: BERT"):
        la.swap_attention(distil, "rfa")
    model, _ = _tiny(positions=16)
    with pytest.raises(GreenlmError, match="above what the model's positions allow"):
        la.check_length(model.config, 17)
    la.check_length(model.config, 16)


def test_key_padding_mask_reads_every_mask_format():
    keep = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    sdpa = keep[:, None, None, :].expand(2, 1, 3, 3)
    eager = torch.zeros(2, 1, 3, 3).masked_fill(~sdpa, torch.finfo(torch.float32).min)
    for mask in (sdpa, eager, keep, keep.long()):
        assert torch.equal(la.key_padding_mask(mask, 2, 3), keep)
    assert la.key_padding_mask(None, 2, 3) is None
    assert la.key_padding_mask(torch.ones(2, 3, dtype=torch.bool), 2, 3) is None


def test_tiny_spec_takes_an_attention():
    spec = TinySpec.parse("tiny:layers=1,hidden=16,heads=2,attention=abc:k=4")
    assert spec.layers == 1 and spec.attention == "abc:k=4"
    spec = TinySpec.parse("tiny:layers=1,attention=rfa,features=8,seed=2")
    assert spec.attention == "rfa:features=8,redraw=fixed,seed=2,orthogonal=1"
    assert TinySpec.parse("tiny:layers=2").attention == "softmax"
    model, _ = build_tiny_classifier(TinySpec.parse("tiny:layers=1,hidden=16,heads=2,attention=performer,features=4"),
                                     ["a", "b"], TEXTS)
    assert isinstance(model.bert.encoder.layer[0].attention.self, la.LinearSelfAttention)
    assert model.bert.encoder.layer[0].attention.self.projection.shape == (4, 8)
    with pytest.raises(GreenlmError, match="known: softmax, rfa, performer, t2r, abc"):
        TinySpec.parse("tiny:attention=linformer")


def test_calibrate_rfa_matches_the_softmax_score_scale():
    model, tokenizer = _tiny()
    with torch.no_grad():  # larger query / key weights: scores worth calibrating
        for layer in model.bert.encoder.layer:
            layer.attention.self.query.weight.mul_(8.0)
            layer.attention.self.key.weight.mul_(8.0)
    la.swap_attention(model, "rfa:features=8")
    enc = dict(_padded_batch(tokenizer))
    chosen = la.calibrate_rfa(model, enc, limits=(0.01, 100.0))
    attn = model.bert.encoder.layer[0].attention.self
    hidden = model.bert.embeddings(input_ids=enc["input_ids"], token_type_ids=enc.get("token_type_ids"))
    real = enc["attention_mask"].bool()
    q = attn.query(hidden).view(2, -1, 4, 8).norm(dim=-1)[real]  # [real tokens, H]
    k = attn.key(hidden).view(2, -1, 4, 8).norm(dim=-1)[real]
    want = (q.mean(0) * k.mean(0) * attn.scaling).sqrt().detach()
    torch.testing.assert_close(attn.inv_sigma.detach(), want, rtol=1e-4, atol=1e-5)
    assert chosen[0] == [round(float(v), 4) for v in want] and float(want.min()) > 1.0
