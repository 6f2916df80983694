"""Screenshots of a built report in a real headless browser (Debian's chromium through Playwright),
for the README: the index, one study page and one run page, full-page PNGs.

    medmnist-lab report studies/resnet18-vs-50 --out-dir report
    python benchmarks/screenshots.py report --study resnet18-vs-50 --out docs/

Pages are picked by a substring of their file name; the browser must load each without a console
error or a failed request (the same checks as tests/test_report.py), else nothing is written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def page(site: Path, kind: str, part: str) -> Path:
    found = sorted(p for p in (site / kind).glob("*.html") if part in p.name)
    if not found:
        sys.exit(f"error: no {kind} page of {site} has '{part}' in its name")
    return found[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("site", type=Path, help="a folder written by `medmnist-lab report --out-dir`")
    ap.add_argument("--study", required=True, help="part of the study page's file name")
    ap.add_argument("--run", default=None, help="part of a run page's file name (default: the first run)")
    ap.add_argument("--out", type=Path, required=True, help="folder for report-index.png, report-study.png, ...")
    ap.add_argument("--width", type=int, default=1280)
    args = ap.parse_args()
    args.site = args.site.resolve()  # file:// URIs need an absolute path
    if not (args.site / "index.html").is_file():
        sys.exit(f"error: {args.site} holds no index.html: give a folder written by `medmnist-lab report --out-dir`")
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("error: needs Debian's chromium (apt-get install chromium)")
    shots = {
        "report-index.png": args.site / "index.html",
        "report-study.png": page(args.site, "studies", args.study),
        "report-run.png": page(args.site, "runs", args.run or ""),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": args.width, "height": 900})
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        tab.on("requestfailed", lambda r: errors.append(f"failed request: {r.url}"))
        images = {}
        for name, html in shots.items():
            tab.goto(html.as_uri())
            tab.wait_for_load_state("load")
            images[name] = tab.screenshot(full_page=True)
        browser.close()
    if errors:
        sys.exit("error: the browser reported: " + "; ".join(errors))
    for name, png in images.items():
        (args.out / name).write_bytes(png)
        print(f"wrote {args.out / name} ({len(png) // 1024} KiB) from {shots[name].name}")


if __name__ == "__main__":
    main()
