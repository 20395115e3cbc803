"""The regression gate: the statistical rule, its wording as findings, and the baseline store with
its records. No pytest.
"""
