"""The training loop: it learns, it resumes exactly, its schedule follows its formula."""

from __future__ import annotations

import pytest
import torch

from greenlm.common.hardware import cpu_has_bf16
from greenlm.data import encode_split
from greenlm.models import TinySpec, build_tiny_classifier
from greenlm.train import Callback, TrainConfig, evaluate, train
from greenlm.train.loop import _linear_warmup_decay


def tiny_setup(task, seed=0):
    model, tokenizer = build_tiny_classifier(TinySpec(layers=2, hidden=32, heads=4, ffn=37, vocab=99),
                                             list(task.labels), task.split("train").text_a, seed=seed)
    train_data = encode_split(task.split("train"), tokenizer, 32)
    dev_data = encode_split(task.split("dev"), tokenizer, 32)
    return model, tokenizer, train_data, dev_data


def test_loss_decreases_and_toy_task_is_learned(toy_task, tmp_path):
    model, tok, train_data, dev_data = tiny_setup(toy_task)
    before = evaluate(model, dev_data, pad_token_id=tok.pad_token_id, num_labels=2)["accuracy"]
    losses = []

    class Record(Callback):
        def on_step_end(self, state):
            losses.append(state.last_loss)

    config = TrainConfig(epochs=6, batch_size=16, learning_rate=3e-3, precision="fp32", warmup_ratio=0.1)
    result = train(model, train_data, dev_data, config, pad_token_id=tok.pad_token_id, work_dir=tmp_path,
                   callbacks=[Record()], progress=False)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.5 * first
    assert result.best_metrics["accuracy"] >= 0.9 > before
    assert result.state.step == 6 * 16  # 256 examples / 16 per batch, 6 epochs
    assert len(result.state.history) == 6


def test_best_checkpoint_is_kept(toy_task, tmp_path):
    model, tok, train_data, dev_data = tiny_setup(toy_task)
    config = TrainConfig(epochs=4, batch_size=16, learning_rate=3e-3, precision="fp32")
    result = train(model, train_data, dev_data, config, pad_token_id=tok.pad_token_id, work_dir=tmp_path,
                   progress=False)
    best = max(h["accuracy"] for h in result.state.history)
    assert result.best_metrics["accuracy"] == best
    # The weights left in the model are the best epoch's, not the last epoch's.
    assert evaluate(model, dev_data, pad_token_id=tok.pad_token_id, num_labels=2)["accuracy"] == best


class _Crash(Exception):
    pass


@pytest.mark.parametrize("crash_step", [5, 16, 23])
def test_resume_equals_uninterrupted(toy_task, tmp_path, crash_step):
    config = TrainConfig(epochs=2, batch_size=16, learning_rate=1e-3, precision="fp32", checkpoint_every_steps=5)

    straight, tok, train_data, dev_data = tiny_setup(toy_task)
    ref = train(straight, train_data, dev_data, config, pad_token_id=tok.pad_token_id,
                work_dir=tmp_path / "straight", progress=False)

    class CrashAt(Callback):
        def on_step_end(self, state):
            if state.step == crash_step:
                raise _Crash()

    crashed, _, _, _ = tiny_setup(toy_task)
    with pytest.raises(_Crash):
        train(crashed, train_data, dev_data, config, pad_token_id=tok.pad_token_id,
              work_dir=tmp_path / "resumed", callbacks=[CrashAt()], progress=False)
    # A new process would build a fresh model: weights come from the checkpoint.
    resumed, _, _, _ = tiny_setup(toy_task, seed=123)
    res = train(resumed, train_data, dev_data, config, pad_token_id=tok.pad_token_id,
                work_dir=tmp_path / "resumed", progress=False)
    assert res.state.step == ref.state.step
    assert res.state.history == ref.state.history
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_warmup_then_linear_decay():
    f = _linear_warmup_decay(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(100) == 0.0


def test_grad_accumulation_matches_one_big_batch(toy_task, tmp_path):
    """Two micro-batches of 8 give the same update as... the same 16 examples in one batch."""
    model_a, tok, train_data, dev_data = tiny_setup(toy_task)
    model_b, _, _, _ = tiny_setup(toy_task)
    # Dropout off so both see identical forward passes.
    for m in (model_a, model_b):
        m.config.hidden_dropout_prob = 0.0
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    common = dict(epochs=1, learning_rate=1e-3, precision="fp32", max_steps=1, max_grad_norm=0.0, warmup_ratio=0.0)
    # Batch 16 in one go vs. 16 = the first two batches of 8 of the same length-sorted order: compare the
    # loop's accumulation against a hand-made single step on the same 16 examples.
    from greenlm.data import collate, length_grouped_batches

    cfg = TrainConfig(batch_size=8, grad_accum_steps=2, **common)
    train(model_a, train_data, None, cfg, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "a", progress=False)
    batches = length_grouped_batches(train_data.lengths(), 8, shuffle=True, seed=cfg.seed, group_factor=cfg.length_group_factor)
    indices = batches[0] + batches[1]
    opt = torch.optim.AdamW([{"params": [p for n, p in model_b.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n], "weight_decay": 0.01},
                             {"params": [p for n, p in model_b.named_parameters() if p.ndim < 2 or "LayerNorm" in n], "weight_decay": 0.0}], lr=1e-3)
    model_b.train()
    loss = 0
    for part in (batches[0], batches[1]):
        batch = collate(train_data, part, tok.pad_token_id)
        loss = model_b(**batch).loss * len(part) / len(indices)
        loss.backward()
    opt.step()
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_without_a_progress_bar_training_logs_progress_lines(caplog):
    import logging

    from greenlm.common.progress import ProgressBar

    bar = ProgressBar(False, "finetune", total=4, completed=0, log=True, log_every_s=0.0)
    with caplog.at_level(logging.INFO, logger="greenlm"):
        for loss in (0.9, 0.7, 0.5, 0.3):
            bar.advance(loss=loss)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert lines[0].startswith("finetune: step 1/4 (25%), loss 0.9000, ETA ")
    assert lines[-1].startswith("finetune: step 4/4 (100%), loss 0.3000, ETA 0m00s")
    silent = ProgressBar(False, "finetune", total=4, completed=0, log=False, log_every_s=0.0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="greenlm"):
        silent.advance(0.1)
    assert caplog.records == []


@pytest.mark.skipif(not (torch.cuda.is_available() or cpu_has_bf16()), reason="no native bf16 here")
def test_precision_can_change_between_trainings_in_one_process(toy_task, tmp_path):
    """Accelerate fixes mixed precision process-wide at first use; greenlm's own autocast does not."""
    dtypes = []
    for precision in ("fp32", "bf16", "fp32"):
        model, tok, train_data, _ = tiny_setup(toy_task)
        linear = model.bert.encoder.layer[0].attention.self.query
        seen = []
        handle = linear.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
        config = TrainConfig(epochs=1, max_steps=1, batch_size=16, learning_rate=1e-3, precision=precision)
        result = train(model, train_data, None, config, pad_token_id=tok.pad_token_id,
                       work_dir=tmp_path / precision / str(len(dtypes)), progress=False)
        handle.remove()
        assert result.precision == precision
        dtypes.append(seen[0])
    assert dtypes == [torch.float32, torch.bfloat16, torch.float32]
