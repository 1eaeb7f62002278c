"""Tasks and their data: bundled datasets, local files, Hugging Face datasets, tokenization, batching.

Imports nothing of greenlm but ``greenlm.common``; torch is imported only where tensors are made.

    task = load_task("sst2")                      # bundled; or a folder, a task file, "hf:imdb"
    encoded = encode_split(task.split("train"), tokenizer, max_length=128)
    for indices in length_grouped_batches(encoded.lengths(), 32, shuffle=True, seed=0):
        batch = collate(encoded, indices, tokenizer.pad_token_id)
"""

from greenlm.data.batching import collate, length_grouped_batches, padding_fraction
from greenlm.data.bundled import DEFAULT_TASK, bundled_task_names, describe_bundled_tasks
from greenlm.data.encode import (EncodedSplit, auto_max_length, covering_length, encode_split, token_lengths,
                                 truncation_line, truncation_record, truncation_records)
from greenlm.data.filters import DROP_RULES, describe_filter, filter_train
from greenlm.data.load import load_task
from greenlm.data.readers import read_prediction_file, read_prediction_lines
from greenlm.data.tasks import UNLABELED, Task, TaskInfo, TaskSplit, align_labels, is_labelled
from greenlm.data.validation import DEFAULT_FRACTION as DEFAULT_VALIDATION_FRACTION
from greenlm.data.validation import (MEASURING_PASS_SPLITS, SELECTION_SPLITS, VALIDATION, carve_validation,
                                     choose_eval_split, describe_validation, measuring_pass_splits, selection_record,
                                     selection_split_name, stage_task)

__all__ = [
    "DEFAULT_TASK",
    "DEFAULT_VALIDATION_FRACTION",
    "DROP_RULES",
    "MEASURING_PASS_SPLITS",
    "SELECTION_SPLITS",
    "UNLABELED",
    "VALIDATION",
    "EncodedSplit",
    "Task",
    "TaskInfo",
    "TaskSplit",
    "align_labels",
    "auto_max_length",
    "bundled_task_names",
    "carve_validation",
    "choose_eval_split",
    "collate",
    "covering_length",
    "describe_bundled_tasks",
    "describe_filter",
    "describe_validation",
    "encode_split",
    "filter_train",
    "is_labelled",
    "length_grouped_batches",
    "load_task",
    "measuring_pass_splits",
    "padding_fraction",
    "read_prediction_file",
    "read_prediction_lines",
    "selection_record",
    "selection_split_name",
    "stage_task",
    "token_lengths",
    "truncation_line",
    "truncation_record",
    "truncation_records",
]
