"""How the report's figures came about: the machine's load while timing, and which split each stage chose on.

- ``load_sentence(machine)``: one sentence for the speed columns, from ``measurements["machine"]["load"]``
  (``greenlm.measure.machine_load``). When the machine was busy: "the machine was shared while timing (...):
  absolute speeds are low and noisy; ratios were taken in interleaved rounds"; else the load, briefly.
- ``selections(metrics_by_stage)``: every choice a stage recorded in its ``metrics.json`` (a ``selection``
  record at the top level or under a method's details: ``{"split", "examples", "chose", "from", "warning"}``),
  one row per choice, with ``on_reported_split`` when it was made on the split the report's figures are
  taken on (``dev`` unless the run named another: ``eval_split``), which makes those figures optimistic.
- ``eval_split_of(record)`` / ``eval_metrics(metrics)``: the split a stage's ``metrics.json`` (or a report, or a
  measuring pass) reports its figures on, and that split's metrics; records written before ``eval_split``
  existed report on ``dev``.
"""

from __future__ import annotations

import html

REPORTED_SPLIT = "dev"  # where figures came from in records that do not say (written before eval_split)


def eval_split_of(record: dict | None) -> str:
    """The split a metrics.json, report or measuring pass reports its figures on."""
    return str((record or {}).get("eval_split") or REPORTED_SPLIT)


def eval_metrics(metrics: dict | None) -> dict:
    """A stage's metrics on its reported split ({} when it has none)."""
    return ((metrics or {}).get("splits") or {}).get(eval_split_of(metrics)) or {}


def load_sentence(machine: dict | None) -> str | None:
    """What the report says next to the speed columns about the machine's load (None for older runs)."""
    load = (machine or {}).get("load")
    if not isinstance(load, dict):
        return None
    parts = []
    before, after = load.get("loadavg_1m_before"), load.get("loadavg_1m_after")
    if before is not None or after is not None:
        parts.append(f"load {_load(before)} before, {_load(after)} after")
    share = load.get("other_processes_cpu_share")
    cpus = load.get("cpus")
    of = f" of the {cpus} CPUs it could use" if cpus and cpus > 1 else " of the CPU"
    parts.append(f"other processes {'n/a' if share is None else f'{100 * share:.0f}%'}{of}")
    where = "; ".join(parts)
    if load.get("busy"):
        return (f"the machine was shared while timing ({where}): absolute speeds are low and noisy; ratios were taken"
                " in interleaved rounds")
    return f"the machine was not busy while timing ({where}); ratios were taken in interleaved rounds"


def _load(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _records(metrics: dict) -> list[tuple[str | None, dict]]:
    """(where, record) for every selection record in one stage's metrics.json."""
    found: list[tuple[str | None, dict]] = []

    def add(where, value):
        for item in (value if isinstance(value, list) else [value]):
            if isinstance(item, dict):
                found.append((where, item))

    if "selection" in metrics:
        add(None, metrics["selection"])
    for key, value in metrics.items():
        if key != "selection" and isinstance(value, dict) and "selection" in value:
            add(key, value["selection"])
    return found


def truncation_sentence(truncation: dict | None) -> str | None:
    """The report's sentence on truncation: per split, the rows the teacher's fine-tuning cut at its max_length
    (``metrics.json``'s ``truncation``); None for runs recorded before it was counted."""
    if not isinstance(truncation, dict) or not truncation:
        return None
    parts = [f"{name} {r['truncated']:,} of {r['rows']:,} rows ({100 * r['share']:.1f}%)"
             for name, r in truncation.items() if isinstance(r, dict) and r.get("rows")]
    lengths = sorted({r.get("max_length") for r in truncation.values() if isinstance(r, dict)} - {None})
    if not parts:
        return None
    return f"rows longer than {', '.join(map(str, lengths))} tokens, cut when read: {'; '.join(parts)}"


def selections(metrics_by_stage: dict[str, dict | None], reported: str = REPORTED_SPLIT) -> list[dict]:
    """One row per recorded choice, stages in the order given: stage, where it is recorded, split, examples,
    what it chose, where the split's rows came from, the stage's warning, and ``on_reported_split`` (the choice
    was made on ``reported``, the split the report's figures come from)."""
    rows = []
    for stage, metrics in metrics_by_stage.items():
        for where, record in _records(metrics or {}):
            split = record.get("split")
            rows.append({
                "stage": stage, "recorded_under": where, "split": split, "examples": record.get("examples"),
                "chose": record.get("chose"), "from": record.get("from"), "warning": record.get("warning"),
                "on_reported_split": split == reported or bool(record.get("warning")),
                "reported_split": reported,
            })
    return rows


def _reported(rows: list[dict]) -> str:
    return next((r["reported_split"] for r in rows if r.get("reported_split")), REPORTED_SPLIT)


def selection_warning(rows: list[dict]) -> str | None:
    """A warning when any choice was made on the reported split, naming the stages; None when none was."""
    flagged = [r for r in rows if r["on_reported_split"]]
    stages = list(dict.fromkeys(r["stage"] for r in flagged))
    if not stages:
        return None
    splits = ", ".join(f"`{s}`" for s in dict.fromkeys(r.get("split") or _reported(rows) for r in flagged))
    return (f"{', '.join(stages)} made {'its choice' if len(stages) == 1 else 'their choices'} on {splits}, a split"
            f" that is also reported (this report's figures are on `{_reported(rows)}`): those figures are optimistic."
            " Set the recipe's validation fraction above 0 to choose on rows carved from train.")


def _split_text(row: dict) -> str:
    split = row.get("split") or "none"
    origin = f" (from {row['from']})" if row.get("from") else ""
    return f"{split}{origin}"


def selection_markdown(rows: list[dict]) -> list[str]:
    """report.md's "Which split chose what" section (no lines when no stage recorded a choice)."""
    if not rows:
        return []
    lines = ["## Which split chose what", "", "| stage | chose | on split | examples |", "|---|---|---|---:|"]
    for r in rows:
        mark = " **(reported split)**" if r["on_reported_split"] else ""
        lines.append(f"| {r['stage']} | {r.get('chose') or 'n/a'} | {_split_text(r)}{mark}"
                     f" | {r['examples'] if r.get('examples') is not None else 'n/a'} |")
    lines.append("")
    warning = selection_warning(rows)
    if warning:
        lines += [f"> **Warning.** {warning}", ""]
    else:
        lines += [f"Every choice was made on rows kept apart from `{_reported(rows)}`, the split reported above.", ""]
    return lines


def selection_html(rows: list[dict]) -> str:
    """report.html's section on which split chose what ("" when no stage recorded a choice)."""
    if not rows:
        return ""

    def e(text) -> str:
        return html.escape("" if text is None else str(text), quote=True)

    items = []
    for r in rows:
        reported = r["on_reported_split"]
        mark = " <strong>(reported split)</strong>" if reported else ""
        examples = r["examples"] if r.get("examples") is not None else "n/a"
        cls = ' class="reported"' if reported else ""
        items.append(f'<tr{cls}><td>{e(r["stage"])}</td>'
                     f'<td>{e(r.get("chose") or "n/a")}</td><td>{e(_split_text(r))}{mark}</td><td>{e(examples)}</td>'
                     "</tr>")
    body = "".join(items)
    warning = selection_warning(rows)
    note = (f'<p class="warn" role="note"><strong>Warning.</strong> {e(warning)}</p>' if warning else
            f'<p class="note">Every choice was made on rows kept apart from {e(_reported(rows))}, the split reported'
            " above.</p>")
    return ('<section id="selection"><h2>Which split chose what</h2><div class="table-wrap"><table><thead><tr>'
            "<th>stage</th><th>chose</th><th>on split</th><th>examples</th></tr></thead>"
            f"<tbody>{body}</tbody></table></div>{note}</section>")
