"""The course's figures, one module per lesson, on the shared plotting helpers (plotting)."""
