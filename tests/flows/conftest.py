"""The end-to-end tests run real flows on one temporary Prefect API (tests/conftest.py)."""
import pytest


@pytest.fixture(scope="session", autouse=True)
def _prefect(prefect_server):
    yield
