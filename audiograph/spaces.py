"""The names of the vector spaces audiograph fills (a store holds any other name too)."""

DESCRIPTORS_SPACE = "descriptors"
ACOUSTIC_SPACE = "acoustic"
MUSIG_SPACE = "musig"
POPULARITY_SPACE = "popularity"  # popularity imported from a CSV
