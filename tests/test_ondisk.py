"""The out-of-core path: a store built in chunks and blocks holds exactly what `read_log` +
`encode` give, and training batches read from it cover the same windows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from seqvae.batches import make_batches
from seqvae.errors import LogFormatError
from seqvae.logs import IngestOptions, keep_positive, read_log
from seqvae.ondisk import (
    StoreBatches,
    StoreError,
    StoreOptions,
    build_store,
    refit_store,
    user_blocks,
)
from seqvae.sequences import SequenceOptions, encode
from seqvae.splits import leave_one_out
from seqvae.training import SeqVAEConfig

# chunks of a few hundred rows and blocks of a few hundred events: every pass runs many times
TINY = StoreOptions(chunk_bytes=1 << 13, chunk_rows=700, block_events=500)


def messy_log(seed: int = 3, n: int = 6000, unreadable: bool = True) -> pd.DataFrame:
    """Ids with leading zeros, unordered times, gaps in every column, exact duplicates, a user
    without any timestamp, ratings, a few unreadable times and ratings."""
    rng = np.random.default_rng(seed)
    users = np.array([f"{u:03d}" for u in range(300)], dtype=object)
    frame = pd.DataFrame({
        "user_id": users[rng.zipf(1.3, n) % 300],
        "item_id": np.array([f"sku-{i}" for i in range(400)], dtype=object)[
            (rng.zipf(1.2, n) + rng.integers(0, 5, n)) % 400],
        "timestamp": pd.Timestamp("2024-01-01", tz="UTC")
        + pd.to_timedelta(rng.integers(0, 90 * 86400, n), unit="s"),
        "event": rng.choice(["view", "cart", "purchase"], n, p=[0.7, 0.2, 0.1]),
        "rating": rng.integers(1, 6, n).astype(float),
    })
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    for column, share in (("user_id", 0.01), ("item_id", 0.01), ("timestamp", 0.03),
                          ("event", 0.02), ("rating", 0.02)):
        frame.loc[rng.random(n) < share, column] = None
    frame.loc[frame["user_id"] == "250", "timestamp"] = None  # a user with no timestamp
    if unreadable:  # text only: a Parquet column has one type
        frame["rating"] = frame["rating"].astype(object)
        frame.loc[rng.random(n) < 0.005, "timestamp"] = "yesterday"  # warned, then missing
        frame.loc[rng.random(n) < 0.005, "rating"] = "five"  # warned, then missing
    frame = pd.concat([frame, frame.sample(300, random_state=seed)])  # exact duplicates
    return frame.sample(frac=1.0, random_state=seed + 1).reset_index(drop=True)


def assert_same(memory, stored) -> None:
    assert list(memory.users) == list(stored.users)
    assert memory.item_vocab == stored.item_vocab
    assert memory.event_vocab == stored.event_vocab
    assert memory.has_timestamps == stored.has_timestamps
    for name in ("offsets", "items", "events", "gaps", "timestamps", "event_index"):
        np.testing.assert_array_equal(getattr(memory, name), np.asarray(getattr(stored, name)),
                                      err_msg=name)


def in_memory(path, options, sequence_options, min_value=None):
    log, report = read_log(path, options)
    if min_value is not None:
        log = keep_positive(log, min_value, report)
    return encode(log, sequence_options, report), report


@pytest.mark.parametrize("options, sequence_options, min_value", [
    (IngestOptions(), SequenceOptions(), None),
    (IngestOptions(missing_timestamp="file-order", missing_value="mean"),
     SequenceOptions(k_core=3), None),
    (IngestOptions(missing_timestamp="drop", missing_value="drop"),
     SequenceOptions(min_item_count=3), 3.0),
    (IngestOptions(drop_duplicates=False), SequenceOptions(k_core=2, time_buckets=10), 2.0),
], ids=["defaults", "file-order+k-core", "drops+rare-items+rating", "duplicates-kept"])
def test_store_holds_the_in_memory_encoding(tmp_path, options, sequence_options, min_value):
    path = tmp_path / "log.csv"
    messy_log().to_csv(path, index=False)
    memory, report = in_memory(path, options, sequence_options, min_value)
    store, store_report = build_store(path, tmp_path / "store", options, sequence_options,
                                      min_value=min_value, sizes=TINY)
    assert_same(memory, store.sequences())
    # the same account of every row: counts, the lines behind them, the warnings word for word
    assert store_report.rows_read == report.rows_read
    assert store_report.dropped == report.dropped
    assert store_report.dropped_lines == report.dropped_lines
    assert store_report.filled == report.filled
    assert store_report.warnings == report.warnings
    assert len(report.warnings) >= 2 and all("(lines " in w for w in report.warnings)
    assert store_report.balanced
    assert store.report.rows_kept == store_report.rows_kept  # saved with the store


def test_parquet_file_and_folder_give_the_csv_encoding(tmp_path):
    frame = messy_log(seed=5, unreadable=False)
    frame.to_csv(tmp_path / "log.csv", index=False)
    memory, _ = in_memory(tmp_path / "log.csv", IngestOptions(), SequenceOptions())
    frame.to_parquet(tmp_path / "log.parquet", index=False)
    parts = tmp_path / "parts"
    parts.mkdir()
    for number, start in enumerate(range(0, len(frame), 2000)):
        frame.iloc[start:start + 2000].to_parquet(parts / f"part-{number:03d}.parquet",
                                                  index=False)
    for source in (tmp_path / "log.parquet", parts):
        store, _ = build_store(source, tmp_path / f"store-{source.stem}", sizes=TINY)
        assert_same(memory, store.sequences())


def test_integer_ids_keep_users_in_order_of_first_appearance(tmp_path):
    path = tmp_path / "ratings.tsv"
    path.write_text("30\t7\t5\t100\n10\t7\t3\t101\n30\t8\t4\t102\n20\t9\t1\t103\n10\t9\t2\t104\n")
    memory, _ = in_memory(path, IngestOptions(), SequenceOptions())
    store, _ = build_store(path, tmp_path / "store", sizes=TINY)
    assert list(memory.users) == ["30", "10", "20"]  # the file's order, not the numbers'
    assert memory.item_vocab.tokens == ("7", "9", "8")  # most frequent, then first seen
    assert_same(memory, store.sequences())


def test_a_column_that_stops_being_numeric_is_read_as_text(tmp_path):
    rows = [f"{u % 50},{u % 70},{1_700_000_000 + u}" for u in range(3000)]
    rows[2500] = "x-1,5,1700002500"  # a text id long after the first chunk
    path = tmp_path / "log.csv"
    path.write_text("user,item,ts\n" + "\n".join(rows) + "\n")
    memory, _ = in_memory(path, IngestOptions(), SequenceOptions())
    store, _ = build_store(path, tmp_path / "store", sizes=TINY)
    assert "x-1" in set(store.users)
    assert_same(memory, store.sequences())


def test_bad_input_is_refused_with_the_reason_and_nothing_is_written(tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    (tmp_path / "log.csv").write_text("user,item\na,x\nb,y\n")
    with pytest.raises(StoreError, match="not a sequence store"):
        build_store(tmp_path / "log.csv", other)
    assert (other / "keep.txt").read_text() == "mine"

    (tmp_path / "seq.txt").write_text("\n".join(f"u{i} " + " ".join(f"i{j}" for j in range(i % 7 + 2))
                                                for i in range(40)))
    with pytest.raises(LogFormatError, match="one sequence per line"):
        build_store(tmp_path / "seq.txt", tmp_path / "s1")

    (tmp_path / "bad_ts.csv").write_text("user,item,time\n" + "".join(
        f"u{i},i{i % 3},not a date {i}\n" for i in range(20)))
    with pytest.raises(LogFormatError, match="cannot be read as dates") as error:
        build_store(tmp_path / "bad_ts.csv", tmp_path / "s2")
    assert "lines 2, 3, 4, 5, 6" in str(error.value)

    with pytest.raises(LogFormatError, match="needs a value"):
        build_store(tmp_path / "log.csv", tmp_path / "s3", min_value=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_ts.csv", "log.csv", "notes",
                                                          "seq.txt"]


def test_user_blocks_hold_whole_users_within_the_bound():
    lengths = np.array([3, 4, 10, 1, 1, 2, 8])
    blocks = user_blocks(lengths, 8)
    assert blocks == [(0, 2), (2, 3), (3, 6), (6, 7)]
    assert user_blocks(np.zeros(0, dtype=np.int64), 8) == []


def test_store_batches_cover_the_in_memory_training_windows(tmp_path):
    path = tmp_path / "log.csv"
    messy_log(n=4000).to_csv(path, index=False)
    memory, _ = in_memory(path, IngestOptions(), SequenceOptions())
    store, _ = build_store(path, tmp_path / "store", sizes=TINY)
    config = SeqVAEConfig(max_len=12, stride=6, batch_size=16)

    def windows(batches) -> list[tuple[int, ...]]:
        rows = [(*(int(v) for v in row[row != 0]), -1, *(int(t) for t in target.ravel()))
                for batch in batches for row, target in zip(batch["items"], batch["targets"],
                                                            strict=True)]
        return sorted(rows)

    expected = make_batches(leave_one_out(memory).train, config)
    source = StoreBatches(store.sequences(), config, block_events=300)
    assert len(source.blocks) > 3
    epoch = list(source.epoch(1))
    assert windows(epoch) == windows(expected.epoch(np.random.default_rng(0)))
    assert len(epoch) == source.batches_per_epoch >= expected.batches_per_epoch
    assert windows(source.epoch(2)) == windows(epoch)  # every epoch: the same windows
    assert [b["items"].shape for b in source.epoch(2)] != [b["items"].shape for b in epoch]
    # with batches of one window length per batch too
    by_length = dataclasses.replace(config, batching="length")
    source = StoreBatches(store.sequences(), by_length, block_events=300)
    epoch = list(source.epoch(1))
    expected = make_batches(leave_one_out(memory).train, by_length)
    assert windows(epoch) == windows(expected.epoch(np.random.default_rng(0)))
    assert len(epoch) == source.batches_per_epoch >= expected.batches_per_epoch
    # the refit's (`holdout`=False): every event, each user's last two included
    source = StoreBatches(store.sequences(), config, block_events=300, holdout=False)
    epoch = list(source.epoch(1))
    expected = make_batches(memory, config)
    assert windows(epoch) == windows(expected.epoch(np.random.default_rng(0)))
    assert len(epoch) == source.batches_per_epoch >= expected.batches_per_epoch
    assert expected.n_windows > make_batches(leave_one_out(memory).train, config).n_windows
    with pytest.raises(ValueError, match="`epochs`"):
        refit_store(store, config, 0)
    with pytest.raises(ValueError, match="one per network"):  # one network, two counts
        refit_store(store, config, [1, 2])
    with pytest.raises(ValueError, match="checkpoint"):  # the fit's would pass for the refit's
        refit_store(store, config, 1, checkpoint_dir=tmp_path / "ckpt")


def test_refit_store_trains_on_every_event_with_the_batch_size_chosen_for_the_store(tmp_path):
    path = tmp_path / "log.csv"
    messy_log(n=4000).to_csv(path, index=False)
    store, _ = build_store(path, tmp_path / "store", sizes=TINY)
    config = SeqVAEConfig(embed_dim=8, hidden_dim=8, latent_dim=8, max_len=12, stride=6,
                          batch_size=0)  # "auto", as a user's own config has it
    batches = []
    model, history = refit_store(store, config, 1, block_events=300,
                                 on_batch=lambda p: batches.append(p.batch))
    used = model.config_
    assert used.batch_size > 0 and used.epochs == 1 and history.best_epoch == 1
    every_event = StoreBatches(store.sequences(), used, block_events=300, holdout=False)
    held_out = StoreBatches(store.sequences(), used, block_events=300)
    assert len(batches) == every_event.batches_per_epoch > held_out.batches_per_epoch
    assert model.history_.n_events == store.n_events


def test_encodings_compression_and_parts_are_handled_or_refused_clearly(tmp_path):
    # Latin-1 text first met long after the head the encoding is guessed from
    rows = [f"u{i % 90},item-{i % 70},{1_700_000_000 + i}" for i in range(20_000)]
    rows[15_000] = "u1,caf\xe9,1700015000"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(("user,item,ts\n" + "\n".join(rows) + "\n").encode("latin-1"))
    memory, _ = in_memory(latin, IngestOptions(), SequenceOptions())
    store, report = build_store(latin, tmp_path / "s-latin", sizes=TINY)
    assert "café" in store.item_vocab
    assert any("Latin-1" in w for w in report.warnings)
    assert_same(memory, store.sequences())

    # gzip recognised by its bytes, not its name
    import gzip

    packed = tmp_path / "log.dat"
    packed.write_bytes(gzip.compress(("user,item,ts\n" + "\n".join(rows[:3000]) + "\n").encode()))
    store, _ = build_store(packed, tmp_path / "s-gzip", sizes=TINY)
    assert store.n_events == 3000

    # Parquet parts that disagree: the part is named
    parts = tmp_path / "parts"
    parts.mkdir()
    pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]}).to_parquet(parts / "p0.parquet")
    pd.DataFrame({"customer": ["a"], "item": ["z"]}).to_parquet(parts / "p1.parquet")
    with pytest.raises(LogFormatError, match=r"p1\.parquet.*differ"):
        build_store(parts, tmp_path / "s-parts")

    # rows with the wrong number of fields: skipped and counted, every row accounted for
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("user,item,ts\n" + "\n".join(rows[:50]) + "\nu1,x\n"
                      + "\n".join(rows[50:100]) + "\n")
    store, report = build_store(ragged, tmp_path / "s-ragged")
    assert report.dropped == {"malformed": 1} and report.balanced
    assert store.n_events == 100


def test_both_readers_warn_alike_about_implausible_times_and_honour_excel_sep(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("sep=;\nuser;item;timestamp\nu1;i1;1700000000\nu1;i2;100\nu2;i1;4102444800\n"
                    "u2;i2;1700000300\nu3;i1;1700000400\nu3;i3;1700000500\n")
    memory, report = in_memory(path, IngestOptions(), SequenceOptions())
    store, store_report = build_store(path, tmp_path / "store", IngestOptions(), SequenceOptions(),
                                      sizes=TINY)
    assert_same(memory, store.sequences())
    odd = [w for w in report.warnings if "before 1990" in w]
    assert odd and odd == [w for w in store_report.warnings if "before 1990" in w]
    assert "lines 4, 5" in odd[0]
