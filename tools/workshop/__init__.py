"""Tooling shared by every step: the step runner, test fixtures and helpers.

Lives in one place (not copied into each step) and is put on the path of the
workshop's virtual environment by tools/bootstrap.sh.
"""
