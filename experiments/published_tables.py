"""The study's published tables, shipped beside the code (experiments/published/, with
their citation): what the E1 and E2 figures and the Table-5 comparison draw."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PUBLISHED = Path(__file__).resolve().parent / "published"
# the study's E1 and E2 tables, by the x they are drawn against, with their label
STUDY_TABLES = {"size": ("thesis_table1_e1.csv", "the study, Table 1"),
                "tiles": ("thesis_table2_e2.csv", "the study, Table 2")}  # fmt: skip
TABLE5 = "thesis_table5_e3.csv"


def study_table(x: str) -> tuple[pd.DataFrame, str]:
    """The study's E1 (x = size) or E2 (x = tiles) table and its label."""
    name, label = STUDY_TABLES[x]
    return pd.read_csv(PUBLISHED / name), label


def table5() -> pd.DataFrame:
    """The study's own rows of its Table 5 (not the values it quotes from others)."""
    table = pd.read_csv(PUBLISHED / TABLE5)
    return table[table["source"] == "thesis"]
