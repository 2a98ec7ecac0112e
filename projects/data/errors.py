"""The one exception type for malformed dataset files, so callers (and users) see which file is wrong."""


class DatasetFormatError(ValueError):
    """A dataset/annotation/results file is missing, unreadable or does not follow the YouTube-VIS format."""

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
