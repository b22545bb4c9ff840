"""seqvae dashboard: the entry point (`make run`, or `streamlit run app.py`).

Routes between the pages with `st.navigation` and draws the sidebar that always shows the data in
use and the next step. Pages are thin: they call the library. Nothing heavy is imported here, so
the first page load stays fast.
"""

import streamlit as st

from seqvae.ui import state
from seqvae.ui.text import escape_markdown

st.set_page_config(page_title="seqvae", page_icon="🧭", layout="wide")

pages = [
    st.Page("pages/data.py", title="Data", icon="📄", default=True),
]
page = st.navigation(pages)

# The page runs first, so that the sidebar shows what the page just loaded.
page.run()

with st.sidebar:
    st.markdown("### seqvae")
    st.caption("User representations from behaviour logs")
    current = state.dataset()
    if current is None:
        st.info("**Data:** none loaded yet.\n\n**Next:** load the sample or upload a log on the "
                "Data page.")
    else:
        summary = current.log.summary()
        st.success(
            f"**Data:** {escape_markdown(current.name)}  \n"
            f"{summary['users']:,} users · {summary['items']:,} items · "
            f"{summary['events']:,} events"
        )
        st.caption("**Next:** check the column mapping and the ingest report.")
