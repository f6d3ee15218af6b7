"""The root of the errors a user can fix: ``detdistill`` prints any of them as one line (``--debug``: traceback).

It subclasses ``ValueError`` so code that caught ``ValueError`` before keeps working.
"""


class DetDistillError(ValueError):
    """Bad input or settings; the message names the file, the field (or config key) and the value."""
