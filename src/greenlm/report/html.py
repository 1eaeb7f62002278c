"""``report.html``: one self-contained page (figures and data embedded, no network), sortable, phone-readable.

Everything is inline: PNG figures and their CSV data as ``data:`` URIs, the CSS and a few lines of
JavaScript (sort the table by any column; check that every figure decoded and say so in the page).
A Content-Security-Policy forbids any other source, so the page cannot reach the network even by
mistake.
"""

from __future__ import annotations

import base64
import html
import struct
import time

import greenlm
from greenlm.report.class_figures import CONFUSION_STEM  # these go beside their model's per-class table
from greenlm.report.markdown import PROTOCOL_KEYS, _sci, run_totals
from greenlm.report.pareto import TRADEOFF_AXES, fronts_by_noise
from greenlm.report.provenance import eval_split_of, load_sentence, selection_html, truncation_sentence
from greenlm.report.tables import COLUMNS, OTHER_SPLIT_HEADER, other_split_cells, other_splits_note, table_notes
from greenlm.report.target import COST_HEADER, cost_cells, cost_rows

_CSS = """
:root { --fg:#1b1f24; --muted:#57606a; --bg:#ffffff; --panel:#f6f8fa; --line:#d0d7de; --accent:#0072B2;
  --warn-bg:#fff8e5; --warn-line:#d4a72c; --front:#e6f4ea; }
@media (prefers-color-scheme: dark) {
  :root { --fg:#e6edf3; --muted:#9da7b3; --bg:#0d1117; --panel:#161b22; --line:#30363d; --accent:#58a6ff;
    --warn-bg:#2b2111; --warn-line:#9e6a03; --front:#12261e; }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin:0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg);
  background:var(--bg); }
header, main, footer { max-width: 1200px; margin: 0 auto; padding: 0 16px; }
header { padding-top: 20px; }
h1 { font-size: 1.5rem; margin: 0 0 4px; overflow-wrap: anywhere; }
h3 { font-size: 1rem; margin: 12px 0 6px; }
h2 { font-size: 1.2rem; margin: 28px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.sub { color: var(--muted); margin: 0; overflow-wrap: anywhere; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .92em; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 220px), 1fr)); gap: 10px;
  margin-top: 16px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .k { color: var(--muted); font-size: .82rem; }
.card .v { font-size: 1.15rem; font-weight: 600; overflow-wrap: anywhere; }
.warn { background: var(--warn-bg); border-left: 4px solid var(--warn-line); padding: 8px 12px; margin-top: 16px;
  border-radius: 4px; }
.warn ul { margin: 4px 0; padding-left: 20px; }
.table-wrap { overflow-x: auto; -webkit-overflow-scrolling: touch; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: .88rem; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2), th:nth-child(3), td:nth-child(3)
  { text-align: left; }
th:first-child, td:first-child { position: sticky; left: 0; background: var(--bg); z-index: 1; }
thead th { background: var(--panel); position: sticky; top: 0; z-index: 2; }
thead th:first-child { z-index: 3; background: var(--panel); }
th button { font: inherit; font-weight: 600; color: inherit; background: none; border: 0; padding: 0; cursor: pointer;
  text-align: inherit; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; font-size: .7em; }
th[aria-sort="descending"] button::after { content: " \\25BC"; font-size: .7em; }
tr.front td:first-child { box-shadow: inset 4px 0 0 #009E73; }
tr.incomplete td { color: var(--muted); font-style: italic; }
.badge { display: inline-block; font-size: .72rem; font-style: normal; padding: 0 6px; border-radius: 8px;
  border: 1px solid var(--warn-line); margin-left: 4px; }
.badge.target { border-color: #009E73; }
.note { color: var(--muted); font-size: .85rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 520px), 1fr)); gap: 16px; }
figure { margin: 0; background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 10px; }
figure img { display: block; width: 100%; height: auto; background: #fff; border-radius: 4px; }
figcaption { font-size: .85rem; color: var(--muted); margin-top: 6px; }
.failed { padding: 24px; text-align: center; color: #b42318; }
ul.fronts { padding-left: 20px; }
footer { color: var(--muted); font-size: .8rem; padding-top: 24px; padding-bottom: 24px; }
@media (max-width: 600px) { body { font-size: 14px; } h1 { font-size: 1.25rem; } th, td { padding: 5px 6px; } }
@media print { .table-wrap { overflow: visible; border: 0; } th:first-child, td:first-child { position: static; } }
"""

# Sort on a click on a column title (numbers by value, text alphabetically, missing figures last), then
# check every figure: an image that did not decode is replaced by a message, and the page records how
# many rendered in <body data-figures-rendered="k/n"> and in #render-check (read by the browser test).
_JS = """
(function () {
  var table = document.getElementById('models-table');
  if (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.querySelector('button').addEventListener('click', function () {
        var ascending = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.setAttribute('aria-sort', 'none'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute('data-value'), y = b.cells[col].getAttribute('data-value');
          if (x === '' && y === '') return 0;
          if (x === '') return 1;
          if (y === '') return -1;
          var nx = Number(x), ny = Number(y);
          var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
          return ascending ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }
  // A sorted view can be linked: report.html#sort=throughput_examples_per_s:desc
  var wanted = /^#sort=([\\w.-]+)(?::(asc|desc))?$/.exec(window.location.hash);
  if (table && wanted) {
    var th = table.tHead.querySelector('th[data-key="' + wanted[1] + '"]');
    if (th) {
      th.querySelector('button').click();
      if (wanted[2] === 'desc') th.querySelector('button').click();
    }
  }
  function check() {
    var images = document.querySelectorAll('figure img');
    var ok = 0;
    Array.prototype.forEach.call(images, function (img) {
      if (img.complete && img.naturalWidth > 0) { ok += 1; img.setAttribute('data-rendered', 'yes'); }
      else {
        img.setAttribute('data-rendered', 'no');
        var p = document.createElement('p');
        p.className = 'failed';
        p.textContent = 'This figure could not be shown: ' + img.alt;
        img.parentNode.insertBefore(p, img);
      }
    });
    var mark = ok + '/' + images.length;
    document.body.setAttribute('data-figures-rendered', mark);
    var out = document.getElementById('render-check');
    if (out) out.textContent = 'figures rendered: ' + mark;
  }
  if (document.readyState === 'complete') check(); else window.addEventListener('load', check);
})();
"""


def _e(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, for the <img> attributes (no layout jump while loading)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _sort_value(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if key == "accuracy":
        return repr(100 * value)
    if isinstance(value, dict):  # the paired difference from the teacher: sort by the difference
        return repr(value.get("difference"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return str(value)


def _th(key: str, title: str) -> str:
    return f'<th scope="col" aria-sort="none" data-key="{_e(key)}"><button type="button">{_e(title)}</button></th>'


def _table(report: dict, fronts: dict[str, list[str]]) -> str:
    on_any_front = {m for names in fronts.values() for m in names}
    head = "".join(_th(key, title) for key, title, _ in COLUMNS)
    body = []
    for row in report["rows"]:
        status = row.get("report_status", "measured")
        classes = []
        if row["model"] in on_any_front:
            classes.append("front")
        if status != "measured":
            classes.append("incomplete")
        cells = []
        for key, _, fmt in COLUMNS:
            if key == "model":
                badge = f'<span class="badge">{_e(status)}</span>' if status != "measured" else ""
                if row.get("meets_target") is True:
                    badge += '<span class="badge target">meets target</span>'
                text = _e(row["model"]) + badge
            elif key == "accuracy_vs_teacher" and row.get("method") == "finetune":
                text = "(reference)"
            elif row.get(key) is None and key != "method":
                text = "n/a"
            else:
                text = _e(fmt(row))
            cells.append(f'<td data-value="{_e(_sort_value(row, key))}">{text}</td>')
        cls = f' class="{" ".join(classes)}"' if classes else ""
        body.append(f'<tr{cls} data-model="{_e(row["model"])}">{"".join(cells)}</tr>')
    return (f'<div class="table-wrap"><table id="models-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _cards(report: dict, fronts: dict[str, list[str]]) -> str:
    rows = [r for r in report["rows"] if r.get("report_status", "measured") == "measured"]
    cards = []
    teacher = rows[0] if rows and rows[0]["method"] == "finetune" else None
    if teacher and teacher.get("accuracy") is not None:
        cards.append(("teacher accuracy", f"{100 * teacher['accuracy']:.2f}% ({teacher['model']})"))
    fastest = max((r for r in rows if r.get("speedup_x") is not None and r.get("performance_retained_pct") is not None),
                  key=lambda r: r["speedup_x"], default=None)
    if fastest is not None and teacher is not None and fastest is not teacher:
        cards.append(("fastest model", f"{fastest['model']}: {fastest['speedup_x']:.2f}x,"
                                       f" {fastest['performance_retained_pct']:.1f}% retained"))
    smallest = max((r for r in rows if r.get("size_compression_x") is not None and r.get("size_mb") is not None),
                   key=lambda r: r["size_compression_x"], default=None)
    if smallest is not None and teacher is not None and smallest is not teacher:
        cards.append(("smallest on disk", f"{smallest['model']}: {smallest['size_mb']:.3g} MB"
                                          f" ({smallest['size_compression_x']:.1f}x smaller)"))
    totals = run_totals(report["rows"])
    scope = "ran" if totals["known"] else "all"
    where = "paid in this run" if totals["known"] else "of every stage"
    cards.append((f"energy {where}", _sci(totals[f"{scope}_energy_kwh"], "kWh")))
    cards.append((f"CO2e {where}", _sci(totals[f"{scope}_co2e_kg"], "kg")))
    if totals[f"{scope}_cost_usd"] is not None:
        cards.append((f"cost {where}", _sci(totals[f"{scope}_cost_usd"], "USD")))
    return _card_section(cards)


def _card_section(cards: list[tuple[str, str]]) -> str:
    items = "".join(f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div></div>'
                    for k, v in cards)
    return f'<section class="cards">{items}</section>'




def _figure(fig) -> str:
    png = fig.png()
    size = _png_size(png)
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    csv_link = (f' <a download="{_e(fig.stem)}.csv" href="{_data_uri("text/csv", fig.csv.encode("utf-8"))}">'
                "data (CSV)</a>")
    return (f'<figure id="fig-{_e(fig.stem)}"><img src="{_data_uri("image/png", png)}" alt="{_e(fig.title)}"'
            f'{dims}><figcaption><strong>{_e(fig.title)}.</strong> {_e(fig.caption)}{csv_link}</figcaption>'
            "</figure>")


def _per_class(rows: list[dict], figures: list, split: str = "dev") -> str:
    """Each measured model's precision, recall and F1 per class (on ``split``, the reported one), beside its
    confusion-matrix figure."""
    shown = [r for r in rows if r.get("per_class")]
    if not shown:
        return ""
    by_stem = {fig.stem: fig for fig in figures}
    head = "".join(f"<th>{h}</th>" for h in ("class", "precision %", "recall %", "F1 %", "support", "predicted"))
    parts = []
    for row in shown:
        body = "".join(f"<tr><td>{_e(c['label'])}</td><td>{100 * c['precision']:.1f}</td>"
                       f"<td>{100 * c['recall']:.1f}</td><td>{100 * c['f1']:.1f}</td><td>{c['support']}</td>"
                       f"<td>{c['predicted']}</td></tr>" for c in row["per_class"])
        fig = by_stem.get(f"{CONFUSION_STEM}{row['model']}")
        parts.append(f'<div><h3>{_e(row["model"])}</h3><div class="table-wrap"><table class="per-class"><thead>'
                     f'<tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{_figure(fig) if fig else ""}</div>')
    return (f'<section id="per-class"><h2>Per class ({_e(split)})</h2><p class="note">Precision, recall and F1 of'
            f" each class; support: its {_e(split)} rows; predicted: how often the model chose it. A rare class the"
            " model barely learnt"
            f' shows here, not in the accuracy.</p><div class="grid">{"".join(parts)}</div></section>')


def _other_splits(report: dict) -> str:
    """Each model's figures on the splits measured beside the reported one (test, when the run reports on dev)."""
    body = other_split_cells(report)
    if not body:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in OTHER_SPLIT_HEADER)
    rows = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>" for cells in body)
    splits = ", ".join(dict.fromkeys(cells[1] for cells in body))
    return (f'<section id="other-splits"><h2>Also measured: {_e(splits)}</h2><div class="table-wrap"><table><thead>'
            f'<tr>{head}</tr></thead><tbody>{rows}</tbody></table></div><p class="note">'
            f"{_e(other_splits_note(report))}</p></section>")


def _figures(figures: list, note: str | None = None) -> str:
    if note:
        return f'<section id="figures"><h2>Figures</h2><p class="note">{_e(note)}</p></section>'
    if not figures:
        return ""
    items = [_figure(fig) for fig in figures if not fig.stem.startswith(CONFUSION_STEM)]
    return f'<section id="figures"><h2>Figures</h2><div class="grid">{"".join(items)}</div></section>'


def _pricetag(report: dict) -> str:
    rows = []
    for r in report["rows"]:
        wall = "n/a" if r.get("stage_wall_s") is None else f"{r['stage_wall_s']:.1f}"
        rows.append(f"<tr><td>{_e(r['model'])}</td><td>{_e(r['method'])}</td><td>{_e(r.get('status') or 'n/a')}</td>"
                    f"<td>{_e(_sci(r.get('stage_energy_kwh'), ''))}</td><td>{_e(_sci(r.get('stage_co2e_kg'), ''))}</td>"
                    f"<td>{_e(_sci(r.get('stage_cost_usd'), ''))}</td><td>{wall}</td>"
                    f"<td>{_e(_sci(r.get('cumulative_co2e_kg'), ''))}</td>"
                    f"<td>{_e(r.get('energy_source') or 'n/a')}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("stage", "method", "status", "energy kWh", "CO2e kg", "cost USD",
                                              "wall s", "CO2e kg along its chain", "energy source"))
    return (f'<section id="pricetag"><h2>Price tag</h2><div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div><p class="note">What producing each model cost: its stage'
            " alone, and along its chain of stages (teacher fine-tuning included). A reused stage shows its original"
            " cost; it was not paid again in this run.</p></section>")


def _load_note(machine: dict) -> str:
    """Beside the speed columns: the machine's load while timing (a warning box when it was shared)."""
    load = load_sentence(machine)
    if not load:
        return ""
    if (machine.get("load") or {}).get("busy"):
        return f'<p class="warn" role="note" id="load-note"><strong>Speed and speedup:</strong> {_e(load)}.</p>'
    return f'<p class="note" id="load-note">Speed and speedup: {_e(load)}.</p>'


def _target(record: dict | None) -> str:
    if not record:
        return ""
    met = ", ".join(record["met_by"]) or "no model"
    closest = f" The closest is chosen thus: {record['closest_rule']}." if record.get("closest_rule") else ""
    rows = "".join(f"<tr><td>{_e(label)}</td>" + "".join(f"<td>{_e(c)}</td>" for c in cost_cells(values)) + "</tr>"
                   for label, values in cost_rows(record))
    table = ""
    if rows:
        head = "<th></th>" + "".join(f"<th>{_e(h)}</th>" for h in COST_HEADER)
        table = (f'<p class="note">What producing it cost:</p><div class="table-wrap"><table><thead><tr>{head}</tr>'
                 f"</thead><tbody>{rows}</tbody></table></div>")
    return (f'<section id="target"><h2>Target</h2><p>The recipe\'s target: {_e(record["describe"])}.</p>'
            f'<p><strong>{_e(record["summary"])}</strong></p><p class="note">Met by: {_e(met)}.{_e(closest)}</p>'
            f"{table}</section>")


def report_html(report: dict, fronts: dict[str, list[str]], figures: list, *, notes: list[str],
                figure_note: str | None = None) -> str:
    machine = report.get("machine") or {}
    protocol = report.get("protocol") or {}
    title = f"greenlm run {report['run']}"
    sub = (f"task <code>{_e(report['task'])}</code> · teacher <code>{_e(report['teacher'])}</code>"
           f" · {_e(machine.get('cpu') or 'unknown machine')}, {_e(machine.get('threads') or '?')} thread(s)")
    warn = ""
    if notes:
        warn = ('<section class="warn" role="note"><strong>Incomplete run.</strong><ul>'
                + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul></section>")
    by_noise = fronts_by_noise(report["rows"])
    front_items = "".join(
        f"<li>accuracy vs {_e(axis.title)}: <strong>"
        + ", ".join(_e(m) + (" (= by noise only)" if m in by_noise[axis.key] else "") for m in fronts[axis.key])
        + "</strong></li>" for axis in TRADEOFF_AXES if fronts.get(axis.key))
    noise_note = (" <em>= by noise only</em>: on the front only by an accuracy gain over the teacher within noise (the"
                  " 95% interval of the paired difference holds 0); no more accurate than the teacher on this evidence."
                  if any(by_noise.values()) else "")
    fronts_html = ('<p class="note">Pareto front (no other model is both more accurate and better on the axis;'
                   f' marked with a green bar in the table):</p><ul class="fronts">{front_items}</ul>'
                   f'<p class="note">{noise_note}</p>' if front_items else "")
    marks = "".join(f'<p class="note">{_e(n)}</p>' for n in table_notes(report))
    method_items = [f"<li>{_e(k.replace('_', ' '))}: {_e(protocol[k])}</li>" for k in PROTOCOL_KEYS if protocol.get(k)]
    load = load_sentence(machine)
    if load:
        method_items.insert(0, f"<li>{_e(load)}</li>")
    method_items.append(f"<li>energy sources: {_e(', '.join(report.get('energy_sources') or []) or 'n/a')}"
                        " (an <code>estimate:</code> source is a model of power, not a meter reading)</li>")
    method_items.append("<li>speed figures come from one measuring pass in one process on the same inputs</li>")
    if (report.get("train_filter") or {}).get("summary"):
        method_items.append(f"<li>training data: {_e(report['train_filter']['summary'])} (dev and test untouched)</li>")
    if truncation_sentence(report.get("truncation")):
        method_items.append(f"<li>truncation: {_e(truncation_sentence(report.get('truncation')))}</li>")
    body = f"""{_cards(report, fronts)}
{warn}
<section id="models"><h2>Models</h2>
{_table(report, fronts)}
{_load_note(machine)}
<p class="note">Accuracy on the {_e(report['task'])} {_e(eval_split_of(report))} set. Retained, compression and speedup are relative to the
fine-tuned teacher. Click a column title to sort.</p>
{marks}
{fronts_html}
</section>
{_other_splits(report)}
{_per_class(report["rows"], figures, eval_split_of(report))}
{_target(report.get("target"))}
{selection_html(report.get("selection") or [])}
{_figures(figures, figure_note)}
{_pricetag(report)}
<section id="method"><h2>How the figures were measured</h2><ul>{''.join(method_items)}</ul>
<p class="note">Report data from {_e(report.get('written_at_utc') or 'n/a')}.</p></section>"""
    return _page(title, f"greenlm run <code>{_e(report['run'])}</code>", sub, body)


def _page(title: str, heading: str, sub: str, body: str) -> str:
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
    written = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="generator" content="greenlm {_e(greenlm.__version__)}">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header><h1>{heading}</h1><p class="sub">{sub}</p></header>
<main>
{body}
<p id="render-check" hidden></p>
</main>
<footer>Written by greenlm {_e(greenlm.__version__)} · {_e(written)}</footer>
<script>{_JS}</script>
</body>
</html>
"""


def sweep_html(record: dict, curve: list[dict] | None, counts: dict, figure, notes: list[str]) -> str:
    """``sweep.html``: the budget/performance curve, the best trial and every trial (sortable)."""
    spec = record["spec"]
    metric = spec["metric"]
    paths = [s.split("=")[0].strip() for s in spec["search"]]
    cards = [("finished / pruned / failed", f"{counts['complete']} / {counts['pruned']} / {counts['failed']}")]
    done = [r for r in record["trials"] if r["state"] == "complete"]
    if done:
        best = max(done, key=lambda r: r["value"])
        cards.append((f"best dev {metric}", f"{100 * best['value']:.2f}% ({best['name']})"))
    spent = [r.get("energy_kwh") for r in record["trials"]]
    cards.append(("energy spent by the sweep", _sci(sum(spent), "kWh") if all(v is not None for v in spent) else "n/a"))
    if curve:
        cards.append((f"expected best of {curve[-1]['n']} trials", f"{100 * curve[-1]['expected_max']:.2f}%"
                                                                   f" ± {100 * curve[-1]['std']:.2f}"))
    body = [_card_section(cards)]
    if notes:
        body.append('<section class="warn" role="note"><ul>' + "".join(f"<li>{_e(n)}</li>" for n in notes)
                    + "</ul></section>")
    if figure is not None:
        body.append(_figures([figure]))
    titles = [("trial", "trial"), ("state", "state"), ("value", f"dev {metric}"), *[(p, p) for p in paths],
              ("energy_kwh", "energy kWh"), ("seconds", "seconds")]
    head = "".join(_th(k, t) for k, t in titles)
    rows = []
    for r in record["trials"]:
        cells = [(r["name"], r["name"]), (r["state"], r["state"]),
                 ("" if r["value"] is None else repr(r["value"]), "n/a" if r["value"] is None else f"{r['value']:.4f}")]
        for p in paths:
            v = r["params"].get(p)
            cells.append((repr(v) if isinstance(v, (int, float)) else str(v),
                          f"{v:.4g}" if isinstance(v, float) else str(v)))
        cells.append(("" if r.get("energy_kwh") is None else repr(r["energy_kwh"]), _sci(r.get("energy_kwh"))))
        cells.append(("" if r.get("seconds") is None else repr(r["seconds"]),
                      "n/a" if r.get("seconds") is None else f"{r['seconds']:.0f}"))
        cls = ' class="incomplete"' if r["state"] != "complete" else ""
        rows.append(f"<tr{cls}>" + "".join(f'<td data-value="{_e(v)}">{_e(t)}</td>' for v, t in cells) + "</tr>")
    body.append(f'<section id="models"><h2>Trials</h2><div class="table-wrap"><table id="models-table"><thead>'
                f'<tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div><p class="note">Each trial is a'
                ' run folder under trials/ with its own report. Click a column title to sort.</p></section>')
    search = "".join(f"<li><code>{_e(s)}</code></li>" for s in spec["search"])
    body.append(f'<section id="method"><h2>Search</h2><ul>{search}</ul><p class="note">Expected best dev {_e(metric)}'
                " among n trials: Dodge et al. 2019, sampling the finished trials with replacement. Energy: what the"
                " sweep had spent when its n-th trial finished, pruned and failed trials included."
                + (" With TPE the trials are not independent draws: the curve describes this sampler's trials."
                   if spec["sampler"] == "tpe" else "") + "</p></section>")
    sub = (f"recipe <code>{_e(spec['recipe']['name'])}</code> · objective: dev {_e(metric)} of stage"
           f" <code>{_e(spec['stage'])}</code> · {_e(spec['sampler'])} sampling"
           f"{' · median pruning' if spec['prune'] else ''}")
    return _page(f"greenlm sweep {record['name']}", f"greenlm sweep <code>{_e(record['name'])}</code>", sub,
                 "\n".join(body))
