"""Protocol analyzer tests."""
