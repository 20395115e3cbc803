"""Reports of a run: terminal tables, the JSON document, the Markdown summary and plots.
No pytest.
"""
