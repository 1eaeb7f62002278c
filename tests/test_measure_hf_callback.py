"""The Hugging Face Trainer callback: a price tag over a tiny real training run."""

from __future__ import annotations

import json

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore::greenlm.measure.PriceTagWarning")


class Tiny(torch.utils.data.Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(3, 99, (12,), generator=g), "labels": torch.tensor(i % 2)}


def test_callback_tags_training_and_counts_flops(tmp_path):
    import greenlm.measure as gm

    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37)
    model = transformers.BertForSequenceClassification(config)
    callback = gm.PriceTagCallback(region="USA", pue=1.0, seq_len=12)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3, report_to=[], save_strategy="no",
        logging_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    transformers.Trainer(model=model, args=args, train_dataset=Tiny(), callbacks=[callback]).train()
    rec = callback.record
    assert rec.name == "train" and rec.wall_s > 0 and rec.co2e_kg is not None
    per_example = gm.count_flops(model, 12).infer_flops * 3
    assert rec.flops == per_example * 3 * 4
    assert rec.meta["hf_global_step"] == 3 and rec.meta["hf_total_flos"] > 0
    assert json.loads((tmp_path / "pricetag.json").read_text())["id"] == rec.id


def test_callback_rejects_bad_options_before_training():
    import greenlm.measure as gm
    from greenlm.common import GreenlmError

    with pytest.raises(GreenlmError, match="PUE"):
        gm.PriceTagCallback(pue=0.3)
