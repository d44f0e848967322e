"""The README documents every setting (the table is generated from bookqa/settings.py)."""
from pathlib import Path

from bookqa.settings import describe

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_with_a_meaning():
    for var, _default, note in describe():
        assert note, f"{var} has no comment in bookqa/settings.py"
        assert f"`{var}`" in README, f"{var} is missing from the README settings table (python -m bookqa.settings)"


def test_readme_names_the_two_setup_commands():
    assert "make run" in README and "make test" in README
