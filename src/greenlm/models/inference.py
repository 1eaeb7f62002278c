"""Batched inference in input order, with length-sorted batches and dynamic padding."""

from __future__ import annotations

import torch

from greenlm.data import EncodedSplit, collate, length_grouped_batches


@torch.inference_mode()
def predict_logits(model, encoded: EncodedSplit, *, pad_token_id: int, batch_size: int = 64) -> torch.Tensor:
    """Logits [N, num_labels] (float32, CPU) for every example, in the order of ``encoded``.

    Batches hold examples of similar length (sorted), so short sentences are not padded to long ones.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.empty(len(encoded), model.config.num_labels, dtype=torch.float32)
    for indices in length_grouped_batches(encoded.lengths(), batch_size, shuffle=False):
        batch = collate(encoded, indices, pad_token_id)
        batch.pop("labels", None)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        out[torch.as_tensor(indices)] = logits.float().cpu()
    model.train(was_training)
    return out


def predict_records(model, tokenizer, split, labels: list[str], *, max_length: int, batch_size: int = 64) -> list[dict]:
    """One record per input: its predicted label and the probability of every label."""
    from greenlm.data import encode_split

    encoded = encode_split(split, tokenizer, max_length)
    probabilities = predict_logits(model, encoded, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size).softmax(-1)
    records = []
    for i, row in enumerate(probabilities.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        record = {"text": split.text_a[i]}
        if split.text_b is not None:
            record["text_b"] = split.text_b[i]
        record.update(label=labels[best], probabilities={label: round(p, 6) for label, p in zip(labels, row)})
        records.append(record)
    return records
