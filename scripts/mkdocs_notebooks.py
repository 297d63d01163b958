"""mkdocs hook: the notebooks in notebooks/ become pages of the site under notebooks/, as stored (with
their outputs; mkdocs-jupyter renders them and never executes them), and the docs' links to
``../notebooks/NAME.ipynb`` (right on a repository page) point at those pages on the site."""
from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns them into pages
def on_files(files: Files, config) -> Files:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(File(f"notebooks/{path.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    return markdown.replace("](../notebooks/", "](notebooks/")
