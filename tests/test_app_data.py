"""The Data page, through Streamlit's AppTest: sample, upload, mapping, errors, safety."""

from __future__ import annotations

from seqvae.ui import state
from tests.conftest import texts


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_landing_page_without_data(app):
    at = app.run()
    assert not at.exception
    assert at.title[0].value == "Data"
    assert any("none loaded yet" in t for t in texts(at.sidebar.info))


def test_load_the_sample(app):
    at = app.run()
    at.button(key="load_sample").click().run()
    assert not at.exception
    shown = metrics(at)
    assert shown["Users"] == "2,000" and shown["Events"] == "69,372"
    assert shown["Rows read"] == "69,372" and shown["Rows dropped"] == "0"
    assert any("2,000 users" in t for t in texts(at.sidebar.success))
    # the planted segments come along as user attributes, titles as item metadata
    assert any("segment" in t for t in texts(at.caption))
    # four event types: their mix is drawn
    assert any("Event types" in c.proto.spec for c in at.get("plotly_chart"))
    # the empty uploader says what is loaded (its name escaped), and that an upload replaces it
    assert at.session_state[state.DATASET].name == "sample: events.csv"
    assert any(t.startswith("In use: **sample\\: events\\.csv**") and "replaces it" in t
               for t in texts(at.caption))


def test_upload_a_log_with_problems_shows_the_report(app):
    at = app.run()
    log = ("user_id;product;action;ts\n"
           "u1;p1;view;1700000000\n"
           "u1;p2;view;1700000100\n"
           ";p2;view;1700000200\n"        # no user: dropped
           "u2;p1;;1700000300\n"          # no event type: 'unknown'
           "u2;p1;;1700000300\n")         # exact duplicate: dropped
    at.file_uploader(key="log_upload").upload("shop.csv", log.encode(), "text/csv")
    at.run()
    assert not at.exception
    shown = metrics(at)
    assert shown["Rows read"] == "5" and shown["Rows kept"] == "3" and shown["Rows dropped"] == "2"
    report = at.dataframe[-1].value
    assert set(report["reason"]) == {"no user id", "exact duplicate of an earlier row",
                                     "event"}
    assert any("no event type" in w for w in texts(at.warning))


def test_bad_upload_is_a_message_and_keeps_the_loaded_data(app):
    at = app.run()
    at.button(key="load_sample").click().run()
    at.file_uploader(key="log_upload").upload("broken.csv", b"just-one-column\nx\ny\n",
                                              "text/csv")
    at.run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1 and "broken" in errors[0] and "only one column" in errors[0]
    assert "What to do" in errors[0]
    assert metrics(at)["Users"] == "2,000"  # the sample is still loaded


def test_binary_upload_is_a_message(app):
    at = app.run()
    at.file_uploader(key="log_upload").upload("photo.csv", bytes(range(256)) * 10)
    at.run()
    assert not at.exception
    assert any("binary" in e for e in texts(at.error))


def test_column_mapping_fixes_a_log_detection_got_wrong(app):
    # headerless, columns in an unusual order: item first
    log = "p1,u1,view\np2,u1,view\np1,u2,cart\np3,u2,view\n"
    at = app.run()
    at.file_uploader(key="log_upload").upload("odd.csv", log.encode(), "text/csv")
    at.run()
    assert metrics(at)["Users"] == "3"  # detection took the first column as the user
    at.selectbox(key="map_user").set_value("column_2")
    at.selectbox(key="map_item").set_value("column_1")
    at.button[-1].click()  # the form's submit button
    at.run()
    assert not at.exception
    assert metrics(at)["Users"] == "2" and metrics(at)["Items"] == "3"


def test_text_from_files_never_renders_as_markdown_or_html(app):
    evil = "![img](http://example.invalid/x.png)<script>alert(1)</script>"
    log = f"user,item\n{evil},a\n{evil},a\n"  # one item only: the error quotes it
    at = app.run()
    at.file_uploader(key="log_upload").upload(f"{evil}.csv", log.encode().replace(b"\n", b"\n"))
    at.run()
    assert not at.exception
    error = texts(at.error)[0]
    # every Markdown/HTML character is escaped, so it shows as text
    assert "\\!\\[img\\]\\(http" in error and "\\<script\\>" in error


def test_one_session_never_sees_another_sessions_data(app):
    from tests.conftest import ROOT

    first = app.run()
    first.button(key="load_sample").click().run()
    assert any("2,000 users" in t for t in texts(first.sidebar.success))
    # a second browser session of the same server process
    from streamlit.testing.v1 import AppTest

    second = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert any("none loaded yet" in t for t in texts(second.sidebar.info))
    assert not second.metric


def ratings_log(n_users: int = 30, span_s: int = 3600) -> bytes:
    """A rated log whose whole span is `span_s` seconds."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = ["user,item,rating,ts"]
    for u in range(n_users):
        for j in range(6):
            rows.append(f"u{u},i{(u + j) % 17},{rng.integers(1, 6)},"
                        f"{1_700_000_000 + int(rng.integers(0, span_s))}")
    return ("\n".join(rows) + "\n").encode()


def test_a_rated_log_over_one_hour_reads_well(app):
    at = app.run()
    at.file_uploader(key="log_upload").upload("ratings.csv", ratings_log(), "text/csv")
    at.run()
    assert not at.exception, at.exception
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert any('"Values (mean' in spec for spec in charts)  # the rating column is summarised
    over_time = next(spec for spec in charts if '"Events per hour"' in spec)
    assert '"tickformat":",d"' in over_time.replace(" ", "")  # whole events, never "167.596k"
    per_user = next(spec for spec in charts if "Events per user" in spec)
    assert '"type":"log"' in per_user.replace(" ", "")


def test_a_minimum_rating_keeps_the_positives_and_says_what_it_dropped(app):
    at = app.run()
    data = ratings_log()
    at.file_uploader(key="log_upload").upload("ratings.csv", data, "text/csv")
    at.run()
    at.number_input(key="opt_min_value").set_value(4.0)
    at.button[[b.label for b in at.button].index("Re-read with these settings")].click().run()
    assert not at.exception, at.exception
    import pandas as pd

    ratings = pd.read_csv(__import__("io").BytesIO(data))["rating"]
    shown = metrics(at)
    assert shown["Events"] == f"{int((ratings >= 4).sum()):,}"
    assert shown["Rows dropped"] == f"{int((ratings < 4).sum()):,}"
    report = at.dataframe[-1].value
    assert "value below the minimum kept" in set(report["reason"])
    assert at.session_state["dataset"].min_value == 4.0
    # the field shows the minimum in use, and emptied it keeps every event again
    assert at.number_input(key="opt_min_value").value == 4.0
    at.number_input(key="opt_min_value").set_value(None)
    at.button[[b.label for b in at.button].index("Re-read with these settings")].click().run()
    assert not at.exception, at.exception
    assert at.session_state["dataset"].min_value is None
    assert metrics(at)["Events"] == f"{len(ratings):,}"
    assert at.number_input(key="opt_min_value").value is None


def test_removing_a_file_that_failed_clears_its_message(app):
    at = app.run()
    at.file_uploader(key="log_upload").upload("broken.csv", b"just-one-column\nx\ny\n",
                                              "text/csv")
    at.run()
    assert len(at.error) == 1
    at.file_uploader(key="log_upload").clear()
    at.run()
    assert not at.exception
    assert not at.error, texts(at.error)


def test_side_files_without_a_header_with_the_readers_choices(app):
    from seqvae.ui import state

    at = app.run()
    log = "user|item|rating\n" + "".join(f"{u}|{i}|{(u + i) % 5 + 1}\n" for u in range(1, 4)
                                         for i in range(1, 4))
    at.file_uploader(key="log_upload").upload("u.data", log.encode(), "text/plain")
    at.run()
    # ratings only, no event types: no one-bar "unknown" mix, a line that says why
    assert any("no event-type column" in t for t in texts(at.caption))
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert not any("Event types" in spec for spec in titles)
    u_user = b"1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n"
    at.file_uploader(key="users_upload").upload("u.user", u_user, "text/plain")
    at.run()
    assert not at.exception, at.exception
    users = at.session_state[state.DATASET].users
    assert list(users.index) == ["1", "2", "3"]  # no header: the first row is a user
    assert users.loc["3", "column_4"] == "writer"
    assert any("known for 3 of 3 users" in t for t in texts(at.caption))
    preview = next(d.value for d in at.dataframe if "column_1" in d.value.columns)
    assert len(preview) == 3
    # the analyst says the file has a header after all: re-read, the first row becomes names
    at.radio(key="users_header").set_value("yes").run()
    users = at.session_state[state.DATASET].users
    assert list(users.index) == ["2", "3"] and "technician" in users.columns
    # the key column is the analyst's to choose
    at.radio(key="users_header").set_value("no").run()
    at.selectbox(key="users_key").set_value("column_4").run()
    assert list(at.session_state[state.DATASET].users.index) == ["technician", "other", "writer"]
    # names for a headerless file's columns: they name the attributes downstream
    at.text_input(key="users_names").set_value("user, age, gender, occupation, zip").run()
    assert not at.exception, at.exception
    users = at.session_state[state.DATASET].users
    assert list(users.index) == ["1", "2", "3"] and users.loc["3", "occupation"] == "writer"
    # a wrong number of names is refused with the count, and the table read before is kept
    at.text_input(key="users_names").set_value("user, age").run()
    assert any("2 column names were given for 5 columns" in t for t in texts(at.error))
    assert at.session_state[state.DATASET].users.loc["3", "occupation"] == "writer"
    at.text_input(key="users_names").set_value("").run()
    at.selectbox(key="users_key").set_value("column_1").run()
    # items: the title column detected, or chosen
    u_item = ("1|Toy Story (1995)|01-Jan-1995\n2|GoldenEye (1995)|01-Jan-1995\n"
              "3|Four Rooms (1995)|01-Jan-1995\n").encode("latin-1")
    at.file_uploader(key="items_upload").upload("u.item", u_item, "text/plain")
    at.run()
    items = at.session_state[state.DATASET].items
    assert items.loc["2", "title"] == "GoldenEye (1995)"
    at.selectbox(key="items_title").set_value("column_3").run()
    assert at.session_state[state.DATASET].items.loc["2", "title"] == "01-Jan-1995"
    assert not at.exception
    # the uploaders come back empty after a reload; the tables stay in use, and the page says so
    for kind in ("items", "users"):
        at.file_uploader(key=f"{kind}_upload").clear()
    at.run()
    assert at.session_state[state.DATASET].users is not None
    shown = texts(at.caption)
    assert any(t.startswith("In use, items:") and "known for 3 of 3 items" in t for t in shown)
    assert any(t.startswith("In use, users:") and "known for 3 of 3 users" in t for t in shown)


def test_the_layout_option_reads_a_file_as_one_user_per_line_or_as_a_table(app):
    # lines of equal length: detection reads a table, one event per line
    log = "u1 a b\nu2 c d\nu3 a c\nu4 b d\n"
    at = app.run()
    at.file_uploader(key="log_upload").upload("lines.txt", log.encode(), "text/plain")
    at.run()
    assert not at.exception and not at.error, texts(at.error)
    assert metrics(at)["Events"] == "4"
    at.selectbox(key="opt_format").set_value("one user per line")
    at.button[[b.label for b in at.button].index("Re-read with these settings")].click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert metrics(at)["Users"] == "4" and metrics(at)["Events"] == "8"
    # lines of many lengths are read per user, and the note names the dashboard's own setting
    ragged = "u1 a\nu2 a b c d\nu3 b c\nu4 a b c d e f\nu5 c d e\n"
    at.file_uploader(key="log_upload").upload("ragged.txt", ragged.encode(), "text/plain")
    at.run()
    note = next(t for t in texts(at.warning) if "many different lengths" in t)
    assert "Data page's reading options" in note and "`" not in note
    assert note.startswith("The lines have")  # a sentence, not the CLI's "warning: the …"
    # one user per line: the report counts events, and says so (5 lines: 16 events read)
    assert metrics(at)["Events read"] == "16" and metrics(at)["Events dropped"] == "0"
    assert "Rows read" not in metrics(at)
    assert any("each item on it one event" in t for t in texts(at.caption))
