"""The documentation stays inside the repository and agrees with the card and the architecture builder."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _tracked() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [REPO / n for n in names.splitlines() if (REPO / n).is_file()]


def test_nothing_points_outside_the_repository():
    offenders = []
    for path in [*_tracked(), *DOCS.glob("*.md")]:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for needle in ("../shared", "shared/spec", "/work/"):
            if needle in text and path.name != "test_docs.py":
                offenders.append(f"{path.relative_to(REPO)}: {needle}")
    assert offenders == []


@pytest.mark.parametrize("page", ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))])
def test_relative_links_resolve_inside_the_repository(page):
    path = REPO / page
    links = [m for m in LINK.findall(path.read_text()) if "://" not in m]
    for link in links:
        target = (path.parent / link).resolve()
        assert target.is_relative_to(REPO) and target.exists(), f"{page}: {link}"
    if page == "README.md":
        assert "docs/protocol.md" in links


def test_architecture_page_adds_up_to_the_card_figures(card):
    text = (DOCS / "architecture.md").read_text()
    table = text[text.index("| part | parameters |"):text.index("**total**")]
    parts = [int(n.replace(",", "")) for n in re.findall(r"\| ([\d,]+) \|", table)]
    assert len(parts) == 8 and sum(parts) == card.reference_params
    assert f"**{card.reference_params:,} parameters**" in text
    assert f"**{card.reference_gflops} GFLOPs**" in text


def test_protocol_page_states_the_card_protocol(card):
    text = " ".join((DOCS / "protocol.md").read_text().split())
    p = card.protocol
    assert "stride 32, then 16, then 8" in text and list(p.strides) == [32, 16, 8]
    assert f"first {p.keep_top_k} candidates, before suppression" in text
    assert f"**greater than {p.nms_threshold}**" in text
    assert f"to `[0, {p.clip_annotation:g}]`" in text
    lo, hi = p.height_range
    assert f"**{lo:g} <= height < {hi:g}**" in text
    assert f"IoU threshold **{p.overlap_threshold}**" in text
    assert f"**{card.reference_map:.2f} % mAP**" in text
