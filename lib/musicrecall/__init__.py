"""musicrecall."""
