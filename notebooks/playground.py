"""The notebook's Playground: one dataset retrained in the kernel and redrawn on every change, as
TensorFlow Playground does, with the pipeline's own code (datasets.generate and stratified_split,
train.fit, plot.boundary_pngs); and Keep, which makes the values a DVC experiment.

`Playground.change(**values)` is the callback: a plain function, which the widgets call on every
change and a test or a benchmark calls directly. Nothing here writes a pipeline file: Keep runs
`dvc exp run --temp`, which runs the experiment in a copy of the workspace.

Run from the project root with `stages` imported first (the CPU pins: stages/__init__.py).
"""

import base64
import copy
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from stages.checkpoint import Checkpoint
from stages.datasets import generate, stratified_split
from stages.drawing import Plane
from stages.functions import ACTIVATIONS, FEATURES
from stages.params import PARAMS_FILE, parse_params
from stages.plot import boundary_pngs
from stages.train import as_tensors, fit

# The controls, each the key of params.yaml it sets (under datasets.<name>).
KEYS = {
    "lr": ("train", "lr"),
    "epochs": ("train", "epochs"),
    "hidden": ("model", "hidden"),
    "activation": ("model", "activation"),
    "features": ("model", "features"),
    "noise": ("data", "noise"),
    "l1": ("train", "l1"),
}


@dataclass(repr=False)
class Picture:
    """What a change gives: the boundary over the test set, and how long it took to get it."""

    png: bytes
    seconds: float  # from the change to the new picture: data, training and drawing
    test_accuracy: float
    values: dict

    def _repr_png_(self):  # Jupyter shows it as the picture
        return self.png

    def __repr__(self):
        return f"<Picture: {describe(self)}, {len(self.png)} bytes of PNG>"


class Playground:
    def __init__(self, name: str = "moons", params_file: str = PARAMS_FILE):
        self.name = name
        self.raw = yaml.safe_load(Path(params_file).read_text(encoding="utf-8"))
        self.params = parse_params(self.raw, params_file)
        self.values = self.defaults()
        self._splits = {}  # the data, by its params: a change of the model trains on the same points
        self.splits(self.params.dataset(name))  # drawn now: the first change is as quick as the next
        self.last = None

    def defaults(self) -> dict:
        """The controls' values as params.yaml has them."""
        dataset = self.params.dataset(self.name).model_dump()
        return {control: copy.deepcopy(dataset[section][key]) for control, (section, key) in KEYS.items()}

    def params_with(self, values: dict):
        """params.yaml's params with the controls' values, checked as the pipeline checks them: a bad
        value is a ParamsError naming its key (datasets.moons.train.lr = 0: must be ...)."""
        raw = copy.deepcopy(self.raw)
        for control, value in values.items():
            section, key = KEYS[control]
            raw["datasets"][self.name][section][key] = value
        return parse_params(raw, "the Playground")

    def change(self, **values) -> Picture:
        """The callback: retrain with these values (the others as they were) and redraw."""
        start = time.perf_counter()
        values = {**self.values, **values}
        params = self.params_with(values)
        dataset = params.dataset(self.name)
        splits = self.splits(dataset)
        train_set, test_set = (as_tensors(*splits[split], "cpu") for split in ("train", "test"))
        trained = fit(self.name, dataset, train_set, test_set)
        weights = {key: tensor.detach().numpy() for key, tensor in trained.model.state_dict().items()}
        model = Checkpoint(dataset.config, weights, "cpu")
        plane = Plane(np.concatenate([points for points, _ in splits.values()]), params.plot.resolution)
        png = boundary_pngs(self.name, model, splits, plane, params.plot, drawn=["test"])["test"]
        self.values = values
        accuracy = trained.curves["accuracy"]["test"][-1]
        self.last = Picture(png, time.perf_counter() - start, accuracy, values)
        return self.last

    def splits(self, dataset) -> dict:
        """{train, test: (points, labels)} as the generate and split stages make them (their CSVs
        hold each float's shortest exact form: the same numbers)."""
        key = (dataset.data.model_dump_json(), dataset.split.model_dump_json())
        if key not in self._splits:
            points, labels = generate(dataset.data)
            train, test = stratified_split(labels, dataset.split.test_size, dataset.split.seed)
            self._splits = {
                key: {"train": (points[train], labels[train]), "test": (points[test], labels[test])}
            }
        return self._splits[key]

    def overrides(self) -> list[str]:
        """The values that differ from params.yaml's as `dvc exp run -S` arguments, in Hydra's
        override syntax (`++key=value` for a key params.yaml leaves to its default)."""
        written = self.raw["datasets"][self.name]
        changed = {c: v for c, v in self.values.items() if v != self.defaults()[c]}
        return [
            f"{'' if KEYS[c][1] in written[KEYS[c][0]] else '++'}datasets.{self.name}.{'.'.join(KEYS[c])}"
            f"={override_value(value)}"
            for c, value in changed.items()
        ]

    def keep(self) -> str:
        """Run the current values as a DVC experiment, in a copy of the workspace (--temp): the
        workspace, params.yaml included, stays as it is. Returns the experiment's name. Only the
        values that differ from params.yaml's are set: the experiment's params show what changed."""
        command = ["dvc", "exp", "run", "--temp"]
        for override in self.overrides():
            command += ["-S", override]
        dvc = Path(sys.executable).with_name("dvc")  # this kernel's environment's, else PATH's
        result = subprocess.run(
            [str(dvc) if dvc.exists() else "dvc", *command[1:]], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        ran = re.search(r"Ran experiment\(s\): (\S+)", result.stdout)
        if ran is None:
            raise RuntimeError(f"{' '.join(command)} named no experiment:\n{result.stdout}")
        return ran.group(1)

    def widgets(self):
        """The controls, the picture and Keep, wired to change() and keep()."""
        import ipywidgets as w  # noqa: PLC0415 - only the notebook's own kernel needs them
        from IPython.display import display  # noqa: PLC0415

        v = self.values
        slider = {"continuous_update": False, "style": {"description_width": "80px"}}
        controls = {
            "lr": w.FloatLogSlider(value=v["lr"], base=10, min=-4, max=0, description="lr", **slider),
            "epochs": w.IntSlider(
                value=v["epochs"], min=10, max=3000, step=10, description="epochs", **slider
            ),
            "hidden": w.Text(
                value=", ".join(map(str, v["hidden"])),
                description="hidden",
                placeholder="widths, e.g. 16, 16; empty: linear",
                continuous_update=False,
            ),
            "activation": w.Dropdown(
                options=list(ACTIVATIONS), value=v["activation"], description="activation"
            ),
            "features": w.SelectMultiple(options=list(FEATURES), value=v["features"], description="features"),
            "noise": w.FloatSlider(
                value=v["noise"], min=0.0, max=0.5, step=0.01, description="noise", **slider
            ),
            "l1": w.FloatSlider(
                value=v["l1"],
                min=0.0,
                max=0.03,
                step=0.0005,
                readout_format=".4f",
                description="L1",
                **slider,
            ),
        }
        picture = w.Image(value=self.last.png if self.last else b"", format="png")
        status = w.HTML()
        keep = w.Button(description="Keep", tooltip="dvc exp run --temp -S ... with these values")
        kept = w.Output()

        def on_change(_):
            try:
                hidden = [int(width) for width in controls["hidden"].value.replace(",", " ").split()]
            except ValueError:
                status.value = f"<b>hidden</b>: {controls['hidden'].value!r} is not a list of widths"
                return
            values = {c: control.value for c, control in controls.items() if c != "hidden"}
            values["features"] = list(values["features"])
            try:
                shown = self.change(hidden=hidden, **values)
            except Exception as error:  # a bad value or a diverged run: the pipeline's own message
                status.value = f"<b>{type(error).__name__}</b>: {error}"
                return
            picture.value = shown.png
            status.value = describe(shown)

        def on_keep(_):
            with kept:
                kept.clear_output()
                print(f"dvc exp run --temp -S {' -S '.join(self.overrides())} ...")
                name = self.keep()
                display(exp_row(name))

        self.controls, self.picture, self.status = controls, picture, status  # for a test to move
        for control in controls.values():
            control.observe(on_change, names="value")
        keep.on_click(on_keep)
        if self.last is None:
            on_change(None)
        else:
            status.value = describe(self.last)
        return w.HBox([w.VBox([*controls.values(), keep, status]), w.VBox([picture, kept])])


def override_value(value) -> str:
    """A value in Hydra's override grammar: strings quoted, lists bracketed."""
    if isinstance(value, list):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)


def describe(picture: Picture) -> str:
    return f"test accuracy {picture.test_accuracy:.1%}; retrained and redrawn in {picture.seconds:.2f} s"


def exp_table(repo: str = "."):
    """`dvc exp show --only-changed` as a DataFrame (dvc.api.exp_show): the workspace, the commit and
    its experiments, with the columns whose values differ between them."""
    import dvc.api  # noqa: PLC0415 - only the notebook's experiments need them
    import pandas as pd  # noqa: PLC0415

    table = pd.DataFrame(dvc.api.exp_show(repo=repo))
    return table.loc[:, table.astype(str).nunique(dropna=False) > 1]


def exp_row(name: str, repo: str = "."):
    """The experiment `name`'s row of exp_table()."""
    table = exp_table(repo)
    return table[table["Experiment"] == name]


def side_by_side(pictures: dict[str, bytes]) -> str:
    """PNG pictures in a row, each under its label, as HTML (shown with IPython.display.HTML)."""
    cells = "".join(
        f'<figure style="margin:0 8px"><figcaption><b>{label}</b></figcaption>'
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}"></figure>'
        for label, png in pictures.items()
    )
    return f'<div style="display:flex">{cells}</div>'
