"""adapter-tui: the Textual app. Never imports torch (it must start in well under a second)."""
