"""A Hugging Face ``Trainer`` callback that puts a price tag on training.

    from greenlm.measure import PriceTagCallback   # imports transformers only now
    trainer = Trainer(..., callbacks=[PriceTagCallback(region="USA", seq_len=128)])
    trainer.train()
    trainer.callback_handler.callbacks[0].record   # or output_dir/pricetag.json

The tag opens at ``on_train_begin`` and closes at ``on_train_end`` (evaluations run inside training
are inside the tag). With ``seq_len``, the training FLOPs are added in the ``matmul`` convention:
examples seen (steps x per-device batch x accumulation x processes) x 3 x forward FLOPs per example
of the model. Trainer's own ``total_flos`` (its 6 x parameters x tokens estimate) is kept beside it in
``record.meta`` for comparison.

Every ``on_log`` (training logs and evaluations) gets ``energy_kwh``, ``co2e_kg`` and ``cost_usd`` (where a
region and a price are known) of the tag so far added to its ``logs``, so the trackers set with ``report_to``
(TensorBoard, W&B, MLflow...) receive them. Trainer places the callbacks it builds for ``report_to`` before the
user's, so at ``on_train_begin`` this callback moves itself first in the Trainer's list: its figures are in
``logs`` before any tracker reads them.

Several processes (``accelerate launch``, ``torchrun``): only the local main process of each node
(``state.is_local_process_zero``) opens a price tag, which covers its whole machine and goes to its ledger
(greenlm.measure.distributed); the world's main process writes ``pricetag.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from transformers import TrainerCallback

from greenlm.common import atomic_write_json
from greenlm.measure.flops import count_flops
from greenlm.measure.pricetag import PriceTag, PriceTagRecord

LOGGED = ("energy_kwh", "co2e_kg", "cost_usd")  # the figures added to every on_log's logs


class PriceTagCallback(TrainerCallback):
    def __init__(self, name: str = "train", *, seq_len: int | None = None, write_json: bool = True, **tag_options):
        PriceTag(name, **tag_options)  # validate the options now, before any training starts
        self.name, self.seq_len, self.write_json = name, seq_len, write_json
        self.tag_options = tag_options
        self.tag: PriceTag | None = None
        self.record: PriceTagRecord | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._run_first()
        if not state.is_local_process_zero:  # the node's local main process prices the machine
            return
        self.tag = PriceTag(self.name, **self.tag_options).start()

    def _run_first(self) -> None:
        """Move this callback ahead of the trackers' callbacks in the Trainer's CallbackHandler (the caller's frame)."""
        from transformers.trainer_callback import CallbackHandler

        frame = sys._getframe(1)
        while frame is not None:
            handler = frame.f_locals.get("self")
            if isinstance(handler, CallbackHandler):
                # a new list: the handler's loop over the old one, in progress now, is not disturbed
                handler.callbacks = [self, *(c for c in handler.callbacks if c is not self)]
                return
            frame = frame.f_back

    def figures(self) -> dict:
        """Energy, CO2e and cost of the tag so far (the figures that are known)."""
        if self.tag is None or not self.tag.running:
            return {}
        so_far = self.tag.peek()
        return {key: getattr(so_far, key) for key in LOGGED if getattr(so_far, key) is not None}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None:
            logs.update(self.figures())

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.tag is None or not self.tag.running:
            return
        if self.seq_len is not None and model is not None:
            examples = (
                state.global_step * args.per_device_train_batch_size * args.gradient_accumulation_steps
                * max(args.world_size, 1)
            )
            per_example = count_flops(model, self.seq_len, train_steps=1, batch_size=1).train_flops_per_example
            self.tag.add_flops(per_example * examples)
        self.tag._meta.update(hf_total_flos=float(getattr(state, "total_flos", 0.0)), hf_global_step=state.global_step)
        self.record = self.tag.stop()
        if self.write_json and state.is_world_process_zero and args.output_dir:
            atomic_write_json(Path(args.output_dir) / "pricetag.json", self.record.to_dict())
