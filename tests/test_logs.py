"""seqvae.logs: formats, role detection, timestamps, missing values, accounting and errors."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pandas as pd
import pytest

from seqvae.errors import LogFormatError
from seqvae.logs import IngestOptions, read_log, read_metadata
from tests.conftest import dataset


def read(content: str | bytes, name: str = "log.csv", **options):
    data = content.encode("utf-8") if isinstance(content, str) else content
    return read_log(data, IngestOptions(**options), name=name)


def assert_balanced(report) -> None:
    assert report.rows_read == report.rows_kept + sum(report.dropped.values())


# ---- formats ---------------------------------------------------------------------------------


def test_csv_with_header_detects_every_role():
    log, report = read(
        "customer_id,sku,action,rating,ts\n"
        "c1,s1,view,1,1700000000\n"
        "c1,s2,buy,5,1700000100\n"
        "c2,s1,view,3,1700000200\n"
    )
    assert report.columns == {"user": "customer_id", "item": "sku", "timestamp": "ts",
                              "event": "action", "value": "rating"}
    assert log.n_users == 2 and log.n_items == 2 and log.n_events == 3
    assert log.frame["timestamp"].iloc[0] == pd.Timestamp("2023-11-14T22:13:20Z")
    assert list(log.frame["value"]) == [1.0, 5.0, 3.0]
    assert_balanced(report)


@pytest.mark.parametrize("sep", [",", "\t", ";", "|"])
def test_delimiter_is_sniffed(sep):
    rows = [["user", "item", "timestamp"], ["1", "10", "1600000000"], ["2", "11", "1600000001"],
            ["1", "12", "1600000002"]]
    _, report = read("\n".join(sep.join(r) for r in rows) + "\n")
    assert report.columns["user"] == "user" and report.columns["item"] == "item"
    assert report.rows_kept == 3


def test_headerless_numeric_log_is_read_by_content():
    # user, item, rating, unix time — the MovieLens u.data layout
    log, report = read("1\t10\t4\t881250949\n2\t10\t5\t881250950\n1\t11\t3\t881250951\n")
    assert report.details["header"] is False
    assert report.columns == {"user": "column_1", "item": "column_2", "timestamp": "column_4",
                              "event": None, "value": "column_3"}
    assert log.n_events == 3


def test_names_and_column_overrides():
    # names replace a header ...
    log, report = read("a,b,c\n1,x,5\n2,y,6\n", header=True, names=("who", "what", "amount"),
                       user_col="who", item_col="what", value_col="")
    assert report.columns["value"] is None
    assert set(log.frame["item"].astype(str)) == {"x", "y"}
    # ... or name a file without one, whose first line is then data
    log, _ = read("a,b,c\n1,x,5\n2,y,6\n", header=False, names=("who", "what", "amount"))
    assert set(log.frame["item"].astype(str)) == {"b", "x", "y"}


def test_column_given_by_number():
    _, report = read("p,q\n1,2\n3,4\n", user_col="2", item_col="1")
    assert report.columns["user"] == "q" and report.columns["item"] == "p"


def test_unknown_override_names_the_available_columns():
    with pytest.raises(LogFormatError, match=r"no column named 'who'.*user, item"):
        read("user,item\n1,2\n3,4\n", user_col="who")


def test_parquet_and_dataframe_and_jsonl(tmp_path):
    frame = pd.DataFrame({"user_id": [1, 1, 2], "item_id": ["a", "b", "a"],
                          "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02",
                                                       "2024-01-03"], utc=True)})
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    for source in (path, frame):
        log, report = read_log(source)
        assert log.n_events == 3 and report.columns["timestamp"] == "timestamp"
        assert list(log.frame["user"].astype(str)) == ["1", "1", "2"]
    jsonl = "\n".join(frame.assign(timestamp=frame["timestamp"].astype(str))
                      .to_json(orient="records", lines=True).splitlines())
    log, report = read(jsonl, name="log.jsonl")
    assert report.format == "jsonl" and log.n_events == 3


def test_gzip_is_read_transparently():
    data = gzip.compress(b"user,item\n1,2\n1,3\n")
    log, _ = read(data, name="log.csv.gz")
    assert log.n_events == 2


def test_sequence_lines_format_is_detected():
    text = "1 5 6 7\n2 5 9\n3 6 7 8 9 10\n4 5 6\n5 9 8 7 6 5 4\n"
    log, report = read(text, name="Beauty.txt")
    assert report.format == "sequence-lines"
    assert report.columns["timestamp"] is None
    assert log.n_events == 3 + 2 + 5 + 2 + 6
    # items keep the order of the line
    first = log.frame[log.frame["user"] == "3"]["item"].astype(str).tolist()
    assert first == ["6", "7", "8", "9", "10"]


def test_read_metadata_keys_by_item():
    items = read_metadata(b"item_id,title\nP1,Kettle\nP2,Lamp\nP1,again\n", key="item")
    assert items.loc["P1", "title"] == "Kettle" and len(items) == 2


# ---- must load, with a warning where fitting -------------------------------------------------


def test_utf8_bom():
    log, report = read("\ufeffuser,item\n1,2\n1,3\n".encode())
    assert report.columns["user"] == "user" and report.details["encoding"] == "utf-8-sig"
    assert log.n_events == 2


def test_latin1_semicolon_decimal_comma():
    data = "user;item;rating\nAnn;Café;4,5\nBob;Thé;3,0\nAnn;Thé;2,5\n".encode("latin-1")
    log, report = read(data)
    assert report.details["encoding"] == "latin-1" and report.details["decimal"] == "comma"
    assert any("Latin-1" in w for w in report.warnings)
    assert list(log.frame["value"]) == [4.5, 3.0, 2.5]
    assert set(log.frame["item"].astype(str)) == {"Café", "Thé"}


def test_ragged_rows_load_with_a_warning_naming_lines():
    _log, report = read("user,item,event\n1,2,view\n1,3\n2,3,view,extra\n2,4,cart\n")
    assert report.rows_kept == 4
    assert any("fewer than 3 fields (lines 3)" in w for w in report.warnings)
    assert any("more than 3 fields (lines 4)" in w for w in report.warnings)
    assert report.filled == {"event": 1}


def test_ids_in_any_script():
    log, _ = read("user,item\n用户1,商品A\nمستخدم,商品B\nпользователь,商品A\n")
    assert set(log.frame["user"].astype(str)) == {"用户1", "مستخدم", "пользователь"}


def test_duplicates_are_counted_and_removed_by_default():
    text = "user,item,ts\n1,2,1600000000\n1,2,1600000000\n1,3,1600000100\n"
    log, report = read(text)
    assert report.dropped == {"duplicate": 1} and report.dropped_lines["duplicate"] == [3]
    assert log.n_events == 2
    log, report = read(text, drop_duplicates=False)
    assert log.n_events == 3 and report.dropped == {}


def test_blank_lines_keep_true_line_numbers():
    _, report = read("user,item,ts\n1,2,1600000000\n\n,3,1600000100\n1,4,1600000200\n")
    assert report.dropped_lines["missing_user"] == [4]


def test_ids_keep_leading_zeros():
    log, _ = read("user,item\n007,0001\n008,0002\n")
    assert set(log.frame["user"].astype(str)) == {"007", "008"}


# ---- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "unit"), [
    (["1600000000", "1600000060"], "epoch s"),
    (["1600000000000", "1600000060000"], "epoch ms"),
    (["1600000000000000", "1600000060000000"], "epoch us"),
])
def test_epoch_units_told_apart_by_magnitude(values, unit):
    log, report = read("user,item,ts\n" + "".join(f"1,{i},{v}\n" for i, v in enumerate(values)))
    assert report.details["timestamp"] == unit
    assert log.frame["timestamp"].iloc[1] - log.frame["timestamp"].iloc[0] == pd.Timedelta("60s")


def test_iso_with_and_without_zones():
    log, report = read("user,item,time\n1,a,2024-01-01T12:00:00+02:00\n1,b,2024-01-01T11:00:00Z\n"
                       "1,c,2024-01-01 12:00:00\n")
    ts = log.frame["timestamp"]
    assert ts.iloc[0] == pd.Timestamp("2024-01-01T10:00:00Z")
    assert ts.iloc[1] == pd.Timestamp("2024-01-01T11:00:00Z")
    assert ts.iloc[2] == pd.Timestamp("2024-01-01T12:00:00Z")  # no zone: read as UTC
    assert "UTC" in report.details["timestamp"]


def test_no_timestamp_means_file_order():
    log, report = read("user,item\n1,a\n1,b\n")
    assert report.columns["timestamp"] is None and not log.has_timestamp


def test_missing_timestamp_policies():
    text = "user,item,ts\n1,a,1600000000\n1,b,\n1,c,1600000100\n2,d,\n2,e,\n"
    log, report = read(text)  # default: previous
    assert report.filled["timestamp"] == 1
    assert report.dropped == {"missing_timestamp": 2}  # user 2 has no timestamp at all
    assert log.frame["timestamp"].iloc[1] == pd.Timestamp(1600000000, unit="s", tz="UTC")
    assert_balanced(report)
    log, report = read(text, missing_timestamp="drop")
    assert report.dropped == {"missing_timestamp": 3} and log.n_events == 2
    log, report = read(text, missing_timestamp="file-order")
    assert log.n_events == 5 and report.dropped == {}
    assert log.frame["timestamp"].isna().sum() == 3


def test_a_few_unparseable_timestamps_warn_and_follow_the_policy():
    rows = "".join(f"1,{i},{1600000000 + i}\n" for i in range(9))
    _log, report = read("user,item,ts\n" + rows + "1,x,yesterday\n")
    assert any("could not be read (lines 11)" in w for w in report.warnings)
    assert report.filled["timestamp"] == 1


# ---- missing values --------------------------------------------------------------------------


def test_missing_user_and_item_rows_are_dropped_and_counted():
    log, report = read("user,item\n1,a\n,b\n2,\n  ,  \n2,c\n")
    assert report.dropped == {"missing_user": 2, "missing_item": 1}
    assert report.dropped_lines == {"missing_user": [3, 5], "missing_item": [4]}
    assert log.n_events == 2
    assert_balanced(report)


def test_missing_event_becomes_unknown():
    log, report = read("user,item,event\n1,a,view\n1,b,\n2,a,cart\n")
    assert list(log.frame["event"].astype(str)) == ["view", "unknown", "cart"]
    assert report.filled == {"event": 1}


@pytest.mark.parametrize(("policy", "expected"), [("median", 3.0), ("mean", 4.0)])
def test_missing_value_filled(policy, expected):
    log, report = read("user,item,rating\n1,a,1\n1,b,\n2,a,3\n2,b,8\n", missing_value=policy)
    assert log.frame["value"].iloc[1] == expected and report.filled == {"value": 1}


def test_missing_value_dropped():
    log, report = read("user,item,rating\n1,a,1\n1,b,\n2,a,3\n2,c,2\n", missing_value="drop")
    assert report.dropped == {"missing_value": 1} and log.n_events == 3


# ---- errors: a clear LogFormatError, never a traceback ---------------------------------------


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (b"user,item,ts\n", "header line and no data"),
    (b"a\nb\nc\n", "only one column"),
    (bytes(range(256)) * 20, "binary"),
    (b"PK\x03\x04rest-of-zip", "zip archive"),
    (b"user,item\n1,5\n2,5\n3,5\n", "only one item"),
    (b"user,item,ts\n1,2,abc\n1,3,def\n2,3,2020-01-01\n", "cannot be read as dates"),
    (b"user,item\n,\n,x\n", "no row has both a user and an item"),
    (b"count,total\n,\n,\n", "no plausible user column"),
])
def test_bad_input_raises_a_clear_error(content, message):
    with pytest.raises(LogFormatError, match=message) as info:
        read(content, name="upload.csv")
    assert str(info.value).startswith("upload.csv: ")
    assert "Fix: " in str(info.value)


def test_unparseable_timestamps_error_names_column_and_lines():
    with pytest.raises(LogFormatError) as info:
        read("user,item,ts\n1,2,abc\n1,3,def\n2,3,2020-01-01\n")
    assert info.value.column == "ts" and info.value.lines == [2, 3]


def test_file_over_the_size_limit(tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(b"user,item\n" + b"1,2\n" * 1000)
    with pytest.raises(LogFormatError, match="over the limit"):
        read_log(path, IngestOptions(max_bytes=1000))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(LogFormatError, match="does not exist"):
        read_log(tmp_path / "nope.csv")
    with pytest.raises(LogFormatError, match="folder"):
        read_log(tmp_path)


def test_damaged_parquet():
    with pytest.raises(LogFormatError, match="Parquet"):
        read(b"PAR1" + b"\x00" * 50 + b"PAR1", name="log.parquet")


def test_no_plausible_user_column():
    with pytest.raises(LogFormatError, match="no plausible item column"):
        read("user,ts\n1,1600000000\n2,1600000001\n")


@pytest.mark.parametrize("field", ["missing_timestamp", "missing_value", "timestamp_unit", "format"])
def test_options_are_validated(field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        IngestOptions(**{field: "sometimes"})


# ---- real logs beside the project ------------------------------------------------------------


def test_movielens_100k():
    log, report = read_log(dataset("ml-100k", "u.data"))
    assert (log.n_users, log.n_items, log.n_events) == (943, 1682, 100_000)
    assert report.columns["timestamp"] == "column_4" and report.columns["value"] == "column_3"
    assert report.details["delimiter"] == "tab" and report.details["header"] is False
    assert set(np.unique(log.frame["value"])) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_amazon_beauty_sequence_lines():
    log, report = read_log(dataset("amazon-beauty", "Beauty.txt"))
    assert report.format == "sequence-lines"
    assert (log.n_users, log.n_items, log.n_events) == (22_363, 12_101, 198_502)
    assert_balanced(report)


def test_file_object_upload():
    log, _ = read_log(io.BytesIO(b"user,item\n1,2\n1,3\n"), name="upload.csv")
    assert log.n_events == 2


# ---- inputs a new user tried (issue: one ingest engine) ---------------------------------------


def test_a_long_semicolon_log_with_decimal_commas_and_unknown_names():
    # with many rows, splitting at the decimal commas is as consistent as at the semicolons;
    # the commas sit only between digits, so they are decimal marks
    rng = np.random.default_rng(0)
    rows = [f"u{rng.integers(50)};a{rng.integers(80)};{rng.integers(1, 5)},{rng.choice([0, 5])}"
            for _ in range(400)]
    log, report = read("utilisateur;article;note\n" + "\n".join(rows) + "\n")
    assert report.details["delimiter"] == "semicolon" and report.details["decimal"] == "comma"
    assert report.columns["user"] == "utilisateur" and report.columns["item"] == "article"
    assert log.n_users <= 50 and set(np.unique(log.frame["value"] % 0.5)) == {0.0}
    # a comma log whose numbers are all integers is still a comma log
    plain, plain_report = read("1,2,5\n3,4,1\n5,6,2\n")
    assert plain_report.details["delimiter"] == "comma" and plain.n_events == 3


@pytest.mark.parametrize("page", [
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>x</body></html>\n",
    "<html>\n<body>\n<h1>Sign in</h1>\n</body>\n</html>\n",
    '<?xml version="1.0"?>\n<Error><Code>AccessDenied</Code></Error>\n',
])
def test_markup_saved_as_a_log_is_refused(page):
    with pytest.raises(LogFormatError, match="markup"):
        read(page, name="export.csv")


def test_excel_sep_line_names_the_delimiter_and_is_not_data():
    log, report = read("sep=;\nuser;item;timestamp\nu1;i1;1700000000\nu1;i2;1700000100\n"
                       "u2;i1;1700000200\n")
    assert report.details["delimiter"] == "semicolon" and report.details["excel_sep_line"]
    assert log.n_events == 3 and not report.warnings
    assert log.frame["line"].tolist() == [3, 4, 5]  # line numbers count the sep= line
    with pytest.raises(LogFormatError, match="only Excel's delimiter line"):
        read("sep=,\n")


def test_timestamps_far_from_plausible_are_kept_and_said_with_lines():
    log, report = read("user,item,timestamp\nu1,i1,1700000000\nu1,i2,100\nu2,i1,4102444800\n"
                       "u2,i2,1700000300\n")
    assert log.n_events == 4
    (warning,) = [w for w in report.warnings if "before 1990" in w]
    assert "2 timestamps" in warning and "lines 3, 4" in warning
    # a log of small numbers (positions) has its own warning, not this one
    _, positions = read("user,item,timestamp\nu1,i1,1\nu1,i2,2\nu2,i1,3\n")
    assert not any("before 1990" in w for w in positions.warnings)


def test_side_files_without_a_header_are_read_as_such():
    # MovieLens' u.item: '|', Latin-1, no header, title in the second column
    u_item = ("1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy|0|1\n"
              "2|GoldenEye (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Golden|1|0\n"
              "3|Café Society (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Cafe|0|0\n"
              ).encode("latin-1")
    items = read_metadata(u_item, key="item", name="u.item")
    assert list(items.index) == ["1", "2", "3"]  # the first row is data, not a header
    assert items.loc["3", "title"] == "Café Society (1995)"
    # MovieLens' u.user: no header, the key first
    users = read_metadata(b"1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n"
                          b"127|33|M|none|73439\n128|33|F||\n", key="user", name="u.user")
    assert list(users.index) == ["1", "2", "3", "127", "128"]
    assert users.loc["2", "column_4"] == "other"
    # in a side table "none" is a category (u.user's occupation), not a missing value; an
    # empty cell is missing
    assert users.loc["127", "column_4"] == "none" and pd.isna(users.loc["128", "column_4"])
    # the reader's choices: header yes/no, the key and the title columns
    forced = read_metadata(b"1|24|M\n2|53|F\n", key="user", header=True)
    assert list(forced.index) == ["2"]
    by_title = read_metadata(u_item, key="item", key_col="column_2", title_col="column_3")
    assert "Toy Story (1995)" in by_title.index and by_title["title"].iloc[0] == "01-Jan-1995"
    with pytest.raises(LogFormatError, match="no column 'nope'"):
        read_metadata(u_item, key="item", title_col="nope")
    named = read_metadata(b"item_id,product_name,price\nP1,Kettle,10\nP2,Lamp,12\n", key="item")
    assert named.loc["P2", "title"] == "Lamp" and "product_name" not in named.columns


def test_running_text_is_not_read_as_sequences():
    letter = ("Dear team, please find the export attached. It holds last month's orders,\n"
              "as you asked. Let me know if anything is missing; the totals match the report.\n"
              "Best regards, and thanks again for the quick turnaround on this request.\n")
    with pytest.raises(LogFormatError, match="running text"):
        read(letter, name="notes.txt")
    # Beauty-style sequences (ids only) still read
    log, _ = read("1 10 11 12\n2 10 13\n3 11 12 14 15\n", name="seqs.txt")
    assert log.n_users == 3
    # a README with few words before punctuation: its function words give it away
    readme = ("SUMMARY AND USAGE LICENSE\n"
              "MovieLens data sets were collected by the research project at the university\n"
              "This data set consists of ratings from users on movies\n"
              "Each user has rated at least twenty movies\n"
              "Simple demographic info for the users\n"
              "The data was collected through the web site during a period of months\n")
    with pytest.raises(LogFormatError, match="running text"):
        read(readme, name="README")
    # a basket log of plain words, lines of many lengths, is still a log
    baskets = ("u1 milk bread eggs\nu2 apples\nu3 milk butter cheese yoghurt coffee\n"
               "u4 bread jam\nu5 eggs bacon tomatoes beans toast tea sugar\n"
               "u6 rice\nu7 pasta sauce basil\n")
    log, _ = read(baskets, name="baskets.txt")
    assert log.n_users == 7 and log.n_events == 22
    # nor are ids that happen to be short words
    log, _ = read("u1 a in\nu2 a to b c d\nu3 in b\nu4 a b c d e f\nu5 to in a\n", name="s.txt")
    assert log.n_users == 5 and log.n_events == 18
