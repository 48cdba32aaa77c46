"""Helpers every layer may import (they import nothing else of the project): atomic file writes and
typed configuration with one override syntax."""
