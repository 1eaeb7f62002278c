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


def _tiny_bert():
    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37)
    return transformers.BertForSequenceClassification(config)


class _Recorder(transformers.TrainerCallback):
    """Stands for a tracker's callback, which Trainer places before the user's callbacks."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_energy_and_co2e_reach_the_trackers_through_on_log(tmp_path):
    import greenlm.measure as gm

    recorder = _Recorder()
    callback = gm.PriceTagCallback(region="USA", pue=1.0, usd_per_hour=2.0, ledger=False)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, report_to=[], save_strategy="no",
        logging_strategy="steps", logging_steps=1, use_cpu=True, disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=_tiny_bert(), args=args, train_dataset=Tiny(), callbacks=[recorder, callback])
    trainer.train()
    assert trainer.callback_handler.callbacks[0] is callback  # moved ahead of the trackers
    step_logs = [log for log in recorder.logs if "loss" in log]
    assert len(step_logs) == 2
    for log in step_logs:
        assert log["energy_kwh"] > 0 and log["co2e_kg"] > 0 and log["cost_usd"] > 0
    assert step_logs[1]["energy_kwh"] >= step_logs[0]["energy_kwh"]  # cumulative, as the tag's
    assert callback.record.energy_kwh >= step_logs[-1]["energy_kwh"]


def test_tensorboard_receives_the_energy_scalar(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import greenlm.measure as gm

    callback = gm.PriceTagCallback(region="FRA", pue=1.0, ledger=False)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, report_to=["tensorboard"],
        save_strategy="no", logging_strategy="steps", logging_steps=1, use_cpu=True, disable_tqdm=True,
    )
    transformers.Trainer(model=_tiny_bert(), args=args, train_dataset=Tiny(), callbacks=[callback]).train()
    events = sorted(tmp_path.rglob("events.out.tfevents*"))
    assert events, "TensorBoard wrote no event file"
    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert "train/energy_kwh" in scalars and "train/co2e_kg" in scalars


def test_only_the_local_main_process_opens_a_tag(tmp_path):
    from types import SimpleNamespace

    import greenlm.measure as gm

    callback = gm.PriceTagCallback(ledger=False)
    state = SimpleNamespace(is_local_process_zero=False, is_world_process_zero=False, global_step=0)
    args = SimpleNamespace(output_dir=str(tmp_path))
    callback.on_train_begin(args, state, None)
    logs = {"loss": 1.0}
    callback.on_log(args, state, None, logs=logs)
    callback.on_train_end(args, state, None)
    assert callback.tag is None and callback.record is None and logs == {"loss": 1.0}
    assert not (tmp_path / "pricetag.json").exists()
