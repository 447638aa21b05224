"""Real-model zoo: scripts that build and export models into a cache folder (never committed)."""
