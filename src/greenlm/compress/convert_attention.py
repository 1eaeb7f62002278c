"""Convert a fine-tuned classifier's attention to a linear one, then recover its accuracy by distillation.

    config = ConvertAttentionConfig(attention="rfa:features=64", epochs=3)
    result = greenlm.stage.run_stage("convert_attention", finetuned_dir, task, config, out_dir)

The swap-then-finetune recipe of Kasai et al. 2021 ("Finetuning Pretrained Transformers into RNNs", EMNLP):
  1. swap: every layer's softmax self-attention becomes RFA, Performer or ABC (``greenlm.models.linear_attention``),
     keeping the trained query / key / value projections, so the new model starts close to the old one;
     optionally the position table is extended for longer inputs (copied, as Longformer does);
  2. fine-tune the whole model on the task with the original model, frozen, as teacher (Hinton et al. 2015):

         L = (1 - alpha) * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + alpha * CE(y, z_s)
             [+ hidden_weight * MSE(h_s, h_t) over real tokens of the last hidden states]

     through greenlm's one training loop, keeping the epoch with the best accuracy on the validation split.

The teacher's logits on the training rows are computed once and kept in the work folder (a resumed run reads
them back). The output is a model folder in the ``linear_attention`` format that eval, predict, bench and the
report load.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from greenlm.compress.convert_attention_config import ConvertAttentionConfig
from greenlm.compress.losses import kd_loss, masked_mse
from greenlm.data import EncodedSplit, collate, encode_split
from greenlm.models import save_classifier
from greenlm.models.linear_attention import calibrate_rfa, check_convertible, extend_positions, swap_attention
from greenlm.runtime import predict_logits
from greenlm.stage import StageContext, StageOutput
from greenlm.train import classification_metrics, train

METHOD = "convert_attention"


def uses_teacher(config: ConvertAttentionConfig) -> bool:
    return False  # the teacher is the input model itself, already part of the stage's identity


def _cached_teacher_logits(teacher, data: EncodedSplit, pad_token_id: int, work_dir: Path) -> torch.Tensor:
    """The original model's logits on the training rows [N, C], kept in the work folder (same stage key, same rows)."""
    from safetensors.torch import load_file, save_file

    path = work_dir / "teacher_logits.safetensors"
    if path.is_file():
        logits = load_file(str(path))["logits"]
        if logits.shape[0] == len(data):
            return logits
    logits = predict_logits(teacher, data, pad_token_id=pad_token_id)
    save_file({"logits": logits.contiguous()}, str(path))
    return logits


def run(ctx: StageContext, config: ConvertAttentionConfig) -> StageOutput:
    """The ``convert_attention`` method on the fine-tuned classifier in ``ctx.input_dir``."""
    loaded = ctx.load_input()
    teacher, tokenizer, labels = loaded.model, loaded.tokenizer, list(loaded.labels)
    check_convertible(teacher)  # one line naming the supported model types
    spec = config.spec
    work_dir = ctx.work_dir
    work_dir.mkdir(parents=True, exist_ok=True)

    student = copy.deepcopy(teacher)
    swap_attention(student, spec)
    extended = None
    if config.max_positions is not None:
        if extend_positions(student, config.max_positions):
            extend_positions(teacher, config.max_positions)  # the teacher reads the same long inputs
            extended = student.config.greenlm["positions"]
            tokenizer.model_max_length = config.max_positions
            ctx.note(f"position table extended from {extended['extended_from']} to {extended['to']} rows by copying")
    max_length = ctx.max_length(student, config.max_length, tokenizer)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    train_split = ctx.align(ctx.task.split("train"), labels, "the input model")
    if config.train_subset is not None:
        train_split = train_split.subset(config.train_subset, seed=config.seed)
    _, dev_split, selection = ctx.selection(labels, "the input model", chose="best fine-tuning epoch")
    pad = tokenizer.pad_token_id
    train_data = encode_split(train_split, tokenizer, max_length)
    dev_data = encode_split(dev_split, tokenizer, max_length) if dev_split is not None else None

    with ctx.phase("teacher_logits"):
        cached = _cached_teacher_logits(teacher, train_data, pad, work_dir)
    calibration = None
    if spec.kind == "rfa":  # RFA's temperature starts at the size of the original's scores (on 64 training rows)
        sample = EncodedSplit(train_data.input_ids[:64], None if train_data.token_type_ids is None
                              else train_data.token_type_ids[:64], train_data.labels[:64])
        batch = collate(sample, list(range(len(sample))), pad)
        batch.pop("labels")
        calibration = calibrate_rfa(student, batch)
    gold = torch.tensor(train_data.labels, dtype=torch.long)
    rows = EncodedSplit(input_ids=train_data.input_ids, token_type_ids=train_data.token_type_ids,
                        labels=list(range(len(train_data))))  # the loss looks rows up by their number
    needs_hidden = config.hidden_weight > 0
    parts_sum: dict[str, float] = {}

    def loss_fn(model, batch):
        row_ids = batch.pop("labels")
        out = model(**batch, output_hidden_states=needs_hidden)
        loss = kd_loss(out.logits, cached.to(row_ids.device)[row_ids], gold.to(row_ids.device)[row_ids],
                       temperature=config.temperature, hard_weight=config.alpha)
        parts_sum["kd"] = parts_sum.get("kd", 0.0) + float(loss.detach())
        if needs_hidden:
            teacher.to(row_ids.device)
            with torch.no_grad():
                t_hidden = teacher(**batch, output_hidden_states=True).hidden_states[-1]
            mse = masked_mse(out.hidden_states[-1], t_hidden, batch["attention_mask"])
            loss = loss + config.hidden_weight * mse
            parts_sum["hidden_mse"] = parts_sum.get("hidden_mse", 0.0) + float(mse.detach())
        parts_sum["steps"] = parts_sum.get("steps", 0.0) + 1
        return loss

    with ctx.phase("finetune"):
        before = _accuracy(student, dev_data, pad, len(labels))
        outcome = train(student, rows, dev_data, config.train_config(), pad_token_id=pad,
                        work_dir=work_dir / "train", loss_fn=loss_fn, progress=ctx.progress,
                        description=f"convert-attention: {spec.kind}")
    student.eval()

    with ctx.phase("evaluate"):
        splits, teacher_splits, agreement = {}, {}, {}
        for name, split in ctx.labelled_splits(labels, "the input model").items():
            enc = encode_split(split, tokenizer, max_length)
            s_pred = predict_logits(student, enc, pad_token_id=pad).argmax(-1)
            t_pred = predict_logits(teacher, enc, pad_token_id=pad).argmax(-1)
            splits[name] = classification_metrics(enc.labels, s_pred.tolist(), len(labels))
            teacher_splits[name] = classification_metrics(enc.labels, t_pred.tolist(), len(labels))
            agreement[name] = round(float((s_pred == t_pred).float().mean()), 5)

    steps = parts_sum.pop("steps", 0.0) or 1.0
    state = outcome.state
    details = {
        "attention": spec.to_dict(),
        "original": {"path": str(ctx.input_dir), "splits": teacher_splits},
        "accuracy_change_points": {n: round(100 * (splits[n]["accuracy"] - teacher_splits[n]["accuracy"]), 3)
                                   for n in splits},
        "agreement_with_original": agreement,
        "selection_accuracy_right_after_swap": before,  # before any fine-tuning: what the swap alone costs
        "positions": extended,
        "rfa_inv_sigma_start": calibration,  # per layer and head, from the original's query and key norms
        "training": {"steps": state.step, "examples_seen": state.examples_seen * outcome.num_processes,
                     "train_seconds": round(state.train_seconds, 3), "best_step": state.best_step,
                     "precision": outcome.precision, "history": state.history,
                     "loss_parts_mean": {k: round(v / steps, 6) for k, v in parts_sum.items()}},
        "data": {"train_rows": len(train_data), "max_length": max_length},
        "selection": selection,
        "config": config.to_dict(),
    }
    meta = dict(student.config.greenlm)  # format and attention, written by swap_attention
    meta.update(task=ctx.task.name, labels=labels, max_length=max_length, converted_from=str(ctx.input_dir))
    student.config.greenlm = meta
    return StageOutput(metrics={"splits": splits, METHOD: details},
                       model_name=f"{spec.kind} attention of {Path(ctx.input_dir).name}",
                       write=lambda folder: save_classifier(student, tokenizer, folder))


def _accuracy(model, data: EncodedSplit | None, pad_token_id: int, num_labels: int) -> float | None:
    if data is None:
        return None
    model.eval()
    pred = predict_logits(model, data, pad_token_id=pad_token_id).argmax(-1)
    return classification_metrics(data.labels, pred.tolist(), num_labels)["accuracy"]

