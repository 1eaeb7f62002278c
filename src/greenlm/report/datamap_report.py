"""A data map's figures and its self-contained HTML page (``greenlm datamap``).

Plain data in, as everywhere in ``greenlm.report``: the caller passes lists of numbers and dicts (the measures
are computed by ``greenlm.datamap``, which this layer does not import).

    datamap_scatter      confidence against variability, one point per training row, coloured by correctness,
                         with the regions' edges (Swayamdipta et al. 2020, figure 1)
    datamap_histograms   the distribution of confidence, variability and correctness
"""

from __future__ import annotations

import random

from greenlm.report.figures import FigureData, _csv, _new_figure, _style, available
from greenlm.report.html import _card_section, _e, _figures, _page

MAX_SCATTER_POINTS = 25_000  # more points than this are drawn from a seeded sample (the reference code does too)
_REGION_COLOURS = {"ambiguous": "#E69F00", "hard-to-learn": "#0072B2", "easy-to-learn": "#D55E00", "other": "#999999"}


def datamap_figures(measures: dict, *, title: str = "Data map") -> list[FigureData]:
    """The scatter plot and the histograms; [] without matplotlib.

    ``measures``: ``confidence``, ``variability``, ``correctness`` (lists, one value per row), ``points`` (record
    points K), optionally ``guids`` (the rows' ids, for the CSV data) and ``thresholds`` (``ambiguous_variability_at_least``, ``hard_confidence_at_most``,
    ``easy_confidence_at_least``).
    """
    if not available():
        return []
    return [_scatter(measures, title), _histograms(measures)]


def _scatter(measures: dict, title: str) -> FigureData:
    conf, var, corr = measures["confidence"], measures["variability"], measures["correctness"]
    n = len(conf)
    index = list(range(n))
    sampled = n > MAX_SCATTER_POINTS
    if sampled:
        index = sorted(random.Random(0).sample(index, MAX_SCATTER_POINTS))
    with _style():
        from matplotlib import colormaps

        fig = _new_figure(6.4, 4.6)
        ax = fig.add_subplot(1, 1, 1)
        levels = sorted({round(corr[i], 6) for i in index})
        cmap = colormaps["coolwarm_r"]
        for level in levels:
            chosen = [i for i in index if round(corr[i], 6) == level]
            ax.scatter([var[i] for i in chosen], [conf[i] for i in chosen], s=6 if n > 2000 else 14, alpha=0.6,
                       color=cmap(level), linewidths=0, label=f"{level:.2f}", rasterized=n > 2000)
        edges = measures.get("thresholds") or {}
        if "ambiguous_variability_at_least" in edges:
            ax.axvline(edges["ambiguous_variability_at_least"], color="#E69F00", lw=1, ls="--")
            ax.axhline(edges["hard_confidence_at_most"], color="#0072B2", lw=1, ls="--")
            ax.axhline(edges["easy_confidence_at_least"], color="#D55E00", lw=1, ls="--")
        box = dict(boxstyle="round,pad=0.3", fc="white", lw=1.2)
        ax.annotate("ambiguous", xy=(0.88, 0.5), xycoords="axes fraction", ha="center", va="center",
                    bbox={**box, "ec": "#E69F00"})
        ax.annotate("easy-to-learn", xy=(0.2, 0.92), xycoords="axes fraction", ha="center", va="center",
                    bbox={**box, "ec": "#D55E00"})
        ax.annotate("hard-to-learn", xy=(0.2, 0.08), xycoords="axes fraction", ha="center", va="center",
                    bbox={**box, "ec": "#0072B2"})
        ax.set_xlabel("variability (std of the gold-label probability)")
        ax.set_ylabel("confidence (mean gold-label probability)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(left=0)
        ax.set_title(title)
        if len(levels) <= 12:
            ax.legend(title="correctness", loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=2)
    caption = (f"One point per training row{' (a seeded sample of ' + str(MAX_SCATTER_POINTS) + ')' if sampled else ''}"
               f" over {measures['points']} record points; dashed lines: the regions' edges (33% of the rows each).")
    guids = measures.get("guids") or list(range(n))
    rows = [[guids[i], var[i], conf[i], corr[i]] for i in index]
    return FigureData("datamap_scatter", "Data map", caption, fig,
                      _csv(["guid", "variability", "confidence", "correctness"], rows))


def _histograms(measures: dict) -> FigureData:
    with _style():
        fig = _new_figure(9.0, 2.8)
        for i, (key, colour) in enumerate((("confidence", "#622a87"), ("variability", "#009E73"),
                                           ("correctness", "#86bf91"))):
            ax = fig.add_subplot(1, 3, i + 1)
            values = measures[key]
            k = measures["points"]
            if key == "correctness":  # K + 1 possible values: one bar each
                ax.hist(values, bins=[(i - 0.5) / k for i in range(k + 2)], color=colour, rwidth=0.8)
            else:
                ax.hist(values, bins=30, range=(0.0, 1.0) if key == "confidence" else None, color=colour)
            ax.set_xlabel(key)
            if i == 0:
                ax.set_ylabel("rows")
    n = len(measures["confidence"])
    guids = measures.get("guids") or list(range(n))
    rows = [[guids[i], measures["confidence"][i], measures["variability"][i], measures["correctness"][i]] for i in range(n)]
    return FigureData("datamap_histograms", "Distributions", "Rows per value of each measure.", fig,
                      _csv(["guid", "confidence", "variability", "correctness"], rows))


def _examples_table(title: str, anchor: str, rows: list[dict], note: str) -> str:
    if not rows:
        return ""
    pair = any(r.get("text_b") is not None for r in rows)
    head = ["guid", "label", "region", "confidence", "variability", "correctness", "text"] + (["text_b"] if pair else [])
    body = []
    for r in rows:
        cells = [f"<td>{_e(r['guid'])}</td>", f"<td>{_e(r['label'])}</td>", f"<td>{_e(r['region'])}</td>",
                 f"<td>{r['confidence']:.3f}</td>", f"<td>{r['variability']:.3f}</td>", f"<td>{r['correctness']:.2f}</td>",
                 f'<td class="text">{_e(r["text"])}</td>']
        if pair:
            cells.append(f'<td class="text">{_e(r.get("text_b"))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    header = "".join(f'<th scope="col">{_e(h)}</th>' for h in head)
    return (f'<section id="{_e(anchor)}"><h2>{_e(title)}</h2><p class="note">{_e(note)}</p><div class="table-wrap">'
            f'<table><thead><tr>{header}</tr></thead><tbody>{"".join(body)}</tbody></table></div></section>')


def datamap_html(summary: dict, ambiguous: list[dict], hardest: list[dict], figures: list[FigureData], *,
                 figure_note: str | None = None) -> str:
    """``datamap.html``: cards, the figures (embedded), the most ambiguous and hardest rows with text and label.

    ``summary``: ``task``, ``source``, ``rows``, ``points``, ``regions`` (name -> rows), ``means`` (measure -> mean),
    ``train_accuracy`` (per record point), ``thresholds``, ``notes`` (list of str). Example rows: ``guid``,
    ``label``, ``region``, ``confidence``, ``variability``, ``correctness``, ``text`` (and ``text_b``).
    """
    cards = [("training rows", f"{summary['rows']:,}"), ("record points", str(summary["points"]))]
    for region, count in summary["regions"].items():
        cards.append((region, f"{count:,} ({100 * count / max(1, summary['rows']):.1f}%)"))
    means = summary.get("means") or {}
    if means:
        cards.append(("mean confidence / variability", f"{means['confidence']:.3f} / {means['variability']:.3f}"))
    accuracy = summary.get("train_accuracy") or []
    if accuracy:
        cards.append(("train accuracy at the points", " → ".join(f"{100 * a:.1f}" for a in accuracy) + " %"))
    edges = summary.get("thresholds") or {}
    method = [
        "confidence: the mean over record points of the softmax probability of the gold label;",
        "variability: its population standard deviation over record points (ddof=0, as the reference code);",
        "correctness: the fraction of record points at which the row is predicted right (argmax = gold);",
        f"regions: the {100 * edges.get('share', 0.33):.0f}% of rows of highest variability (ambiguous), then of lowest"
        " confidence (hard-to-learn) and of highest confidence (easy-to-learn) among the rest; as the 33% subsets of"
        " Swayamdipta et al. (2020).",
    ]
    notes = "".join(f"<li>{_e(n)}</li>" for n in summary.get("notes") or [])
    style = ("<style>td.text { white-space: normal; text-align: left; min-width: 24em; max-width: 60em; }"
             " td:nth-child(2) { text-align: left; }</style>")
    body = f"""{style}
{_card_section(cards)}
{f'<div class="warn"><ul>{notes}</ul></div>' if notes else ''}
{_figures(figures, figure_note)}
{_examples_table("Most ambiguous rows", "ambiguous", ambiguous, "Highest variability first: the model's confidence in the gold label moved most during training.")}
{_examples_table("Hardest rows", "hardest", hardest, "Lowest confidence first: the region where the paper finds most labelling errors (Swayamdipta et al. 2020).")}
<section id="method"><h2>How the map was made</h2><ul>{''.join(f'<li>{_e(m)}</li>' for m in method)}</ul></section>"""
    sub = f"task {_e(summary.get('task'))} · dynamics from <code>{_e(summary.get('source'))}</code>"
    return _page(f"Data map: {summary.get('task')}", "Data map", sub, body)
