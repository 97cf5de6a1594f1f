"""One top-to-bottom function per stage of the method."""
