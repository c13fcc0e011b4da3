"""Say "missing" the same way for every optional part the tests need.

On a learner's machine a missing part (redis-server, Chromium) skips the tests
that need it, with a one-line reason that says how to get it. With the part's
REQUIRE_* variable set to 1 (as CI does) a missing part is an error instead.

unittest.SkipTest is used (not pytest.skip) so the same code works under pytest
and under Django's own test runner (`python manage.py test`).
"""

import os
import unittest


class RequiredPartMissing(RuntimeError):
    pass


def part_missing(reason: str, require_variable: str):
    """Skip with `reason`, or fail when `require_variable`=1. Always raises."""
    if os.environ.get(require_variable) == "1":
        raise RequiredPartMissing(
            f"{reason} ({require_variable}=1: a failure, not a skip)"
        )
    raise unittest.SkipTest(reason)
