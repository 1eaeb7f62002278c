"""Batched inference in input order, with length-sorted batches and dynamic padding."""

from __future__ import annotations

import torch

from greenlm.data import EncodedSplit, collate, length_grouped_batches
from greenlm.common.progress import ProgressBar


@torch.inference_mode()
def predict_outputs(model, encoded: EncodedSplit, *, pad_token_id: int, batch_size: int = 64,
                    progress: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits [N, num_labels] (float32, CPU) in the order of ``encoded``, and for models that exit early
    (their output has ``exit_layers``, see ``greenlm.models.early_exit``) the 1-based layer each example
    left at [N] (long); None for other models.

    Batches hold examples of similar length (sorted), so short sentences are not padded to long ones.
    ``progress``: a description, to show a progress bar with ETA (None: silent).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.empty(len(encoded), model.config.num_labels, dtype=torch.float32)
    exit_layers: torch.Tensor | None = None
    batches = length_grouped_batches(encoded.lengths(), batch_size, shuffle=False)
    # A bar only where there is something to wait for (a few seconds and more).
    bar = ProgressBar(progress is not None and len(batches) >= 20, progress or "", len(batches), unit="batches")

    def inputs():  # collated one at a time, as the model takes them
        for indices in batches:
            batch = collate(encoded, indices, pad_token_id)
            batch.pop("labels", None)
            yield {k: v.to(device) for k, v in batch.items()}

    predict_batches = getattr(model, "predict_batches", None)
    if callable(predict_batches):  # early exit: rows that go on are pooled across batches at every layer
        logits, layers = predict_batches(inputs(), on_batch=bar.advance)
        order = torch.as_tensor([i for indices in batches for i in indices], dtype=torch.long)
        out[order] = logits.float().cpu()
        exit_layers = torch.zeros(len(encoded), dtype=torch.long)
        exit_layers[order] = layers.cpu()
    else:
        for indices, batch in zip(batches, inputs()):
            bar.advance()
            output = model(**batch)
            out[torch.as_tensor(indices)] = output.logits.float().cpu()
            layers = getattr(output, "exit_layers", None)
            if layers is not None:
                if exit_layers is None:
                    exit_layers = torch.zeros(len(encoded), dtype=torch.long)
                exit_layers[torch.as_tensor(indices)] = layers.cpu()
    bar.close()
    model.train(was_training)
    return out, exit_layers


def predict_logits(model, encoded: EncodedSplit, *, pad_token_id: int, batch_size: int = 64,
                   progress: str | None = None) -> torch.Tensor:
    """Logits [N, num_labels] (float32, CPU) for every example, in the order of ``encoded``."""
    return predict_outputs(model, encoded, pad_token_id=pad_token_id, batch_size=batch_size, progress=progress)[0]


def predict_records(model, tokenizer, split, labels: list[str], *, max_length: int, batch_size: int = 64,
                    progress: str | None = None, on_note=None) -> list[dict]:
    """One record per input: its predicted label, the probability of every label, and ``exit_layer`` when the
    model exits early. ``on_note`` hears how many inputs were cut at ``max_length``."""
    from greenlm.data import encode_split, truncation_line, truncation_record

    encoded = encode_split(split, tokenizer, max_length)
    if on_note is not None:
        on_note(truncation_line("input", truncation_record(encoded)))
    logits, exit_layers = predict_outputs(model, encoded, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size,
                                          progress=progress)
    probabilities = logits.softmax(-1)
    records = []
    for i, row in enumerate(probabilities.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        record = {"text": split.text_a[i]}
        if split.text_b is not None:
            record["text_b"] = split.text_b[i]
        record.update(label=labels[best], probabilities={label: round(p, 6) for label, p in zip(labels, row)})
        if exit_layers is not None:  # early-exit models: the layer the prediction came from (1 = first)
            record["exit_layer"] = int(exit_layers[i])
        records.append(record)
    return records
