"""Training rows chosen from a data map (``train_selection``; the syntax is in ``greenlm.datamap.spec``).

Each part takes the first ``round(fraction * N)`` rows of its ranking (``DataMap.ranking``) among the rows no
earlier part took, N being the rows the map covers; ``random`` draws them with numpy's PCG64 seeded by the
training seed. The result is the chosen guids in row order, so the same map, spec and seed give the same rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from greenlm.common import GreenlmError
from greenlm.data import Task
from greenlm.datamap.cartography import DataMap, compute_map, share_count
from greenlm.datamap.dynamics_io import check_against_task, read_dynamics
from greenlm.datamap.spec import SelectionPart, parse_selection, selection_needs_map


@dataclass
class Selection:
    rows: list[int]  # chosen guids (row indices of the task's train split), ascending
    available: int  # rows the fractions are shares of (the map's rows, or the whole train split)
    parts: list[dict] = field(default_factory=list)  # {"region", "fraction", "rows"} in the spec's order

    def rows_sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.rows).encode()).hexdigest()


def select_rows(parts: tuple[SelectionPart, ...], *, data_map: DataMap | None, n_rows: int, seed: int) -> Selection:
    """The rows ``parts`` choose: from ``data_map``'s rows, or from ``range(n_rows)`` when every part is random."""
    if data_map is None and selection_needs_map(parts):
        raise GreenlmError("train_selection ranks rows by a data map: give selection_map (a model folder trained"
                           " with --record-dynamics)")
    guids = np.asarray(data_map.guids if data_map is not None else range(n_rows))
    n = len(guids)
    taken = np.zeros(n, dtype=bool)
    rng = np.random.Generator(np.random.PCG64(seed))
    report = []
    for part in parts:
        want = share_count(part.fraction, n)
        if part.region == "random":
            candidates = np.flatnonzero(~taken)
            chosen = rng.permutation(candidates)[:want]
        else:
            order = data_map.ranking(part.region)
            chosen = order[~taken[order]][:want]
        taken[chosen] = True
        report.append({"region": part.region, "fraction": part.fraction, "rows": int(len(chosen))})
    rows = sorted(int(g) for g in guids[taken])
    return Selection(rows=rows, available=n, parts=report)


def selection_for_task(spec: str, map_path: str | Path | None, task: Task, *, seed: int,
                       min_rows: int = 1) -> tuple[Selection, dict]:
    """Read the map at ``map_path`` (when the spec needs one), check it belongs to ``task``, choose the rows.

    Returns the selection and what ``metrics.json`` records of it. Fewer than ``min_rows`` rows (one batch) is
    bad input.
    """
    parts = parse_selection(spec)
    data_map, points = None, None
    if map_path is not None:
        dynamics = read_dynamics(map_path)
        check_against_task(dynamics, task)
        data_map, points = compute_map(dynamics), dynamics.points
    elif selection_needs_map(parts):
        raise GreenlmError(f"train_selection '{spec}' ranks rows by a data map: give selection_map (a model folder"
                           " trained with --record-dynamics)")
    selection = select_rows(parts, data_map=data_map, n_rows=len(task.split("train")), seed=seed)
    if len(selection.rows) < min_rows:
        raise GreenlmError(f"train_selection '{spec}' keeps {len(selection.rows)} of {selection.available} rows, fewer"
                           f" than one batch ({min_rows}); choose a larger share or a smaller batch size")
    record = {
        "spec": spec,
        "map": None if map_path is None else str(map_path),
        "map_points": points,
        "rows_used": len(selection.rows),
        "rows_available": selection.available,
        "train_rows": len(task.split("train")),
        "parts": selection.parts,
        "seed": seed,
        "rows_sha256": selection.rows_sha256(),
    }
    return selection, record
