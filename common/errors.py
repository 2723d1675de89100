"""Errors that mean "the user's input is wrong": the CLI prints them on one line, exit 2."""


class UserInputError(Exception):
    """Bad input from the user (a flag, a file, a config). The message says what and how to fix."""


class ConfigError(UserInputError):
    """adapters.toml is invalid; the message names the table and key."""


class CheckpointError(UserInputError):
    """A checkpoint or .pt file cannot be loaded safely."""


class DataError(UserInputError):
    """A dataset is missing, malformed or inconsistent."""
