"""Data maps (Swayamdipta et al. 2020, "Dataset Cartography", EMNLP): training dynamics on disk, the map's
per-example measures and regions, and training-subset selection from them.

Plain numpy; imports only ``greenlm.data`` and ``greenlm.common``. Names load on first use, so the settings
module that parses ``train_selection`` (``greenlm.datamap.spec``, plain Python) imports without numpy.

    dynamics = read_dynamics("runs/teacher")            # MODEL/training_dynamics/dynamics_epoch_<k>.jsonl
    check_against_task(dynamics, task)                   # guids are row indices of the task's train split
    data_map = compute_map(dynamics)                     # confidence, variability, correctness per example
    chosen = select_rows(parse_selection("ambiguous:0.33"), data_map=data_map, n_rows=len(train), seed=42)
"""

from greenlm.common.lazy import by_module, lazy_names

_LAZY = by_module({
    "greenlm.datamap.spec": "REGION_NAMES SelectionPart parse_selection selection_needs_map",
    "greenlm.datamap.dynamics_io": "DYNAMICS_DIR Dynamics check_against_task find_dynamics_dir point_file read_dynamics"
                                   " write_point written_points",
    "greenlm.datamap.cartography": "REGION_LABELS REGION_SHARE DataMap compute_map map_from_logits region_labels"
                                   " region_thresholds share_count",
    "greenlm.datamap.selection": "Selection select_rows selection_for_task",
})

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)
