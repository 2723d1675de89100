"""The three tabs of the main screen, each owning its widgets, workers and state."""
