"""Build the offline HTML template for `dvc plots show` / `dvc plots diff`, and point DVC at it.

DVC's default page (dvc_render.html.PAGE_HTML) loads vega, vega-lite and vega-embed from a CDN
through its `{scripts}` placeholder. This template is the same page with the three libraries'
minified browser bundles inlined instead (from `npm ci` in this folder, versions pinned in
package-lock.json), so the page works with no network and from whatever folder `-o` names. It has
no `{scripts}` placeholder, so DVC's CDN <script> tags are left out.

Run after `npm ci --prefix plots_page`:

    python plots_page/build.py

It writes plots_page/dist/index.html (git-ignored) and sets `plots.html_template` in
.dvc/config.local (git-ignored, resolved relative to .dvc/). The setting stays out of the committed
.dvc/config on purpose: DVC 3.67 treats a configured template path that is not a file as the
template's text and fails ("HTML template has to contain '{plot_divs}'"), so a checkout that has
not built the page keeps DVC's default CDN page instead of breaking.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEMPLATE = HERE / "dist" / "index.html"
# As DVC reads it: a relative plots.html_template is joined to the .dvc directory.
CONFIG_VALUE = "../plots_page/dist/index.html"

BUNDLES = [  # load order matters: vega-lite needs vega, vega-embed needs both
    ("vega", "build/vega.min.js"),
    ("vega-lite", "build/vega-lite.min.js"),
    ("vega-embed", "build/vega-embed.min.js"),
]
# The placeholders dvc_render fills with str.replace over the whole page.
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

# dvc_render.html.PAGE_HTML with the inlined libraries where it has `{scripts}`.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Built by plots_page/build.py: {versions}, inlined so the page needs no network. -->
{libraries}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def bundle(package: str, path: str, modules: Path) -> tuple[str, str]:
    """(version, script element) for one library's browser bundle."""
    folder = modules / package
    try:
        version = json.loads((folder / "package.json").read_text(encoding="utf8"))["version"]
        code = (folder / path).read_text(encoding="utf8")
    except FileNotFoundError as error:
        sys.exit(f"{error.filename} is missing: run `npm ci --prefix plots_page` first")
    # The source map is not shipped with the page.
    code = re.sub(r"\n?//# sourceMappingURL=\S+\s*$", "", code)
    for placeholder in PLACEHOLDERS:
        if placeholder in code:
            sys.exit(f"{package}/{path} contains {placeholder}, which DVC would replace")
    # Inside <script>, `</script` would end the element and `<!--` can change how it is parsed.
    code = re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE).replace("<!--", "<\\!--")
    return version, f"    <script>/* {package}@{version} */\n{code}\n    </script>"


def build(modules: Path, output: Path) -> str:
    pieces = [bundle(package, path, modules) for package, path in BUNDLES]
    named = zip(BUNDLES, pieces, strict=True)
    versions = ", ".join(f"{package}@{version}" for (package, _), (version, _) in named)
    page = PAGE.replace("{versions}", versions).replace("{libraries}", "\n".join(s for _, s in pieces))
    for placeholder in PLACEHOLDERS:
        count = page.count(placeholder)
        expected = 0 if placeholder == "{scripts}" else 1
        if count != expected:
            sys.exit(f"built template has {placeholder} {count} times, expected {expected}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf8")
    return versions


def configure() -> None:
    """Set plots.html_template in .dvc/config.local with this environment's dvc."""
    dvc = shutil.which("dvc")
    command = [dvc] if dvc else [sys.executable, "-m", "dvc"]
    result = subprocess.run(
        [*command, "config", "--local", "plots.html_template", CONFIG_VALUE],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"dvc config --local failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-config", action="store_true", help="only write the template")
    args = parser.parse_args()
    versions = build(HERE / "node_modules", TEMPLATE)
    size = TEMPLATE.stat().st_size / 1e6
    print(f"wrote {TEMPLATE.relative_to(ROOT)} ({versions}; {size:.1f} MB)")
    if not args.no_config:
        configure()
        print(f"set plots.html_template = {CONFIG_VALUE} in .dvc/config.local")


if __name__ == "__main__":
    main()
