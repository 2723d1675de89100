"""The bottom layer: what every package of the project shares and nothing else. Imports nothing
of ours and no torch, textual or plotext: `adapters`, `engine` and `tui` build on it."""
