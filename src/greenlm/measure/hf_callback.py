"""A Hugging Face ``Trainer`` callback that puts a price tag on training.

    from greenlm.measure import PriceTagCallback   # imports transformers only now
    trainer = Trainer(..., callbacks=[PriceTagCallback(region="USA", seq_len=128)])
    trainer.train()
    trainer.callback_handler.callbacks[-1].record   # or output_dir/pricetag.json

The tag opens at ``on_train_begin`` and closes at ``on_train_end`` (evaluations run inside training
are inside the tag). With ``seq_len``, the training FLOPs are added in the ``matmul`` convention:
examples seen (steps x per-device batch x accumulation x processes) x 3 x forward FLOPs per example
of the model. Trainer's own ``total_flos`` (its 6 x parameters x tokens estimate) is kept beside it in
``record.meta`` for comparison. Only the main process (``state.is_world_process_zero``) writes.
"""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from greenlm.common import atomic_write_json
from greenlm.measure.flops import count_flops
from greenlm.measure.pricetag import PriceTag, PriceTagRecord


class PriceTagCallback(TrainerCallback):
    def __init__(self, name: str = "train", *, seq_len: int | None = None, write_json: bool = True, **tag_options):
        PriceTag(name, **tag_options)  # validate the options now, before any training starts
        self.name, self.seq_len, self.write_json = name, seq_len, write_json
        self.tag_options = tag_options
        self.tag: PriceTag | None = None
        self.record: PriceTagRecord | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.tag = PriceTag(self.name, **self.tag_options).start()

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
