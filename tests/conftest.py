"""Shared fixtures: the smoke profile's data and zoo (built by `make book PROFILE=smoke`, else here)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
    from universal_neurons.data import prepare, tokenizer_dir

    train, heldout = prepare(smoke, progress=False)
    return train, heldout, tokenizer_dir(smoke, progress=False)


@pytest.fixture(scope="session")
def smoke_zoo(smoke, smoke_data):
    from universal_neurons.zoo import train_zoo

    return train_zoo(smoke, progress=False)
