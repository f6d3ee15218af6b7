"""README's Layout section names every file of distill/ and what it does (one line each)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_distill_module_is_named_in_the_readme_layout():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # the "## Layout" heading itself, not a "### Layouts ..." heading that contains the same characters
    layout = readme[re.search(r"^## Layout$", readme, flags=re.M).end():].split("\n## ", 1)[0]
    files = sorted(p.name for p in (ROOT / "src" / "detdistill" / "distill").glob("*.py") if p.name != "__init__.py")
    assert len(files) >= 10  # the walk must see the package, or an empty list would pass
    missing = [name for name in files if name not in layout]
    assert not missing, f"README's Layout does not name {missing}"
