"""Making chain-of-thought training data (`reftune annotate`): sources, verification, journal."""
