"""notebooks/boundary_lab.ipynb, the lesson, and notebooks/playground.py, its Playground.

The unit tests check the committed notebook (no outputs, linted by ruff) and call the Playground's
callback as the widgets do. The e2e tests execute the notebook top to bottom with nbclient, as
`Run All` does, in a copy of the project after `dvc repro` (the session's `built`), once for the
module: it must run clean, leave the workspace as `dvc exp run` does (nothing edited, one new
experiment), and its pictures, read back from the HTML nbconvert renders, must be the pipeline's
own. The browser test opens that HTML in headless Chromium with the network off (as
tests/test_plots_page.py does) and checks that every picture is drawn.

Its screenshot is recorded as the test's `screenshot` property; NOTEBOOK_SCREENSHOT=<file.png>
also saves it there in 256 colours. docs/notebook.png is made with

    NOTEBOOK_SCREENSHOT=docs/notebook.png pytest -n 0 tests/test_notebook.py -k browser
"""

import base64
import io
import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import ROOT, experiments, lock_outs, output_md5s, sh
from PIL import Image
from test_plots_page import (
    CHROMIUM,
    PAGE_WIDTH,
    DevTools,
    in_browser,
    open_offline,
    save_small_copy,
    whole_page_png,
)

NOTEBOOK = ROOT / "notebooks" / "boundary_lab.ipynb"
# The pictures of the executed notebook, in order: the data, the learning curves, each dataset's
# train and test boundaries, tanh, the Playground's change, the two revisions side by side.
PICTURES = 1 + 1 + 4 + 1 + 1 + 2
# What the notebook's Playground cell changes, as `dvc exp run -S` then sets it.
PLAYGROUND = {
    ("model", "hidden"): [8, 8],
    ("model", "activation"): "tanh",
    ("train", "lr"): 0.03,
    ("model", "features"): ["x1", "x2", "x1*x2"],
}
# Scripts nbconvert's page template loads from CDNs: require.js, MathJax, and the widget manager
# that draws the Playground's controls from their saved state. The pictures need none of them, and
# the test browser cannot load them (the controls are blank there).
TEMPLATE_CDN = (
    "https://cdnjs.cloudflare.com/ajax/libs/require.js/",
    "https://cdnjs.cloudflare.com/ajax/libs/mathjax/",
    "https://unpkg.com/@jupyter-widgets/html-manager@",
)


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert code_cells(notebook)
    for index, cell in enumerate(code_cells(notebook)):
        assert cell.outputs == [], f"code cell {index} has outputs: clear them before committing"
        assert cell.execution_count is None, f"code cell {index} has an execution count"
    assert "widgets" not in notebook.metadata, "the notebook holds saved widget state"


def test_ruff_lints_the_notebook():
    """test_lint.py's ruff runs cover the notebook: ruff lists it among the files it checks."""
    shown = sh(Path(sys.executable).with_name("ruff"), "check", "--show-files", ".", cwd=ROOT).stdout
    assert str(NOTEBOOK) in shown.splitlines()


# ---------------------------------------------------------------------------------------------
# The Playground's callback, called as the widgets call it


@pytest.fixture(scope="module")
def playground():
    from notebooks.playground import Playground  # noqa: PLC0415

    return Playground("moons", ROOT / "params.yaml")  # it reads no other file: it draws its data


def test_playground_defaults_are_params_yaml(playground):
    moons = yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"]["moons"]
    assert playground.defaults() == {
        "lr": moons["train"]["lr"],
        "epochs": moons["train"]["epochs"],
        "hidden": moons["model"]["hidden"],
        "activation": moons["model"]["activation"],
        "features": moons["model"].get("features", ["x1", "x2"]),
        "noise": moons["data"]["noise"],
        "l1": moons["train"].get("l1", 0.0),
    }
    playground.values = playground.defaults()
    assert playground.overrides() == []  # nothing changed: `dvc exp run` with no -S


def pipeline_files() -> dict[Path, int]:
    """Each file of the pipeline (params, lock, inputs and outputs) with its modification time."""
    files = [ROOT / "params.yaml", ROOT / "dvc.lock"]
    for folder in ("data", "models", "metrics", "plots"):
        files += [path for path in (ROOT / folder).rglob("*") if path.is_file()]
    return {path: path.stat().st_mtime_ns for path in files}


def test_playground_change_retrains_and_redraws_writing_nothing(playground):
    before = pipeline_files()
    first = playground.change(hidden=[4], activation="tanh", epochs=50)
    second = playground.change(lr=0.05)  # the other values as they were
    assert second.values == {**first.values, "lr": 0.05}
    assert [second.values[key] for key in ("hidden", "activation", "epochs")] == [[4], "tanh", 50]
    for picture in (first, second):
        with Image.open(io.BytesIO(picture.png)) as image:
            assert image.format == "PNG" and image.size == (600, 540)
        assert 0.0 <= picture.test_accuracy <= 1.0 and picture.seconds > 0
    assert first.png != second.png
    assert pipeline_files() == before


def test_playground_refuses_a_bad_value_as_the_pipeline_does(playground):
    from stages.params import ParamsError  # noqa: PLC0415

    values = dict(playground.values)
    with pytest.raises(
        ParamsError, match=r"^the Playground: datasets\.moons\.train\.lr = 0: must be a number > 0$"
    ):
        playground.change(lr=0)
    assert playground.values == values  # the last good values stay


def test_the_controls_call_the_callback(playground):
    """What JupyterLab does when a learner moves a control: the widget's value changes."""
    playground.widgets()
    playground.controls["lr"].value = 0.05
    assert playground.values["lr"] == 0.05
    assert playground.picture.value == playground.last.png
    assert playground.status.value.startswith("test accuracy ")
    playground.controls["hidden"].value = "8, x"
    assert playground.status.value == "<b>hidden</b>: '8, x' is not a list of widths"
    playground.controls["hidden"].value = "4"
    assert playground.values["hidden"] == [4]
    playground.controls["features"].value = ()
    assert "datasets.moons.model.features" in playground.status.value  # the pipeline's message
    assert playground.values["lr"] == 0.05 and playground.values["features"] != []


def test_playground_overrides_are_hydra_sets(playground):
    playground.values = {
        **playground.defaults(),
        "lr": 0.03,
        "hidden": [8, 8],
        "activation": "tanh",
        "features": ["x1", "sin(x2)"],
    }
    # features is not in params.yaml (its default): ++ adds it; the others are there to override.
    assert playground.overrides() == [
        "datasets.moons.train.lr=0.03",
        "datasets.moons.model.hidden=[8,8]",
        "datasets.moons.model.activation='tanh'",
        "++datasets.moons.model.features=['x1','sin(x2)']",
    ]


# ---------------------------------------------------------------------------------------------
# The notebook executed in a built project


@pytest.fixture(scope="module")
def executed(built, tmp_path_factory):
    """A copy of the built project after the notebook ran top to bottom in it: (project, the
    executed notebook, its HTML page, seconds it took)."""
    from nbclient import NotebookClient  # noqa: PLC0415
    from nbconvert import HTMLExporter  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("notebook")
    repo = folder / "project"
    shutil.copytree(built, repo, symlinks=True)
    notebook = nbformat.read(repo / "notebooks" / NOTEBOOK.name, as_version=4)
    start = time.monotonic()
    # As JupyterLab runs it: the kernel starts in the notebook's folder.
    NotebookClient(notebook, timeout=300, resources={"metadata": {"path": str(repo / "notebooks")}}).execute()
    seconds = time.monotonic() - start
    nbformat.write(notebook, folder / "executed.ipynb")
    page = folder / "executed.html"
    page.write_text(HTMLExporter().from_notebook_node(notebook)[0], encoding="utf-8")
    return repo, notebook, page, seconds


def text_of(notebook) -> str:
    """Everything the code cells printed or returned as text."""
    parts = []
    for cell in code_cells(notebook):
        for output in cell.outputs:
            parts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.e2e
@pytest.mark.xdist_group("notebook")
def test_notebook_runs_and_reproduces_the_pipeline(executed, record_property):
    repo, notebook, _, seconds = executed
    record_property("seconds", round(seconds, 1))
    text = text_of(notebook)
    assert all(output.output_type != "error" for cell in code_cells(notebook) for output in cell.outputs)
    assert "weights trained in the kernel == models/moons.safetensors, bit for bit: True" in text
    for name in ("moons", "spiral"):
        for split in ("train", "test"):
            assert f"{name}, {split}: the same bytes as plots/{name}/boundary_{split}.png: True" in text
    assert "the same bytes as plots/moons/boundary_test.png: True" in text  # the Playground's first picture
    assert "max |pure_tanh - torch.tanh|" in text


@pytest.mark.e2e
@pytest.mark.xdist_group("notebook")
def test_notebook_leaves_the_workspace_as_dvc_exp_run_does(executed):
    repo, _, _, _ = executed
    # Nothing edited by hand, params.yaml included; no output file rewritten.
    assert sh("git", "status", "--porcelain", cwd=repo).stdout == ""
    assert output_md5s(repo) == lock_outs(repo) == lock_outs(ROOT)
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=repo).stdout
    # Keep made one experiment, with the Playground's values and its own results.
    found = experiments(repo)
    assert len(found) == 1, found
    (exp,) = found.values()
    moons = exp["params"]["datasets"]["moons"]
    for (section, key), value in PLAYGROUND.items():
        assert moons[section][key] == value
    assert exp["metrics"]["metrics/moons.json"]["test"]["accuracy"] >= 0.5


def html_images(page: Path) -> list[bytes]:
    """The bytes of every <img> of the page: nbconvert inlines each picture as a data: URI."""
    sources = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', page.read_text(encoding="utf-8"))
    assert all(src.startswith("data:image/png;base64,") for src in sources), [s[:40] for s in sources]
    return [base64.b64decode(src.removeprefix("data:image/png;base64,")) for src in sources]


@pytest.mark.e2e
@pytest.mark.xdist_group("notebook")
def test_the_html_holds_every_picture_and_they_are_the_pipelines(executed):
    repo, _, page, _ = executed
    images = html_images(page)
    assert len(images) == PICTURES
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            colours = image.convert("RGB").getcolors(1 << 20)
            assert image.width >= 300 and image.height >= 200 and len(colours) > 50, image.size
    # The boundaries section shows the plot stage's files, byte for byte.
    written = [
        (repo / f"plots/{name}/boundary_{split}.png").read_bytes()
        for name in ("moons", "spiral")
        for split in ("train", "test")
    ]
    assert images[2:6] == written
    # The two revisions side by side: the commit's model and the experiment's differ.
    assert images[-2] != images[-1]


def page_state(browser, session) -> dict:
    expression = """({ready: document.readyState, images: [...document.images].map(i =>
        ({complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))})"""
    return browser.call(
        "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
    )["result"]["value"]


@in_browser
@pytest.mark.xdist_group("notebook")
def test_notebook_page_in_browser(executed, tmp_path, record_property):
    _, _, page, _ = executed
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    screenshot = tmp_path / "notebook.png"
    try:
        session, metrics = open_offline(browser, page)
        deadline = time.monotonic() + 60
        while True:
            browser.pump(0.5)
            state = page_state(browser, session)
            if state["ready"] == "complete" and all(i["complete"] for i in state["images"]):
                break
            assert time.monotonic() < deadline, f"the page did not load in 60 s: {state}"
        screenshot.write_bytes(whole_page_png(browser, session, metrics))
    finally:
        browser.close()
    record_property("screenshot", str(screenshot))
    print(f"notebook page: {len(state['images'])} pictures drawn; screenshot: {screenshot}")
    if copy := os.environ.get("NOTEBOOK_SCREENSHOT"):
        save_small_copy(screenshot, Path(copy))
        print(f"screenshot copy (256 colours): {copy}")

    assert len(state["images"]) == PICTURES
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in state["images"]), state["images"]
    requests = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    online = [url for url in requests if not url.startswith(("file:", "data:", "blob:", "about:"))]
    assert all(url.startswith(TEMPLATE_CDN) for url in online), (
        online
    )  # the notebook itself needs nothing online
    errors = [
        e["params"]["exceptionDetails"]["text"]
        for e in browser.events
        if e.get("method") == "Runtime.exceptionThrown"
    ]
    assert not errors, errors
    with Image.open(screenshot) as image:
        assert image.width == PAGE_WIDTH and image.height > 3000
