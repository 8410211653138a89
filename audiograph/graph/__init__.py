"""Playlists as a graph: readers, co-occurrence, CSR graphs, hop distances, triplets and the neighbour sampler."""
