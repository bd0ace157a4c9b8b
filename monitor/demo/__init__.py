"""The simulated stack behind `monitor demo`; the tests use the same services."""
