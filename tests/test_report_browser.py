"""report.html as a person sees it: rendered by headless Chromium (Debian's `chromium`, installed by .ci/run).

A copy of the report gets a small script that, once the page has loaded, writes into the DOM
whether every image loaded, how much each figure is scaled on the page, and which elements reach
past the page's width outside a scroll container; `chromium --headless --dump-dom` prints that DOM.
"""
import html
import json
import os
import re
import shutil
import signal
import subprocess

import pytest

from bench.analysis.plots import MIN_FONT_PT
from conftest import run_cli
from test_stats import sweep

CHECK = """<script>
window.addEventListener('load', () => {
  const width = document.documentElement.clientWidth;
  const images = [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0,
                                                  scale: i.clientWidth / Math.max(1, i.naturalWidth)}));
  const overflow = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.getBoundingClientRect().right > width + 1 && !el.closest('.scroll'))
      overflow.push(el.tagName + (el.className && el.className.baseVal === undefined ? '.' + el.className : ''));
  }
  const out = document.createElement('pre');
  out.id = 'check';
  out.textContent = JSON.stringify({width, images, overflow, page: document.documentElement.scrollWidth});
  document.body.appendChild(out);
});
</script>"""
WIDTH = 1280
pytestmark = pytest.mark.process


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(page, timeout: int = 90) -> dict:
    """Load `page` in headless Chromium and return what the check script found; no process outlives it."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--window-size={WIDTH},900", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        dom, _ = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Chromium's helpers share the session: none is left behind
        except ProcessLookupError:
            pass
        proc.wait()
    found = re.search(r'<pre id="check">(.*?)</pre>', dom, re.S)
    assert found, f"the check script did not run; DOM starts {dom[:300]!r}"
    return json.loads(html.unescape(found.group(1)))


def test_report_renders_in_chromium_images_load_nothing_overflows(tmp_path):
    if chromium() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (.ci/run installs Debian's package)")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    results = tmp_path / "results"
    sweep(results)
    out = tmp_path / "out"
    proc = run_cli("analyze.py", str(results), "--out", str(out), "--quiet", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    page = tmp_path / "page.html"
    page.write_text((out / "report.html").read_text().replace("</body>", CHECK + "</body>"))
    found = render(page)
    assert found["width"] > 1000 and found["page"] <= found["width"], found
    assert not found["overflow"], found["overflow"][:10]
    assert len(found["images"]) >= 4 and all(i["ok"] for i in found["images"]), found["images"]
    # figures are drawn at 100 dpi; text of MIN_FONT_PT pt shown at `scale` is MIN_FONT_PT * scale * 100 / 96 pt
    smallest = min(MIN_FONT_PT * i["scale"] * 100 / 96 for i in found["images"])
    assert smallest >= 8, found["images"]
