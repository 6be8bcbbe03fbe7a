"""Retrieval: candidate sources, filters, fusion and the recommender API."""
