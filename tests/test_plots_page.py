"""The `dvc plots` page: built from the pinned vl-convert-python, drawn in Chromium with no network.

plots_page/index.html is the page template with vega, vega-lite and vega-embed inlined, committed
and set as plots.html_template in the committed .dvc/config. The unit tests check that it is what
plots_page/build.py makes from the pinned vl-convert-python now, and that the config points at it.
The browser tests take the project as a fresh clone has it after the README's first command
(`dvc repro` in a copy of the committed files: no config.local, nothing built by hand), render
`dvc plots show` and `dvc plots diff` in headless Chromium that cannot reach any network, and check
that every chart and image `dvc plots ... --json` lists is drawn, and nothing is logged as an error.
Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no chromedriver,
no Python packages beyond the project's own.

Each page's screenshot is saved under the test's tmp folder and its path printed (`pytest -s`) and
recorded as the test's `screenshot` property. PLOTS_PAGE_SCREENSHOT=<file.png> also saves the
`dvc plots show` page there in 256 colours; docs/plots_page.png is made with

    PLOTS_PAGE_SCREENSHOT=docs/plots_page.png pytest tests/test_plots_page.py -k show
"""

import base64
import contextlib
import functools
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from configobj import ConfigObj
from conftest import DATASETS, ROOT, edit_params, sh, tracked_files
from dvc_render.base import Renderer
from PIL import Image

from plots_page import build

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAGE_WIDTH = 1400
RENDER_TIMEOUT_S = 60
# URL schemes a page may load from with the network off; anything else is a network request.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome-error:")


def test_committed_page_is_what_build_py_makes():
    """The page cannot drift from the vl-convert-python pin, nor be edited by hand."""
    assert build.OUTPUT.read_bytes() == build.page().encode(), (
        "plots_page/index.html is stale: run `python plots_page/build.py` and commit it"
    )


def test_committed_dvc_config_points_at_the_committed_page():
    # DVC reads its config files with configobj, and joins a relative template path to .dvc/.
    value = ConfigObj(str(ROOT / ".dvc" / "config"))["plots"]["html_template"]
    assert not os.path.isabs(value)
    assert (ROOT / ".dvc" / value).resolve() == build.OUTPUT
    # A checkout without the file would fail `dvc plots show`: it has to be in git.
    assert build.OUTPUT.relative_to(ROOT).as_posix() in tracked_files()


def chromium_binary() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


CHROMIUM = chromium_binary()


def in_browser(test):
    """Mark a test that renders in Chromium; without one it is skipped by a mark, not in a fixture,
    so before the session's cold `dvc repro` runs. Under CI=true it fails instead: CI installs
    Chromium, so a missing one is a broken install, never a silent skip."""
    reason = "no Chromium on PATH (apt-get install chromium, or set CHROMIUM=<binary>)"
    if CHROMIUM is None and os.environ.get("CI") == "true":

        @functools.wraps(test)
        def fails(*args, **kwargs):
            pytest.fail(f"CI=true: {reason}")

        return pytest.mark.browser(pytest.mark.e2e(fails))
    return pytest.mark.browser(pytest.mark.e2e(pytest.mark.skipif(CHROMIUM is None, reason=reason)(test)))


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
# An image is DVC's <img> in its plot's div, under a <p> with its revision.
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
    div: img.closest("[id]") && img.closest("[id]").id,
    revision: img.parentElement.querySelector("p") && img.parentElement.querySelector("p").textContent}));
  return {charts, images, vegaEmbed: typeof vegaEmbed, ready: document.readyState};
})(IDS)
"""


def is_drawn(chart: dict) -> bool:
    return chart["element"] is not None and chart["width"] > 0 and chart["height"] > 0 and chart["inked"] > 0


def whole_page_png(browser, session, metrics) -> bytes:
    """A screenshot of the whole page, the tab grown to the page's height."""
    size = browser.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
    metrics["height"] = int(size["height"]) + 1
    browser.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
    browser.pump(0.5)
    shot = browser.call(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session
    )
    return base64.b64decode(shot["data"])


def open_offline(browser, page: Path, domains=("Page", "Runtime", "Network")):
    """`page` loading in the browser's tab with the network off, PAGE_WIDTH wide: the tab's session
    and its size (to grow to the page's height before a screenshot)."""
    target = next(
        t["targetId"] for t in browser.call("Target.getTargets")["targetInfos"] if t["type"] == "page"
    )
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in domains:
        browser.call(f"{domain}.enable", session=session)
    offline = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    browser.call("Network.emulateNetworkConditions", offline, session=session)
    metrics = {"width": PAGE_WIDTH, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
    browser.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
    browser.call("Page.navigate", {"url": page.as_uri()}, session=session)
    return session, metrics


def render(binary: str, page: Path, screenshot: Path, profile: Path) -> dict:
    """Open `page` offline; wait for its charts; return their state, the errors and the requests."""
    expression = PAGE_STATE_JS.replace("IDS", json.dumps(list(page_specs(page))))
    browser = DevTools(binary, profile)
    try:
        session, metrics = open_offline(browser, page, ("Page", "Runtime", "Log", "Network"))

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

        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(whole_page_png(browser, session, metrics))
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


def save_small_copy(screenshot: Path, copy: Path):
    """The screenshot in 256 colours (a third of the size; the page is mostly flat colour)."""
    with Image.open(screenshot) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    copy.parent.mkdir(parents=True, exist_ok=True)
    small.save(copy, optimize=True)


# The div id dvc_render gives a plot's name.
html_id = Renderer.remove_special_chars


def page_specs(page: Path) -> dict[str, dict]:
    """The Vega-Lite spec DVC wrote for each chart div, by div id."""
    found = re.finditer(r"var spec = (.*?);\n\s*vegaEmbed\('#([^']+)'", page.read_text(), flags=re.S)
    return {m.group(2): json.loads(m.group(1)) for m in found}


def dvc_plots(project: Path, command: list[str], output: Path) -> tuple[Path, dict, set]:
    """`dvc <command> -o <output>`'s page, and what `dvc <command> --json` says it holds:
    {chart div id: its revisions}, {(image div id, revision)}."""
    sh("dvc", *command, "-o", str(output), cwd=project)
    listed = json.loads(sh("dvc", *command, "--json", cwd=project).stdout)
    assert not listed.get("errors"), f"dvc {' '.join(command)} could not load plots: {listed['errors']}"
    charts, images = {}, set()
    for name, items in listed["data"].items():
        for item in items:
            assert item["type"] in ("vega", "image"), f"{name}: a plot of type {item['type']}"
            if item["type"] == "vega":
                charts.setdefault(html_id(name), set()).update(item["revisions"])
            else:
                images.update((html_id(name), revision) for revision in item["revisions"])
    assert charts and images, f"dvc {' '.join(command)} lists {len(charts)} charts and {len(images)} images"
    return output / "index.html", charts, images


def assert_page(state: dict, page: Path, charts: dict[str, set], images: set):
    """Every chart and image listed is on the page and drawn, with the data of its revisions."""
    problems = []
    if state["vegaEmbed"] != "function":
        problems.append(f"vegaEmbed is {state['vegaEmbed']}: the libraries did not load")
    specs = page_specs(page)
    if set(specs) != set(charts):
        problems.append(f"charts on the page: {sorted(specs)}; listed by --json: {sorted(charts)}")
    not_drawn = [c for c in state["charts"] if not is_drawn(c)]
    if not_drawn:
        problems.append(f"charts not drawn: {not_drawn}")
    for chart, spec in specs.items():
        in_data = {row["rev"] for row in spec["data"]["values"]}
        if in_data != charts.get(chart):
            problems.append(f"chart {chart} has data of {sorted(in_data)}, listed: {charts.get(chart)}")
    on_page = {(i["div"], i["revision"]) for i in state["images"]}
    if on_page != images:
        problems.append(f"images on the page: {sorted(on_page)}; listed by --json: {sorted(images)}")
    broken = [i for i in state["images"] if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    if broken:
        problems.append(f"images not loaded: {broken}")
    problems += state["errors"]
    if state["network"]:
        problems.append(f"network requests: {state['network']}")
    if state["failed"]:
        problems.append(f"failed loads: {state['failed']}")
    assert not problems, "\n".join(map(str, problems))


def report(record_property, screenshot: Path, state: dict):
    drawn = sum(map(is_drawn, state["charts"]))
    record_property("screenshot", str(screenshot))
    record_property("drawn", {"charts": drawn, "images": len(state["images"])})
    print(f"drawn offline: {drawn} charts, {len(state['images'])} images; screenshot: {screenshot}")


def commit_all(repo: Path, message: str):
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "--allow-empty", "-m", message, cwd=repo)


@in_browser
def test_plots_show_renders_offline(rebuilt, tmp_path, record_property):
    # The project as the README's first command leaves it: the committed config and page only.
    assert not (rebuilt / ".dvc" / "config.local").exists()
    page, charts, images = dvc_plots(rebuilt, ["plots", "show"], tmp_path / "show")
    assert "Built by plots_page/build.py" in page.read_text(), "not the committed page"
    screenshot = tmp_path / "plots_show.png"
    state = render(CHROMIUM, page, screenshot, tmp_path / "profile")
    report(record_property, screenshot, state)
    if copy := os.environ.get("PLOTS_PAGE_SCREENSHOT"):
        save_small_copy(screenshot, Path(copy))
        print(f"screenshot copy (256 colours): {copy}")
    assert all(revisions == {"workspace"} for revisions in charts.values())
    assert_page(state, page, charts, images)
    # Each dataset's animation of training, neuron maps and baselines, once each, loaded by the
    # browser: the animation as the APNG the stage wrote (DVC copies an image plot's bytes), every
    # frame in it.
    for name in DATASETS:
        for image, frames in (("boundary_training", 40), ("neurons", 1), ("baselines", 1)):
            shown = [i for i in state["images"] if i["div"] == html_id(f"plots/{name}/{image}.png")]
            assert len(shown) == 1, (name, image, shown)
            with Image.open(page.parent / shown[0]["src"]) as file:
                assert (file.format, file.n_frames) == ("PNG", frames)


def reseed_first_dataset(params: dict):
    """Train the first dataset from another seed: all its charts and images change."""
    train = next(iter(params["datasets"].values()))["train"]
    train["seed"] += 1


def rows(spec: dict, revision: str) -> list[str]:
    """A chart's data rows of one revision, less the revision, comparable across revisions."""
    values = spec["data"]["values"]
    return sorted(json.dumps({**r, "rev": None}, sort_keys=True) for r in values if r["rev"] == revision)


@in_browser
def test_plots_diff_renders_both_revisions_offline(rebuilt, tmp_path, record_property):
    # Two commits whose outputs differ: the cold run's, and one dataset trained from another seed.
    commit_all(rebuilt, "reproduced")
    edit_params(rebuilt, reseed_first_dataset)
    sh("dvc", "repro", cwd=rebuilt)
    commit_all(rebuilt, "another seed")

    revisions = ["HEAD~1", "HEAD"]
    page, charts, images = dvc_plots(rebuilt, ["plots", "diff", *revisions], tmp_path / "diff")
    screenshot = tmp_path / "plots_diff.png"
    state = render(CHROMIUM, page, screenshot, tmp_path / "profile")
    report(record_property, screenshot, state)
    assert all(listed == set(revisions) for listed in charts.values())
    assert {revision for _, revision in images} == set(revisions)
    assert_page(state, page, charts, images)

    # The page holds each revision's own data: the retrained dataset's charts differ.
    changed = [c for c, spec in page_specs(page).items() if rows(spec, "HEAD~1") != rows(spec, "HEAD")]
    assert changed, "no chart differs between the two revisions"


@in_browser
def test_network_is_off_in_the_test_browser(rebuilt, tmp_path):
    """DVC's default page, whose libraries come from a CDN, draws nothing in the test browser."""
    sh("dvc", "config", "--unset", "plots.html_template", cwd=rebuilt)
    sh("dvc", "plots", "show", "-o", "page", cwd=rebuilt)
    page = rebuilt / "page" / "index.html"
    assert "cdn.jsdelivr.net" in page.read_text()
    state = render(CHROMIUM, page, tmp_path / "cdn.png", tmp_path / "profile")
    assert state["vegaEmbed"] == "undefined", "the CDN's vega-embed loaded: the browser is online"
    assert state["charts"] and not any(map(is_drawn, state["charts"]))
    assert state["failed"], "the CDN scripts' loads should have failed"
