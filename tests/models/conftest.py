"""A tiny embedded diffusion model, trained once per session, for the engine and editing tests."""
import pytest

from tests.models.tiny_ldm import train_tiny


@pytest.fixture(scope="session")
def embedded(tmp_path_factory, digits):
    """A tiny embedded model trained for a few steps on 3 digit classes, saved as a pipeline folder."""
    return train_tiny(digits, tmp_path_factory.mktemp("embedded"), per_class=12)
