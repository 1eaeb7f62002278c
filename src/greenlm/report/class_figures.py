"""The confusion matrix of one model on the reported split, as a figure: counts, shaded by the share of each true class (so a
rare class reads as clearly as a common one), rows the true classes, columns the predictions."""

from __future__ import annotations

from greenlm.report.figure_style import FigureData, _csv, _new_figure, _style

CONFUSION_STEM = "confusion_"


def confusion_figure(model: str, matrix: dict | None, split: str = "dev") -> FigureData | None:
    """``matrix``: ``{"labels": [...], "counts": [[...]]}`` (a report row's ``confusion_matrix``, on ``split``);
    None: nothing."""
    if not matrix or not matrix.get("counts"):
        return None
    labels = [str(label) for label in matrix["labels"]]
    counts = matrix["counts"]
    k = len(labels)
    shares = [[v / sum(row) if sum(row) else 0.0 for v in row] for row in counts]
    side = min(7.0, 2.2 + 0.55 * k)
    with _style():
        fig = _new_figure(side + 0.9, side)
        ax = fig.add_subplot()
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.grid(False)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{counts[i][j]}", ha="center", va="center", fontsize=8 if k <= 8 else 6,
                        color="white" if shares[i][j] > 0.6 else "#111111")
        ax.set_xticks(range(k), labels, rotation=45 if max(map(len, labels)) > 4 else 0, ha="right" if
                      max(map(len, labels)) > 4 else "center")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{model}: confusion matrix ({split})")
        fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    rows = [[labels[i], labels[j], counts[i][j], shares[i][j]] for i in range(k) for j in range(k)]
    return FigureData(f"{CONFUSION_STEM}{model}", f"Confusion matrix of {model}",
                      f"{model} on {split}: counts of each true class (rows) by predicted class (columns); the shade is"
                      " the share of the true class's rows, so a rare class that is barely learnt stands out.",
                      fig, _csv(["true", "predicted", "count", "share_of_true"], rows))
