"""The README's "Supported model families" table is the built-in profiles, not a copy that drifts."""

from __future__ import annotations

from runner_support import REPO

from videogen_runner.families_doc import END, START, replace_section, section
from videogen_runner.profiles import profile_table


def test_the_readme_table_is_generated_from_the_profiles() -> None:
    readme = (REPO / "README.md").read_text()

    assert START in readme and END in readme
    assert replace_section(readme) == readme, (
        "README.md is out of date: run `python -m videogen_runner.families_doc --write README.md`"
    )


def test_every_builtin_profile_has_a_row() -> None:
    table = section()
    for class_name in profile_table({}):
        assert f"| `{class_name}` |" in table
    assert "| `WanPipeline` with model_index.expand_timesteps=True (Wan 2.2 TI2V) |" in table
