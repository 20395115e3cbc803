"""Answer quality: check types and their evaluators, ``python`` checks, the pass-rate bar, the
model-vs-model trade-off and YAML suite loading. No pytest.
"""
