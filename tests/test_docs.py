"""The README and docs/ say what the project does: its commands, links and Python example are real,
and every line that names a registry's entries is held to the registry."""

import re
import sys
from collections import Counter

import pytest
from conftest import ROOT, sh

from stages.classifiers import CLASSIFIERS
from stages.datasets import KINDS
from stages.functions import ACTIVATIONS, FEATURES
from stages.problems import METRICS

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


def prose(text):
    """The text less its fenced code blocks (where `# ...` is a comment, not a heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def anchors(text) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens,
    a repeated one numbered from -1."""
    seen, found = Counter(), set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", prose(text), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


# Every link of every page that is not a URL: (page, file, anchor), file "" for the page itself.
LINKS = [
    (page, *re.fullmatch(r"([^#]*)(?:#(.*))?", target).groups())
    for page, text in sorted(DOCS.items())
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(text))
    if ":" not in target
]


@pytest.mark.parametrize(("page", "file", "anchor"), LINKS, ids=[f"{p}->{f}#{a or ''}" for p, f, a in LINKS])
def test_every_relative_link_resolves(page, file, anchor):
    target = (ROOT / page).parent / file if file else ROOT / page
    assert target.exists(), f"{page} links to {file}, which does not exist"
    if anchor is not None:
        assert anchor in anchors(target.read_text()), f"{page} links to {file}#{anchor}: no such heading"


def test_the_link_check_reads_anchors_as_github_does():
    text = "# Set up (two commands)\n## The loop\n```bash\n# not a heading\n```\n## The loop\n## `a.b`, c\n"
    assert anchors(text) == {"set-up-two-commands", "the-loop", "the-loop-1", "ab-c"}
    assert len(LINKS) > 20 and any(anchor for _, _, anchor in LINKS)


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


# ---------------------------------------------------------------------------------------------
# Lines that name a registry's entries: each written from the registry here, or read back against it,
# so that a new kind, activation, feature, metric or classifier fails until every such line says it.


def registry_lines() -> dict[str, str]:
    """docs/pipeline.md's Registries section: each registry's entries, and what its line promises."""

    def names(registry):
        return ", ".join(f"`{name}`" for name in registry)

    return {
        "KINDS": ", ".join(f"`{k}` ({kind.classes or '`data.classes`'})" for k, kind in KINDS.items()),
        "ACTIVATIONS": names(ACTIVATIONS),
        "FEATURES": names(FEATURES),
        "METRICS": ", ".join(
            f"`{name}` (`{m.torchmetrics}`, `{m.sklearn}`, {m.average})" for name, m in METRICS.items()
        ),
        "CLASSIFIERS": ", ".join(f"`{name}` (`{c.module}.{c.estimator}`)" for name, c in CLASSIFIERS.items()),
    }


def section(page, heading):
    return DOCS[page].split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_registries_listed_in_pipeline_md_are_the_code_s():
    """Each registry's line in docs/pipeline.md is the registry's entries, with what the line promises
    of each (the classes a kind makes, a metric's torchmetrics and scikit-learn names and its average,
    a classifier's scikit-learn module and class)."""
    listed = dict(
        re.findall(
            r"^- .*?`(\w+)`.*?\): (.*)$", section("docs/pipeline.md", "## Registries"), flags=re.MULTILINE
        )
    )
    for name, line in registry_lines().items():
        assert listed.get(name) == line, f"docs/pipeline.md's {name} line should read: ...): {line}"
    assert listed.keys() == registry_lines().keys()


def params_row(key):
    """The row of docs/pipeline.md's table of params.yaml's keys whose first cell is `key`, as its cells."""
    table = section("docs/pipeline.md", "## params.yaml")
    [row] = [line for line in table.splitlines() if line.startswith(f"| {key} |")]
    return [cell.strip() for cell in row.strip("|").split(" | ")]


def test_pipeline_md_describes_every_kind():
    _, meaning, _ = params_row("`data.kind`")
    named = [kind for kind in KINDS if re.search(rf"`{kind}`", meaning)]
    assert named == list(KINDS), meaning
    _, meaning, _ = params_row("`data.classes`")
    some, rest = re.fullmatch(r"number of classes \((.*); the others make (\d+)\)", meaning).groups()
    assert some.split(", ") == [kind for kind, k in KINDS.items() if k.classes is None]
    assert {k.classes for k in KINDS.values() if k.classes is not None} == {int(rest)}


def test_pipeline_md_names_every_classifier_s_class():
    _, meaning, _ = params_row("`baselines`")
    pairs = re.findall(r"`(\w+)`(?: is)? `(\w+)`", meaning)
    assert pairs == [(name, c.estimator) for name, c in CLASSIFIERS.items()], meaning


def test_the_readme_names_every_classifier_s_class():
    """The baselines paragraph and its table's first column (its numbers: test_baselines.py)."""
    paragraph = README.split("**Beside the classic classifiers.**", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"`([A-Z]\w+)`", paragraph) == [c.estimator for c in CLASSIFIERS.values()]
    labels = re.findall(r"^\| `(\w+)`: (\w+) ", README, flags=re.MULTILINE)
    assert labels == [(name, c.estimator) for name, c in CLASSIFIERS.items()]


def test_errors_md_shows_the_activations_message_as_the_schema_writes_it():
    """The row of a value not among the choices: the message params.yaml's schema gives today."""
    import yaml  # noqa: PLC0415

    from stages.params import ParamsError, parse_params  # noqa: PLC0415

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["datasets"]["moons"]["model"]["activation"] = "Relu"
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    assert ", ".join(ACTIVATIONS) in str(caught.value)
    assert f"`error: {caught.value}`" in DOCS["docs/errors.md"]
