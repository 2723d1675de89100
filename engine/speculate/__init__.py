"""Measured speculative decoding: a run's adapter drafts for a real verifier in a draft–verify
loop (loop.py), checked and timed against the verifier alone (run.py); options.py is the
torch-free contract of its options and queue jobs."""
