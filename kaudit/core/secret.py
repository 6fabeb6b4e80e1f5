"""A string that shows as *** when printed: passwords and tokens in commands and messages."""


class Secret(str):
    """A string that shows as *** when printed in a command line or message."""

    def masked(self) -> str:
        return "***"
