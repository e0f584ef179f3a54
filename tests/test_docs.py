"""The README and docs/ say what the project does: its commands, links and Python example are real."""

import re
import sys

import pytest
from conftest import ROOT, sh

README = (ROOT / "README.md").read_text()
DOCS = {
    path.relative_to(ROOT).as_posix(): path.read_text()
    for path in [ROOT / "README.md", *ROOT.glob("docs/*.md")]
}


def code_blocks(text, language):
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_ci_runs_the_readmes_test_command():
    setup = code_blocks(README, "bash")[:2]
    assert "dvc repro" in setup[0] and "pytest" in setup[1]
    assert setup[1].strip() in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.parametrize("page", sorted(DOCS))
def test_every_relative_link_resolves(page):
    folder = (ROOT / page).parent
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", DOCS[page]):
        assert (folder / target).exists(), f"{page} links to {target}, which does not exist"


@pytest.mark.e2e
def test_the_readmes_python_example_loads_any_revision_and_experiment(rebuilt):
    """Run as written, before and after an experiment: `rev = "main"` loads main's model whatever the
    workspace holds; with the experiment's name as `rev`, the experiment's."""
    (example,) = code_blocks(README, "python")
    assert 'rev = "main"' in example

    def run(code):
        return sh(sys.executable, "-c", code, cwd=rebuilt).stdout.strip().split("\n")

    committed, at_main = run(example)
    assert committed == at_main
    sh("dvc", "exp", "run", "-S", "datasets.moons.train.epochs=50", "-n", "fewer-epochs", cwd=rebuilt)
    experiment, at_main = run(example)
    assert experiment != committed and at_main == committed
    assert run(example.replace('rev = "main"', 'rev = "fewer-epochs"')) == [experiment, experiment]


def test_the_registries_listed_in_pipeline_md_are_the_code_s():
    """Each registry's line in docs/pipeline.md names exactly its entries, in order."""
    from stages.classifiers import CLASSIFIERS  # noqa: PLC0415
    from stages.datasets import KINDS  # noqa: PLC0415
    from stages.functions import ACTIVATIONS, FEATURES  # noqa: PLC0415
    from stages.problems import METRICS  # noqa: PLC0415

    registries = {"KINDS": KINDS, "ACTIVATIONS": ACTIVATIONS, "FEATURES": FEATURES, "METRICS": METRICS}
    registries["CLASSIFIERS"] = CLASSIFIERS
    section = DOCS["docs/pipeline.md"].split("## Registries", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"^- .*?`(\w+)`.*?\): (.*)$", section, flags=re.MULTILINE))
    assert listed.keys() == registries.keys()
    for name, registry in registries.items():
        assert re.findall(r"`([^`]+)`", listed[name]) == list(registry), name
