"""Scoring what a model wrote: the ReFT reward, the one check of a chain of thought, and choosing among
samples (majority vote, pass@k, reranking). Pure functions over texts and answers: no torch, no model."""
