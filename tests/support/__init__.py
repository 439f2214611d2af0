"""Test helpers behind the fixtures in tests/conftest.py."""
