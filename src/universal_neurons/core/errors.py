"""One exception type for bad input: its message is a single line naming the problem and the fix."""


class UserError(Exception):
    """Raised for bad input or a missing prerequisite; the CLI prints it as one line, no traceback."""
