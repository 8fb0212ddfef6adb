from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on the two shared cores the test
    machine has, intra-op threads waiting for each other made the parity tests 6-20× slower
    (XLM-R: 6.1 s with two threads under load, 0.34 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
