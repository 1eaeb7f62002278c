"""report.html in a real headless browser (Debian's chromium): the table and every figure render, the sort
works, the page fits a phone's width; screenshots are kept under test-artifacts/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _report_runs import MODELS, make_run

from greenlm.report.regenerate import generate_report

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)),
               None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH (Debian: apt-get install -y chromium;"
                                                        " .ci/run installs it)")


def browser(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000"]
    result = subprocess.run([BROWSER, *flags, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("html"))
    outcome = generate_report(run, ("html",), on_note=lambda _: None)
    figures = outcome.files[0].read_text().count("<figure ")
    return run / "report.html", figures


def test_table_and_every_figure_render(page, tmp_path):
    path, figures = page
    dom = browser(tmp_path, "--dump-dom", path.as_uri()).stdout
    assert figures == 7
    assert f'data-figures-rendered="{figures}/{figures}"' in dom  # written by the page once every <img> decoded
    assert dom.count('data-rendered="yes"') == figures and 'data-rendered="no"' not in dom
    rows = re.findall(r'<tr[^>]*data-model="([^"]+)"', dom)
    assert rows == list(MODELS)
    assert 'class="failed"' not in dom


def test_sorted_view_from_the_address(page, tmp_path):
    path, _ = page
    dom = browser(tmp_path, "--dump-dom", path.as_uri() + "#sort=throughput_examples_per_s:desc").stdout
    rows = re.findall(r'<tr[^>]*data-model="([^"]+)"', dom)
    assert rows == sorted(MODELS, key=lambda m: -MODELS[m][3])
    assert re.search(r'aria-sort="descending" data-key="throughput_examples_per_s"', dom)
    dom = browser(tmp_path, "--dump-dom", path.as_uri() + "#sort=model:asc").stdout
    assert re.findall(r'<tr[^>]*data-model="([^"]+)"', dom) == sorted(MODELS)


def test_fits_a_phone_and_screenshots_are_kept(page, tmp_path):
    path, _ = page
    # the page in a 390 px frame (an iPhone's width): nothing may push the page wider than the screen
    wrapper = tmp_path / "phone.html"
    wrapper.write_text(f"""<!doctype html><html><body style="margin:0">
<iframe id="f" src="{path.as_uri()}" style="width:390px;height:800px;border:0"></iframe>
<p id="out">pending</p>
<script>
document.getElementById('f').addEventListener('load', function () {{
  var d = this.contentDocument.documentElement;
  document.getElementById('out').textContent = 'page-width=' + d.scrollWidth + ' frame-width=' + d.clientWidth;
}});
</script></body></html>""")
    dom = browser(tmp_path, "--allow-file-access-from-files", "--dump-dom", wrapper.as_uri()).stdout
    found = re.search(r"page-width=(\d+) frame-width=(\d+)", dom)
    assert found, dom[-500:]
    assert int(found.group(1)) <= int(found.group(2))
    ARTIFACTS.mkdir(exist_ok=True)
    for name, size in (("report_html_phone.png", "412,2200"), ("report_html_desktop.png", "1280,2400")):
        target = ARTIFACTS / name
        target.unlink(missing_ok=True)
        browser(tmp_path, f"--window-size={size}", f"--screenshot={target}", path.as_uri())
        assert target.is_file() and target.stat().st_size > 20_000  # a page with figures, not a blank frame
