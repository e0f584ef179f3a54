"""Build plots_page/index.html, the page `dvc plots show` and `dvc plots diff` fill with charts.

DVC's default page (dvc_render.html.PAGE_HTML) loads vega, vega-lite and vega-embed from a CDN
through its `{scripts}` placeholder, so with no network it draws nothing. This page is the same
with the three libraries inlined, from the bundle the pinned vl-convert-python ships
(vl_convert.javascript_bundle), so it draws every chart with no network, from wherever `-o` puts
it. It has no `{scripts}` placeholder, so DVC's CDN <script> tags are left out.

The page is committed, and the committed .dvc/config points plots.html_template at it, so every
checkout has it with no build step. It is never a build output on purpose: DVC 3.67 reads a
configured template path that is not a file as the template's text and fails ("HTML template has
to contain '{plot_divs}'"). After changing the vl-convert-python pin, rebuild it and commit it:

    python plots_page/build.py

The same pin gives the same bytes; tests/test_plots_page.py checks that the committed page is what
this builds.
"""

import re
import sys
from importlib.metadata import version
from pathlib import Path

import vl_convert

OUTPUT = Path(__file__).resolve().parent / "index.html"
# DVC's chart templates are written for Vega-Lite v5 (their $schema, and its CDN page's 5.2.0):
# compile them with the newest v5 that vl-convert ships, not its default (6.x). Fixed here, the
# page also stays the same when that default moves. (vega-embed notes in the console that the
# compiled v5 spec runs on Vega 6, the only Vega in the bundle; it draws the same.)
VEGA_LITE = "5.21"
# The globals DVC's per-chart scripts call (`vegaEmbed('#id', spec)`), and the two libraries under
# the names their CDN builds use.
GLOBALS = "window.vegaEmbed = vegaEmbed; window.vegaLite = vegaLite; window.vega = vega;"
# The placeholders dvc_render fills with str.replace over the whole page.
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

# dvc_render.html.PAGE_HTML with the libraries where it has `{scripts}`.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Built by plots_page/build.py: {versions}, inlined so the page needs no network. -->
    <script>
{libraries}
    </script>
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


def libraries() -> str:
    """vega, vega-lite and vega-embed as one classic script that sets the globals."""
    code = vl_convert.javascript_bundle(GLOBALS, vl_version=VEGA_LITE)
    for placeholder in PLACEHOLDERS:
        if placeholder in code:
            sys.exit(f"the bundle contains {placeholder}, which DVC would replace")
    # Inside <script>, `</script` would end the element and `<!--` can change how it is parsed.
    code = re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE).replace("<!--", "<\\!--")
    # The bundle is an ES module's body: run it strict, as a module is, and inside a function, so
    # that its top-level const/let names stay out of the page's global scope, where they would
    # clash with the `var spec` of DVC's chart scripts.
    return f'(function () {{\n"use strict";\n{code}\n}})();'


def page() -> str:
    versions = (
        f"vega@{vl_convert.get_vega_version()}, vega-lite@{VEGA_LITE}, "
        f"vega-embed@{vl_convert.get_vega_embed_version()} "
        f"from vl-convert-python {version('vl-convert-python')}"
    )
    built = PAGE.replace("{versions}", versions).replace("{libraries}", libraries())
    for placeholder in PLACEHOLDERS:
        count = built.count(placeholder)
        expected = 0 if placeholder == "{scripts}" else 1
        if count != expected:
            sys.exit(f"built page has {placeholder} {count} times, expected {expected}")
    return built


def main() -> None:
    OUTPUT.write_bytes(page().encode())  # bytes: the same file on every platform
    print(f"wrote {OUTPUT.name} ({OUTPUT.stat().st_size} bytes); commit it")


if __name__ == "__main__":
    main()
