"""`adapter-engine bench`: ours against a seed-style baseline, measured as ratios in one run."""
