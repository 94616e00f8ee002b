"""One error type for everything a person can get wrong; its message is one line."""


class ConfigError(Exception):
    """Bad stack config, bad sha file or bad CLI argument.

    The message names the key or argument, says what is wrong and, where it helps,
    shows a valid example. It is printed as a single line and the process exits non-zero.
    """

    def __init__(self, key: str, problem: str, example: str | None = None):
        self.key = key
        self.problem = problem
        self.example = example
        text = f"{key}: {problem}"
        if example:
            text += f" (example: {example})"
        super().__init__(" ".join(text.split()))  # never more than one line
