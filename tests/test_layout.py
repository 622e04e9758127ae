"""Repository-wide checks that belong to no one stage: the design notes the code
points to live in the repository (architecture review, defect 11)."""

from __future__ import annotations

from helpers import ROOT


def test_docstrings_point_to_docs_in_the_repo():
    arch = ROOT / "docs" / "architecture.md"
    assert arch.is_file()
    text = arch.read_text()
    for topic in ("seed", "schema", "sufficient statistics", "study/design", "models/bayes"):
        assert topic in text, topic
    code = [
        *ROOT.glob("study/**/*.py"),
        *ROOT.glob("models/**/*.py"),
        *ROOT.glob("benchmarks/*.py"),
    ]
    assert not [str(p) for p in code if "design.md" in p.read_text()]
