"""The README's configuration table is the one wahook.config generates (docs cannot drift)."""

from pathlib import Path

from wahook.config import config_table_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_table_matches_config_options() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("-->\n", text.index("<!-- config-table:start")) + len("-->\n")
    end = text.index("<!-- config-table:end -->")
    assert text[start:end].strip() == config_table_markdown().strip()
