"""The `dvc plots` page in headless Chromium with the network off.

plots_page/build.py builds an HTML template with vega, vega-lite and vega-embed inlined and sets
plots.html_template in .dvc/config.local; these tests render `dvc plots show` / `dvc plots diff`
with it and check, in a browser that cannot reach any network, that every chart is drawn, every
image loads and nothing is logged as an error. Chromium is driven over the DevTools protocol on a
pipe (--remote-debugging-pipe): no chromedriver, no Python packages beyond the project's own.

Each page's screenshot is saved under the test's tmp folder and its path printed (`pytest -s`) and
recorded as the test's `screenshot` property. PLOTS_PAGE_SCREENSHOT=<file.png> also saves the
`dvc plots show` page there in 256 colours; docs/plots_page.png is made with

    PLOTS_PAGE_SCREENSHOT=docs/plots_page.png pytest tests/test_plots_page.py -k show
"""

import base64
import contextlib
import csv
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from configobj import ConfigObj
from conftest import ROOT, copy_project, sh
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAGE_WIDTH = 1400
RENDER_TIMEOUT_S = 60
# URL schemes a page may load from with the network off; anything else is a network request.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome-error:")


def chromium_binary() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def configured_template() -> tuple[str, Path] | None:
    """(config value, template file) from the checkout's .dvc/config.local, if the page was built."""
    # DVC reads its config files with configobj.
    value = ConfigObj(str(ROOT / ".dvc" / "config.local")).get("plots", {}).get("html_template")
    if not value:
        return None
    path = Path(value) if os.path.isabs(value) else ROOT / ".dvc" / value
    return (value, path) if path.is_file() else None


@pytest.fixture(scope="module")
def chromium():
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium, or set CHROMIUM=<binary>)")
    return binary


@pytest.fixture
def offline_project(tmp_path):
    """The project copy with the built template configured the way the checkout has it."""
    template = configured_template()
    if template is None:
        pytest.skip(
            "offline plots template not built: run `npm ci --prefix plots_page && python plots_page/build.py`"
        )
    value, path = template
    project = copy_project(tmp_path / "project")
    if not os.path.isabs(value):
        target = (project / ".dvc" / value).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    sh("dvc", "config", "--local", "plots.html_template", value, cwd=project)
    return project


class DevTools:
    """A minimal Chrome DevTools protocol client on --remote-debugging-pipe (fds 3 and 4)."""

    def __init__(self, binary: str, profile: Path):
        to_browser_read, self._write = os.pipe()
        self._read, from_browser_write = os.pipe()

        def pipes_to_3_and_4():
            reading, writing = os.dup(to_browser_read), os.dup(from_browser_write)
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--mute-audio",
            f"--user-data-dir={profile}",
            # Network off, twice over: no host name resolves, and every request goes to a proxy
            # that does not exist (port 9 on loopback).
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            "--allow-file-access-from-files",
            f"--window-size={PAGE_WIDTH},1000",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.log = profile.parent / "chromium.log"
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [binary, *flags],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            pass_fds=(3, 4),
            preexec_fn=pipes_to_3_and_4,  # noqa: PLW1509 (single-threaded test process)
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def close(self):
        with contextlib.suppress(AssertionError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._read, self._write):
            os.close(fd)
        self._log_file.close()

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._read], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no answer from Chromium in time; its log:\n{self.log.read_text()}")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise AssertionError(f"Chromium closed the DevTools pipe; its log:\n{self.log.read_text()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout=30):
        self._next_id += 1
        request = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        os.write(self._write, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def pump(self, seconds: float):
        """Collect the events that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            ready, _, _ = select.select([self._read], [], [], max(deadline - time.monotonic(), 0))
            if not ready and b"\0" not in self._buffer:
                return
            self.events.append(self._receive(deadline + 5))


# Run in the page with the ids of DVC's chart divs: what is drawn in them. vega-embed replaces a
# div's content with Vega's <canvas class="marks"> (or <svg class="marks">); a chart is drawn when
# that has a size and, for a canvas, some pixels are not the white background (an svg: has paths).
PAGE_STATE_JS = r"""
((ids) => {
  const charts = ids.map(id => {
    const div = document.getElementById(id);
    const canvas = div && div.querySelector("canvas.marks"), svg = div && div.querySelector("svg.marks");
    let inked = 0;
    if (canvas && canvas.width && canvas.height) {
      const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 0; i < pixels.length; i += 4)
        if (pixels[i + 3] && (pixels[i] < 250 || pixels[i + 1] < 250 || pixels[i + 2] < 250)) inked++;
    }
    const box = canvas || svg ? (canvas || svg).getBoundingClientRect() : {width: 0, height: 0};
    return {id, found: !!div, element: canvas ? "canvas" : svg ? "svg" : null, width: box.width,
            height: box.height, inked: svg ? svg.querySelectorAll("path").length : inked};
  });
  const images = [...document.images].map(img => ({
    src: img.getAttribute("src"), complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
    revision: img.parentElement.querySelector("p") && img.parentElement.querySelector("p").textContent}));
  return {charts, images, vegaEmbed: typeof vegaEmbed, ready: document.readyState};
})(IDS)
"""


def is_drawn(chart: dict) -> bool:
    return chart["element"] is not None and chart["width"] > 0 and chart["height"] > 0 and chart["inked"] > 0


def render(binary: str, page: Path, screenshot: Path, profile: Path) -> dict:
    """Open `page` offline; wait for its charts; return their state, the errors and the requests."""
    expression = PAGE_STATE_JS.replace("IDS", json.dumps(list(page_specs(page))))
    browser = DevTools(binary, profile)
    try:
        targets = browser.call("Target.getTargets")["targetInfos"]
        target = next(t["targetId"] for t in targets if t["type"] == "page")
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=session)
        browser.call(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
            session=session,
        )
        metrics = {"width": PAGE_WIDTH, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
        browser.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
        browser.call("Page.navigate", {"url": page.as_uri()}, session=session)

        deadline = time.monotonic() + RENDER_TIMEOUT_S
        while True:
            browser.pump(0.5)
            state = browser.call(
                "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
            )["result"].get("value")
            loaded = state and state["ready"] == "complete"
            settled = loaded and (
                # Without the libraries no chart will ever be drawn.
                state["vegaEmbed"] != "function"
                or (all(map(is_drawn, state["charts"])) and all(i["complete"] for i in state["images"]))
            )
            if settled or time.monotonic() > deadline:
                break
        browser.pump(1)  # late errors, e.g. from vega-embed's promises

        size = browser.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        metrics["height"] = int(size["height"]) + 1
        browser.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
        browser.pump(0.5)
        shot = browser.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.close()

    errors, warnings, requests, failed = [], [], [], []
    for event in browser.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            if params["type"] in ("error", "assert"):
                errors.append(f"console.{params['type']}: {text}")
            elif params["type"] == "warning":
                warnings.append(text)
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(f"exception: {details.get('exception', {}).get('description', details['text'])}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed":
            failed.append(f"{params.get('errorText')} ({params.get('type')})")
    return {
        **state,
        "errors": errors,
        "warnings": warnings,
        "network": [url for url in requests if not url.startswith(LOCAL_SCHEMES)],
        "failed": failed,
    }


def report_screenshot(record_property, screenshot: Path):
    record_property("screenshot", str(screenshot))
    print(f"screenshot: {screenshot}")


def save_small_copy(screenshot: Path, copy: Path):
    """The screenshot in 256 colours (a third of the size; the page is mostly flat colour)."""
    with Image.open(screenshot) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    copy.parent.mkdir(parents=True, exist_ok=True)
    small.save(copy, optimize=True)


def dvc_yaml_plots(project: Path) -> tuple[list[str], list[str]]:
    """The top-level plots of dvc.yaml: (names of Vega plots, paths of image plots)."""
    definitions = yaml.safe_load((project / "dvc.yaml").read_text())["plots"]
    charts = [next(iter(d)) for d in definitions if isinstance(d, dict)]
    images = [d for d in definitions if isinstance(d, str)]
    return charts, images


def html_id(name: str) -> str:
    """dvc_render's div id for a plot name (Renderer.remove_special_chars)."""
    return re.sub(r"[!@#$%^&*()\[\]{};,<>?\\/:.|`~=_+ ]", "_", name)


def page_specs(page: Path) -> dict[str, dict]:
    """The Vega-Lite spec DVC wrote for each chart div, by div id."""
    found = re.finditer(r"var spec = (.*?);\n\s*vegaEmbed\('#([^']+)'", page.read_text(), flags=re.S)
    return {m.group(2): json.loads(m.group(1)) for m in found}


def assert_page(state: dict, project: Path, page: Path, revisions: list[str], dvc_plots: list[str]):
    """Every chart drawn, every image loaded, both as many as `dvc <dvc_plots> --json` lists."""
    charts, images = dvc_yaml_plots(project)
    shown = json.loads(sh("dvc", *dvc_plots, "--json", cwd=project).stdout)["data"]
    vega_plots = [name for name, items in shown.items() if items[0]["type"] == "vega"]
    problems = []
    if state["vegaEmbed"] != "function":
        problems.append(f"vegaEmbed is {state['vegaEmbed']}: the libraries did not load")
    drawn = {c["id"] for c in state["charts"] if is_drawn(c)}
    not_drawn = [c for c in state["charts"] if not is_drawn(c)]
    if not_drawn:
        problems.append(f"charts not drawn: {not_drawn}")
    if len(state["charts"]) != len(vega_plots):
        problems.append(f"{len(state['charts'])} chart divs, `dvc plots show --json` has {len(vega_plots)}")
    missing = [name for name in charts if html_id(name) not in drawn]
    if missing:
        problems.append(f"dvc.yaml plots with no drawn chart: {missing}")
    broken = [i for i in state["images"] if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    if broken:
        problems.append(f"images not loaded: {broken}")
    for path in images:
        stem = path.replace("/", "_")
        for revision in revisions:
            if not any(i["src"].endswith(stem) and i["revision"] == revision for i in state["images"]):
                problems.append(f"image {path} of {revision} is not on the page")
    for chart, spec in page_specs(page).items():
        in_data = {row["rev"] for row in spec["data"]["values"]}
        if in_data != set(revisions):
            problems.append(f"chart {chart} has data of {sorted(in_data)}, expected {revisions}")
    problems += state["errors"]
    if state["network"]:
        problems.append(f"network requests: {state['network']}")
    if state["failed"]:
        problems.append(f"failed loads: {state['failed']}")
    assert not problems, "\n".join(map(str, problems))
    return charts, images


def test_plots_show_renders_offline(chromium, offline_project, tmp_path, record_property):
    page = offline_project / "page" / "index.html"
    sh("dvc", "plots", "show", "-o", "page", cwd=offline_project)
    screenshot = tmp_path / "plots_show.png"
    state = render(chromium, page, screenshot, tmp_path / "profile")
    report_screenshot(record_property, screenshot)
    if copy := os.environ.get("PLOTS_PAGE_SCREENSHOT"):
        save_small_copy(screenshot, Path(copy))
        print(f"screenshot copy (256 colours): {copy}")
    charts, images = assert_page(state, offline_project, page, ["workspace"], ["plots", "show"])
    assert len(charts) == 8 and len(images) == 4, "dvc.yaml: 4 charts and 2 images per dataset"
    assert len(state["charts"]) >= len(charts)
    assert len(state["images"]) >= len(images)


def scale_column(path: Path, column: str, factor: float):
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        row[column] = str(float(row[column]) * factor)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_plots_diff_renders_both_revisions_offline(chromium, offline_project, tmp_path, record_property):
    history = offline_project / "plots" / "moons" / "history.csv"
    scale_column(history, "test_loss", 1.5)
    sh("git", "commit", "-q", "-am", "moons: higher test loss", cwd=offline_project)

    page = offline_project / "diff" / "index.html"
    sh("dvc", "plots", "diff", "HEAD~1", "HEAD", "-o", "diff", cwd=offline_project)
    screenshot = tmp_path / "plots_diff.png"
    state = render(chromium, page, screenshot, tmp_path / "profile")
    report_screenshot(record_property, screenshot)
    assert_page(state, offline_project, page, ["HEAD~1", "HEAD"], ["plots", "diff", "HEAD~1", "HEAD"])

    # The changed file's chart really holds the two revisions' different data.
    loss = page_specs(page)[html_id("moons loss")]["data"]["values"]
    test_loss = {
        rev: [float(r["test_loss"]) for r in loss if r["rev"] == rev and r["field"] == "test_loss"]
        for rev in ("HEAD~1", "HEAD")
    }
    assert test_loss["HEAD~1"] and len(test_loss["HEAD~1"]) == len(test_loss["HEAD"])
    assert test_loss["HEAD"] == pytest.approx([value * 1.5 for value in test_loss["HEAD~1"]])


def test_network_is_off_in_the_test_browser(chromium, project, tmp_path):
    """DVC's default page, whose libraries come from a CDN, draws nothing in the test browser."""
    sh("dvc", "plots", "show", "-o", "page", cwd=project)
    page = project / "page" / "index.html"
    assert "cdn.jsdelivr.net" in page.read_text()
    state = render(chromium, page, tmp_path / "cdn.png", tmp_path / "profile")
    assert state["vegaEmbed"] == "undefined", "the CDN's vega-embed loaded: the browser is online"
    assert state["charts"] and not any(map(is_drawn, state["charts"]))
    assert state["failed"], "the CDN scripts' loads should have failed"
