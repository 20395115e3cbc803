"""The pure core: samples and metric formulas, summaries and statistics, the runner, sanity rules,
sweeps and their levels, settings resolution, the token yardstick, findings. No pytest, no network.
"""
