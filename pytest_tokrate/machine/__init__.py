"""What the measurements ran on: hardware fingerprint, GPU telemetry, CPU load probe, and the
machine reference with the figures adjusted by it. No pytest.
"""
