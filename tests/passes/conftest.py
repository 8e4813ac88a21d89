"""The pass tests run with GRAPHC_VERIFY=1: every pass is followed by graph.verify() and a spot check."""
import pytest


@pytest.fixture(autouse=True)
def _verify_every_pass(monkeypatch):
    monkeypatch.setenv("GRAPHC_VERIFY", "1")
