"""Renders `segflow graph`'s Mermaid text with Mermaid itself (the npm package, in headless
Chromium) and checks that the picture has every node and every edge of the text.

usage: mermaid.py GRAPH.mmd MERMAID_MIN_JS SHOTS_DIR

Prints nothing and exits 0 when the drawing holds; else raises with what differed.
"""

import html
import os
import re
import sys
import tempfile
import time

from selenium.webdriver.common.by import By

from browser import chromium

graph_file, mermaid_js, shots = sys.argv[1:4]
with open(graph_file) as f:
    text = f.read()
edges = len(re.findall(r"^  \S+ --> \S+$", text, re.M))
nodes = len(text.splitlines()) - 1 - edges
if edges < 50 or nodes < 50:
    raise AssertionError(f"a small graph: {nodes} nodes, {edges} edges")

page = f"""<!doctype html><html><head><meta charset="utf-8">
<script src="file://{html.escape(mermaid_js)}"></script></head><body>
<pre class="mermaid" id="graph">{html.escape(text)}</pre>
<script>
mermaid.initialize({{ startOnLoad: false, securityLevel: "loose", maxTextSize: 1000000, maxEdges: 5000 }});
mermaid.run({{ querySelector: "#graph" }})
  .then(() => {{ document.body.dataset.done = "yes"; }})
  .catch((e) => {{ document.body.dataset.error = String(e); }});
</script></body></html>"""
with tempfile.NamedTemporaryFile("w", suffix=".html", delete=False) as f:
    f.write(page)
    path = f.name

driver = chromium(1600, 1200)
try:
    driver.get("file://" + path)
    deadline = time.monotonic() + 60
    body = driver.find_element(By.TAG_NAME, "body")
    while not (body.get_attribute("data-done") or body.get_attribute("data-error")):
        if time.monotonic() > deadline:
            raise AssertionError("Mermaid did not finish drawing in 60 s")
        time.sleep(0.2)
    if body.get_attribute("data-error"):
        raise AssertionError("Mermaid refused the graph: " + body.get_attribute("data-error"))
    drawn_nodes = driver.find_elements(By.CSS_SELECTOR, "#graph svg g.node")
    drawn_edges = driver.find_elements(By.CSS_SELECTOR, "#graph svg .edgePaths path")
    if len(drawn_nodes) != nodes or len(drawn_edges) != edges:
        raise AssertionError(
            f"drew {len(drawn_nodes)} nodes and {len(drawn_edges)} edges of {nodes} and {edges}"
        )
    labels = " ".join(n.get_attribute("textContent") for n in drawn_nodes)
    for expected in ["customer_profile", "rfm.sql", " rows"]:
        if expected not in labels:
            raise AssertionError(f"no '{expected}' in the drawn labels")
    driver.save_screenshot(os.path.join(shots, "lineage.png"))
finally:
    driver.quit()
    os.unlink(path)
