"""The seqvae command line: sample, inspect, JSON output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from seqvae.cli import main
from tests.conftest import dataset


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_then_inspect_json(tmp_path, capsys):
    path = tmp_path / "events.csv"
    code, out, _ = run_cli(capsys, "sample", "--out", str(path), "--users", "50", "--seed", "3")
    assert code == 0 and path.exists() and (tmp_path / "items.csv").exists()
    code, out, err = run_cli(capsys, "inspect", str(path), "--json")
    assert code == 0 and err == ""
    result = json.loads(out)  # exactly one JSON object on stdout
    for key in ("rows_read", "rows_kept", "dropped", "users", "items", "events", "columns",
                "warnings"):
        assert key in result
    assert result["users"] == 50
    assert result["columns"]["event"] == "event_type"
    assert result["rows_read"] == result["rows_kept"] + sum(result["dropped"].values())


def test_inspect_human_output(sample_events, capsys):
    code, out, _ = run_cli(capsys, "inspect", str(sample_events))
    assert code == 0
    assert "users" in out and "2,000" in out and "ingest report" in out


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty"),
    (b"user,item\n1,5\n2,5\n", "only one item"),
    (b"\x00\x01\x02binary", "binary"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, content, reason):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    code, out, err = run_cli(capsys, "inspect", str(path), "--json")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and reason in err and "bad.csv" in err


def test_train_passes_the_position_flag_to_the_model(tmp_path, monkeypatch):
    import seqvae.pipeline

    seen = []

    def train(sequences, config, **_):
        seen.append(config)
        raise SystemExit(9)  # stop before any training

    monkeypatch.setattr(seqvae.pipeline, "train", train)
    path = tmp_path / "log.csv"
    path.write_text("user,item\n" + "".join(f"u{u},i{(u + t) % 5}\n" for u in range(6)
                                             for t in range(4)))
    for flag, want in ((["--position-from", "start"], "start"), ([], "end")):
        with pytest.raises(SystemExit):
            main(["train", str(path), "--out", str(tmp_path / "model"), "--quiet", *flag])
        assert seen.pop().position_from == want
    with pytest.raises(SystemExit) as refused:  # argparse: not one of the choices
        main(["train", str(path), "--out", str(tmp_path / "model"), "--position-from", "mid"])
    assert refused.value.code == 2


def test_reading_flags(tmp_path, capsys):
    path = tmp_path / "log.txt"
    path.write_text("a|b|c\nx|1|2024-01-01\ny|2|2024-01-02\nx|2|2024-01-03\n")
    code, out, err = run_cli(capsys, "inspect", str(path), "--json", "--sep", "pipe",
                             "--no-header", "--names", "who,what,when", "--user-col", "who",
                             "--item-col", "what", "--timestamp-col", "when")
    assert code == 0, err
    result = json.loads(out)
    assert result["columns"]["user"] == "who" and result["rows_read"] == 4


def test_inspect_movielens(capsys):
    code, out, _ = run_cli(capsys, "inspect", str(dataset("ml-100k", "u.data")), "--json",
                           "--k-core", "5")
    result = json.loads(out)
    assert code == 0 and result["users"] == 943 and result["rows_read"] == 100_000
    # items rated by fewer than 5 users go, and the report says how many events that took
    assert result["dropped"]["k_core"] > 0
    assert result["events"] + result["dropped"]["k_core"] == 100_000


def test_console_script_and_help():
    result = subprocess.run([sys.executable, "-m", "seqvae.cli", "--help"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0 and "inspect" in result.stdout and "sample" in result.stdout
    result = subprocess.run([sys.executable, "-m", "seqvae.cli", "inspect", "--help"],
                            capture_output=True, text=True, check=False)
    assert "--user-col" in result.stdout and "--missing-timestamp" in result.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`seqvae train` on a small generated log, through the command line (once for the module:
    it also writes the TensorBoard scalars that `test_train_writes_tensorboard_scalars` reads)."""
    folder = tmp_path_factory.mktemp("cli")
    assert main(["sample", "--out", str(folder / "events.csv"), "--users", "120", "--items",
                 "60", "--seed", "2"]) == 0
    out = folder / "model"
    code = main(["train", str(folder / "events.csv"), "--out", str(out), "--epochs", "2",
                 "--latent-dim", "8", "--hidden-dim", "16", "--max-len", "20",
                 "--label-smoothing", "0.05", "--quiet",
                 "--json", "--tensorboard", str(folder / "tensorboard")])
    assert code == 0
    return folder, out


def test_train_writes_a_model_directory(trained, capsys):
    _, out = trained
    assert (out / "model.keras").exists() and (out / "metrics.json").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "leave-one-out" and "NDCG@10" in metrics["test"]
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["latent_dim"] == 8 and config["data"]["users"] == 120
    assert config["model"]["label_smoothing"] == 0.05
    assert config["model"]["position_from"] == "end"  # the default


def test_recommend_for_a_user_and_a_new_sequence(trained, capsys):
    _, out = trained
    capsys.readouterr()
    code, stdout, _ = run_cli(capsys, "recommend", str(out), "--user", "U00001", "--k", "4",
                              "--json")
    result = json.loads(stdout)
    assert code == 0 and len(result["items"]) == 4
    assert [r["rank"] for r in result["items"]] == [1, 2, 3, 4]
    code, stdout, _ = run_cli(capsys, "recommend", str(out), "--items", "P0001,P0002")
    assert code == 0 and "top 10" in stdout


def test_recommend_bad_input_exits_2(trained, capsys, tmp_path):
    _, out = trained
    capsys.readouterr()
    code, stdout, err = run_cli(capsys, "recommend", str(out), "--user", "nobody")
    assert code == 2 and stdout == "" and "not in the model's users" in err
    assert err.count("\n") == 1
    code, _, err = run_cli(capsys, "recommend", str(tmp_path / "missing"), "--user", "U00001")
    assert code == 2 and "not a model directory" in err


def test_train_refuses_a_log_it_cannot_learn_from(tmp_path, capsys):
    path = tmp_path / "short.csv"
    path.write_text("user,item\n1,a\n2,b\n3,a\n")
    code, _, err = run_cli(capsys, "train", str(path), "--out", str(tmp_path / "m"), "--quiet")
    assert code == 2 and "at least 3 events" in err
    assert not (tmp_path / "m").exists()


def test_evaluate_writes_the_documented_json(sample_events, tmp_path, capsys):
    out = tmp_path / "results.json"
    code, stdout, _ = run_cli(capsys, "evaluate", str(sample_events), "--models", "pop,itemknn",
                              "--k", "5,10", "--json", str(out), "--quiet", "--save-models",
                              str(tmp_path / "models"))
    assert code == 0
    result = json.loads(out.read_text())
    # every chosen model saved, and read back as that model with its test metrics
    from seqvae.bundle import load

    knn_saved = load(tmp_path / "models" / "itemknn")
    assert knn_saved.name == "itemknn" and load(tmp_path / "models" / "pop").name == "pop"
    assert knn_saved.metrics_["test"] == pytest.approx(result["results"][1]["metrics"])
    assert knn_saved.params_ == result["results"][1]["params"]
    assert result["protocol"] == "leave-one-out"
    assert result["dataset"] == {"users": 2000, "items": 1000, "events": 69372}
    assert result["selection"] == "NDCG@10"
    assert [r["model"] for r in result["results"]] == ["pop", "itemknn"]
    for entry in result["results"]:
        assert set(entry) >= {"model", "metrics", "fit_seconds", "eval_seconds", "params"}
        for name in ("NDCG@5", "HR@10", "Recall@10", "TruncatedRecall@10", "Precision@10",
                     "F1@10", "MRR@10", "AUC", "Coverage@10"):
            assert 0.0 < entry["metrics"][name] <= 1.0, name
        # training events of the recommended items: at least one each
        assert entry["metrics"]["AvgPopularity@10"] >= 1.0
    knn = result["results"][1]
    # the neighbourhood size was chosen on validation, from the grid, by the best NDCG@10
    tried = knn["tried"]
    assert knn["params"]["neighbours"] == max(tried, key=lambda t: t["NDCG@10"])["neighbours"]
    assert len(tried) > 1
    # the table names every model and the choice made
    assert "itemknn" in stdout and "chosen neighbours=" in stdout


def test_evaluate_holdout_users_with_ratings(tmp_path, capsys):
    rows = ["user,item,rating,ts"]
    for user in range(60):
        for step in range(12):
            rows.append(f"u{user},i{(user * 3 + step) % 40},{1 + (user + step) % 5},{step}")
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "r.json"
    code, _, _ = run_cli(capsys, "evaluate", str(path), "--protocol", "holdout-users",
                         "--models", "pop,ease", "--k", "5", "--min-rating", "4", "--json",
                         str(out), "--quiet")
    assert code == 0
    result = json.loads(out.read_text())
    assert result["protocol"] == "holdout-users"
    # ratings 4 and 5 only: two of every five events
    assert result["dataset"]["events"] == sum(
        1 for user in range(60) for step in range(12) if 1 + (user + step) % 5 >= 4)
    code, _, err = run_cli(capsys, "evaluate", str(path), "--min-rating", "9", "--quiet")
    assert code == 2 and "lower --min-rating" in err and "from 1 to 5" in err


@pytest.mark.parametrize(("args", "reason"), [
    (["--models", "pop,nonsense"], "nonsense"),
    (["--k", "ten"], "--k should be"),
    (["--min-rating", "4"], "needs a value"),
])
def test_evaluate_bad_input_exits_2(sample_events, capsys, args, reason):
    code, _, err = run_cli(capsys, "evaluate", str(sample_events), "--quiet", *args)
    assert code == 2
    assert reason in err
    assert len(err.strip().splitlines()) == 1


def test_embed_writes_parquet_csv_and_the_projector_pair(trained, tmp_path, capsys):
    import pandas as pd

    _, model = trained
    code, out, _ = run_cli(capsys, "embed", str(model), "--out", str(tmp_path / "u.parquet"))
    assert code == 0 and "120 users" in out
    table = pd.read_parquet(tmp_path / "u.parquet")
    assert len(table) == 120
    assert {"user", "events", "last_item", "mu_0", "mu_7", "sigma_7"} <= set(table.columns)
    assert (table[[f"sigma_{i}" for i in range(8)]] > 0).all().all()
    assert run_cli(capsys, "embed", str(model), "--out", str(tmp_path / "u.csv"))[0] == 0
    assert pd.read_csv(tmp_path / "u.csv")["mu_3"].to_numpy() == pytest.approx(
        table["mu_3"].to_numpy(), rel=1e-5)
    assert run_cli(capsys, "embed", str(model), "--out", str(tmp_path / "p.tsv"))[0] == 0
    vectors = (tmp_path / "p.tsv").read_text().splitlines()
    metadata = (tmp_path / "p_metadata.tsv").read_text().splitlines()
    assert len(vectors) == 120 and len(vectors[0].split("\t")) == 8
    assert metadata[0].split("\t") == ["user", "events", "last_item"] and len(metadata) == 121
    # --view taste: the Latent page's default map, the same users with every event combined
    assert run_cli(capsys, "embed", str(model), "--out", str(tmp_path / "t.csv"), "--view",
                   "taste")[0] == 0
    taste = pd.read_csv(tmp_path / "t.csv")
    assert list(taste["user"]) == list(table["user"])
    assert not np.allclose(taste["mu_3"], table["mu_3"], atol=1e-4)
    # every event is evidence: σ narrower than after the last event alone (equal for one event)
    sigmas = [f"sigma_{i}" for i in range(8)]
    assert (taste[sigmas].to_numpy() <= table[sigmas].to_numpy() * (1 + 1e-5)).all()
    code, _, err = run_cli(capsys, "embed", str(model), "--out", str(tmp_path / "u.xlsx"))
    assert code == 2 and "extension" in err
    assert not (tmp_path / "u.xlsx").exists()


def test_recommend_all_users_to_parquet_and_csv(trained, tmp_path, capsys):
    import pandas as pd

    _, model = trained
    code, out, _ = run_cli(capsys, "recommend", str(model), "--all", "--out",
                           str(tmp_path / "recs.parquet"), "--k", "5", "--json")
    assert code == 0 and json.loads(out)["users"] == 120
    recs = pd.read_parquet(tmp_path / "recs.parquet")
    assert len(recs) == 120 * 5 and recs["user"].nunique() == 120
    assert recs.groupby("user")["score"].apply(lambda s: s.is_monotonic_decreasing).all()
    # the same as asking for one user
    first = recs["user"].iloc[0]
    code, out, _ = run_cli(capsys, "recommend", str(model), "--user", first, "--k", "5", "--json")
    assert [r["item"] for r in json.loads(out)["items"]] == list(recs[recs["user"] == first]["item"])
    assert run_cli(capsys, "recommend", str(model), "--all", "--out",
                   str(tmp_path / "recs.csv"))[0] == 0
    assert len(pd.read_csv(tmp_path / "recs.csv")) == 120 * 10
    code, _, err = run_cli(capsys, "recommend", str(model), "--all")
    assert code == 2 and "--out" in err


def own_rows(folder, users: list[str], path) -> None:
    """The users' own rows of the training log, in file order, written as a new log."""
    import pandas as pd

    events = pd.read_csv(folder / "events.csv")
    events[events["user_id"].isin(users)].to_csv(path, index=False)


def test_recommend_log_of_stored_users_own_rows_is_their_recommendations(trained, tmp_path,
                                                                          capsys):
    folder, model = trained
    users = ["U00001", "U00007", "U00050"]
    own_rows(folder, users, tmp_path / "new.csv")
    code, out, err = run_cli(capsys, "recommend", str(model), "--log", str(tmp_path / "new.csv"),
                             "--k", "5", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["k"] == 5
    assert sorted(r["user"] for r in result["recommendations"]) == users
    for entry in result["recommendations"]:
        code, out, _ = run_cli(capsys, "recommend", str(model), "--user", entry["user"], "--k",
                               "5", "--json")
        stored = json.loads(out)["items"]
        # the same items in the same order, and the same scores (the user is encoded from the
        # log exactly as the training data was: event types and time gaps included)
        assert [r["item"] for r in entry["items"]] == [r["item"] for r in stored]
        assert [r["rank"] for r in entry["items"]] == [1, 2, 3, 4, 5]
        assert [r["score"] for r in entry["items"]] == pytest.approx(
            [r["score"] for r in stored], abs=1e-6)


def test_recommend_log_table_and_file(trained, tmp_path, capsys):
    import pandas as pd

    folder, model = trained
    users = [f"U{n:05d}" for n in range(1, 8)]
    own_rows(folder, users, tmp_path / "new.csv")
    code, out, _ = run_cli(capsys, "recommend", str(model), "--log", str(tmp_path / "new.csv"),
                           "--k", "3")
    assert code == 0
    # the first five users, then how many more there are
    assert out.count("top 3 for U") == 5 and "… and 2 more users" in out
    code, out, _ = run_cli(capsys, "recommend", str(model), "--log", str(tmp_path / "new.csv"),
                           "--k", "3", "--out", str(tmp_path / "recs.parquet"), "--json")
    assert code == 0 and json.loads(out)["users"] == 7
    recs = pd.read_parquet(tmp_path / "recs.parquet")
    assert list(recs.columns) == ["user", "rank", "item", "score"]
    assert sorted(recs["user"].unique()) == users and len(recs) == 7 * 3
    # the file holds what --json prints
    code, out, _ = run_cli(capsys, "recommend", str(model), "--log", str(tmp_path / "new.csv"),
                           "--k", "3", "--json")
    for entry in json.loads(out)["recommendations"]:
        rows = recs[recs["user"] == entry["user"]]
        assert list(rows["item"]) == [r["item"] for r in entry["items"]]


def test_recommend_log_bad_input_exits_2(trained, tmp_path, capsys):
    folder, model = trained
    own_rows(folder, ["U00001"], tmp_path / "new.csv")
    code, out, err = run_cli(capsys, "recommend", str(model), "--log", str(tmp_path / "new.csv"),
                             "--user", "U00001")
    assert code == 2 and out == "" and "leave out --user" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "recommend", str(model), "--log", str(tmp_path / "new.csv"),
                           "--k-core", "5")
    assert code == 2 and "--k-core shaped the model's vocabulary" in err
    (tmp_path / "strangers.csv").write_text("user,item\nx,NEW1\nx,NEW2\ny,NEW1\n")
    code, out, err = run_cli(capsys, "recommend", str(model), "--log",
                             str(tmp_path / "strangers.csv"))
    assert code == 2 and out == ""
    # the warning names the unknown items, then the one-line reason
    assert "'NEW1'" in err and err.strip().splitlines()[-1].startswith("seqvae recommend: ")
    assert "no user has an item the model knows" in err
    code, _, err = run_cli(capsys, "recommend", str(model), "--log", str(tmp_path / "none.csv"))
    assert code == 2 and "none.csv" in err


def test_train_writes_tensorboard_scalars(trained):
    import tensorflow as tf

    folder, model = trained
    files = sorted((folder / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1
    written: dict[str, dict[int, float]] = {}
    plugins = set()
    for record in tf.data.TFRecordDataset(str(files[0])):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            written.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
            plugins.add(value.metadata.plugin_data.plugin_name)
    history = json.loads((model / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in history] == [1, 2]
    metrics = sorted(history[0]["validation"])
    assert "NDCG@10" in metrics
    assert set(written) == {"loss", "reconstruction_loss", "kl_loss", "beta", "epoch_seconds",
                            *(f"validation/{m}" for m in metrics)}
    assert plugins == {"scalars"}  # drawn as TensorBoard scalar charts
    for epoch in history:
        step = epoch["epoch"]
        for tag in ("loss", "reconstruction_loss", "kl_loss", "beta"):
            # written as float32: equal to the history's float64 to float32 precision
            assert written[tag][step] == pytest.approx(epoch[tag], rel=1e-6, abs=1e-9), tag
        for name in metrics:
            assert written[f"validation/{name}"][step] == pytest.approx(
                epoch["validation"][name], rel=1e-6, abs=1e-9)
        assert written["epoch_seconds"][step] == pytest.approx(epoch["seconds"], rel=1e-6)


def test_side_tables_without_a_header_are_read_as_told(trained, tmp_path, capsys):
    """MovieLens ships u.item and u.user without a header line, '|'-separated, in Latin-1: the
    CLI reads such side tables with the header, key and title columns the user names, and uses
    them (titles beside recommendations, attributes beside each user's vector)."""
    import pandas as pd

    folder, model = trained
    items = pd.read_csv(folder / "items.csv", dtype=str)
    items["title"] = items["title"] + " é"  # Latin-1 when written below
    items.to_csv(tmp_path / "u.item", sep="|", header=False, index=False, encoding="latin-1")
    users = pd.DataFrame({"user": [f"U{u:05d}" for u in range(1, 121)],
                          "age": [str(20 + u % 40) for u in range(120)],
                          "job": [["writer", "doctor", "other"][u % 3] for u in range(120)]})
    users.to_csv(tmp_path / "u.user", sep="|", header=False, index=False)
    titles = dict(zip(items["item_id"], items["title"], strict=True))

    code, out, _ = run_cli(capsys, "inspect", str(folder / "events.csv"), "--json",
                           "--item-meta", str(tmp_path / "u.item"), "--item-meta-header", "no",
                           "--item-meta-title", "column_2", "--user-meta", str(tmp_path / "u.user"),
                           "--user-meta-header", "no")
    result = json.loads(out)
    assert code == 0
    assert result["item_meta"]["key"] == "column_1" and result["item_meta"]["title"] == "column_2"
    assert result["item_meta"]["rows"] == len(items)
    assert result["item_meta"]["matched"] == result["item_meta"]["of"] == 60
    assert result["user_meta"]["matched"] == result["user_meta"]["of"] == 120
    # told there is a header, the first item becomes the column names, and the human output
    # shows it: one row fewer, one item of the log missing from the table
    code, out, _ = run_cli(capsys, "inspect", str(folder / "events.csv"), "--item-meta",
                           str(tmp_path / "u.item"), "--item-meta-header", "yes")
    assert code == 0 and f"{len(items) - 1:,} rows, item id column 'P0001'" in out
    assert "59 of the log's 60 items found in it" in out

    code, out, _ = run_cli(capsys, "recommend", str(model), "--user", "U00001", "--k", "5",
                           "--json", "--item-meta", str(tmp_path / "u.item"),
                           "--item-meta-header", "no", "--item-meta-title", "column_2")
    rows = json.loads(out)["items"]
    assert code == 0 and len(rows) == 5
    assert [row["title"] for row in rows] == [titles[row["item"]] for row in rows]
    assert all(row["title"].endswith(" é") for row in rows)
    code, _, _ = run_cli(capsys, "recommend", str(model), "--all", "--out",
                         str(tmp_path / "r.parquet"), "--item-meta", str(tmp_path / "u.item"),
                         "--item-meta-header", "no")  # the title column detected
    written = pd.read_parquet(tmp_path / "r.parquet")
    assert code == 0 and list(written.columns) == ["user", "rank", "item", "title", "score"]
    assert written["title"].tolist() == [titles[item] for item in written["item"]]

    code, out, _ = run_cli(capsys, "embed", str(model), "--out", str(tmp_path / "p.tsv"),
                           "--user-meta", str(tmp_path / "u.user"), "--user-meta-header", "no")
    assert code == 0 and "120 of 120 users found" in out
    metadata = pd.read_csv(tmp_path / "p_metadata.tsv", sep="\t", dtype=str)
    assert list(metadata.columns) == ["user", "events", "last_item", "column_2", "column_3"]
    expected = users.set_index("user").loc[metadata["user"]]
    assert metadata["column_3"].tolist() == expected["job"].tolist()


def test_train_refit_ships_the_model_retrained_on_every_event(trained, capsys):
    folder, _ = trained
    capsys.readouterr()
    out = folder / "refitted"
    code, stdout, err = run_cli(capsys, "train", str(folder / "events.csv"), "--out", str(out),
                                "--epochs", "2", "--latent-dim", "8", "--hidden-dim", "16",
                                "--max-len", "20", "--refit")
    assert code == 0, err
    assert "retrained on all" in stdout and "held each user's last two out" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["refit"]["epochs"] == metrics["best_epoch"] and "NDCG@10" in metrics["test"]
    assert "retraining on every event" in err


def test_the_terminal_progress_line_names_the_network_of_an_ensemble():
    import io

    from seqvae.cli import ProgressBar
    from seqvae.training import BatchProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = ProgressBar(screen, width=4)
    bar.batch(BatchProgress(3, 30, 2, 2, 7.0, 6.9, 90.0, 0.01, 12.0, network=2, networks=3))
    assert screen.getvalue().startswith("\rnetwork 2/3 epoch 3/30 [####] 2/2  loss 7.000")
    bar.batch(BatchProgress(3, 30, 2, 2, 7.0, 6.9, 90.0, 0.01, 12.0))  # one network: no name
    assert screen.getvalue().split("\r")[-1].startswith("epoch 3/30 [####] 2/2")
