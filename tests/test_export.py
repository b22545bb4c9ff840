"""seqvae.export: formula injection neutralised, files written whole or not at all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqvae.export import atomic_write, neutralise_formulas, user_table, write_projector, write_table


def test_cells_that_would_run_as_formulas_are_prefixed():
    frame = pd.DataFrame({"user": ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "ok",
                                   "\tTAB"],
                          "score": [1.0, -2.0, 3.0, 4.0, 5.0, 6.0]})
    safe = neutralise_formulas(frame)
    assert safe["user"].tolist() == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)", "ok",
                                     "'\tTAB"]
    # numbers are numbers, not text: a negative score stays a number
    assert safe["score"].tolist() == frame["score"].tolist()
    assert frame["user"][0].startswith("=")  # the input is not changed


def test_write_table_csv_is_safe_and_parquet_keeps_values(tmp_path):
    frame = pd.DataFrame({"item": ["=cmd|' /C calc'!A0", "plain"], "n": [1, 2]})
    write_table(frame, tmp_path / "t.csv")
    assert pd.read_csv(tmp_path / "t.csv")["item"].tolist() == ["'=cmd|' /C calc'!A0", "plain"]
    write_table(frame, tmp_path / "t.parquet")
    assert pd.read_parquet(tmp_path / "t.parquet")["item"].tolist() == frame["item"].tolist()
    with pytest.raises(ValueError, match="extension"):
        write_table(frame, tmp_path / "t.xlsx")


def test_an_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("the previous export\n")

    def broken(path):
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "the previous export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_projector_pair_keeps_cells_on_one_line(tmp_path):
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    metadata = pd.DataFrame({"user": ["a", "b\tc", "d\ne"], "events": [1, 2, 3]})
    first, second = write_projector(vectors, metadata, tmp_path / "emb.tsv")
    assert first.read_text().splitlines() == ["0\t1", "2\t3", "4\t5"]
    assert second.name == "emb_metadata.tsv"
    assert second.read_text().splitlines() == ["user\tevents", "a\t1", "b c\t2", "d e\t3"]


def test_the_user_table_keeps_the_dominant_event_only_where_users_differ_in_it():
    frame = pd.DataFrame({"user": ["a", "b", "c"], "events": [3, 1, 2],
                          "dominant_event": ["view", "buy", "view"]})
    mu, sigma = np.zeros((3, 2), np.float32), np.ones((3, 2), np.float32)
    coords = {"PCA-2": np.arange(6, dtype=np.float32).reshape(3, 2)}
    clusters = np.array([0, 1, 0])
    typed = user_table(frame, mu, sigma, coords, clusters, {0: "one", 1: "two"})
    assert typed["dominant_event"].tolist() == ["view", "buy", "view"]
    assert typed["cluster_name"].tolist() == ["one", "two", "one"]
    assert typed[["x_pca", "y_pca"]].to_numpy().tolist() == [[0, 1], [2, 3], [4, 5]]
    # a log without event types: everyone's "dominant event" is the one default type, which
    # would read as a fact about the users
    untyped = user_table(frame.assign(dominant_event="unknown"), mu, sigma, coords, clusters)
    assert "dominant_event" not in untyped.columns
    assert list(untyped.columns[:3]) == ["user", "events", "x_pca"]
