"""What this step's tests need besides pytest and Django, in plain modules.

conftest.py turns them into pytest fixtures; tests that need a helper outside a
fixture (a server started with particular settings) import it from here.
"""
