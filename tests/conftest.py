"""Shared fixtures: the smoke profile's data and zoo (built by `make book PROFILE=smoke`, else here)."""

import os
from collections import Counter

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


SLOW_FIXTURES = {"smoke_zoo", "smoke_data"}  # a test that needs the smoke profile's data or zoo builds it if missing


def pytest_collection_modifyitems(items):
    """Tests that need the smoke zoo or its data are `slow` (they build them when missing: about a minute). The files
    that hold `long` tests come first, the most first (each in its own order), so that `make test`'s workers, dealt
    whole files in this order (pytest-xdist's loadfile), do not end with one of them running alone."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    longs = Counter(item.path for item in items if item.get_closest_marker("long"))
    items.sort(key=lambda item: -longs[item.path])  # the most `long` tests first; stable: within a file, its order


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is fastest and immune to other processes competing for the cores; the
    setting is restored for the other test files."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def smoke():
    from universal_neurons import load_profile

    return load_profile("smoke")


@pytest.fixture(scope="session")
def smoke_data(smoke):
    from universal_neurons.data.prepare import prepare, tokenizer_dir

    train, heldout = prepare(smoke, progress=False)
    return train, heldout, tokenizer_dir(smoke, progress=False)


@pytest.fixture(scope="session")
def smoke_zoo(smoke, smoke_data):
    from universal_neurons.models.zoo import train_zoo

    return train_zoo(smoke, progress=False)
