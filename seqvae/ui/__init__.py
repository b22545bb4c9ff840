"""Helpers shared by the dashboard's pages: session state, safe text, charts.

The only part of the package that imports Streamlit; the library proper never does.
"""
