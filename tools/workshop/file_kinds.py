"""What a file of a step is, told by its path in the step folder.

The lesson checks count a lesson's size by it, a refactor step's tests are told by
it, diffs show a step's files in its order, and `make start` names the files a
learner writes by it.
"""

from pathlib import PurePosixPath


def is_documentation(name: str) -> bool:
    return name.endswith(".md")


def is_migration(name: str) -> bool:
    return "/migrations/" in f"/{name}"


def is_test_module(name: str) -> bool:
    """The tests themselves: anything in a tests/ folder, tests.py, test_*.py."""
    path = PurePosixPath(name)
    return (
        "tests" in path.parts[:-1]
        or path.name == "tests.py"
        or (path.name.startswith("test_") and path.suffix == ".py")
    )


def is_test_support(name: str) -> bool:
    """What the tests run on: testsupport/, the conftest.py fixtures, pytest.ini."""
    path = PurePosixPath(name)
    return path.parts[0] == "testsupport" or path.name in ("conftest.py", "pytest.ini")


def is_test_file(name: str) -> bool:
    """The tests and what they run on: a refactor step keeps all of it identical."""
    return is_test_module(name) or is_test_support(name)


def is_code(name: str) -> bool:
    """The application: what a learner writes in a lesson (the test support and the
    tests come with the step)."""
    return not (is_documentation(name) or is_test_file(name) or is_migration(name))


def counts_in_lesson_size(name: str) -> bool:
    """What a learner reads or runs: everything but documentation, test modules and
    migrations (so the test support, conftest.py and pytest.ini count)."""
    return not (is_documentation(name) or is_test_module(name) or is_migration(name))


def lesson_order(name: str) -> tuple[int, str]:
    """Code first, then migrations, tests and the README: how a diff is shown."""
    if is_code(name):
        return (0, name)
    if is_migration(name):
        return (1, name)
    if is_test_file(name):
        return (2, name)
    return (3, name)
