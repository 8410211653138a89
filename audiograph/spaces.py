"""The names of the vector spaces audiograph fills (a store holds any other name too), and the kinds of
model that fill them."""

DESCRIPTORS_SPACE = "descriptors"
ACOUSTIC_SPACE = "acoustic"
MUSIG_SPACE = "musig"
GRAPHSAGE_SPACE = "graphsage"  # single-task MUSIG (`--task-weights graphsage`)
POPULARITY_SPACE = "popularity"  # popularity imported from a CSV

ACOUSTIC_KIND = "audio-encoder"
MUSIG_KIND = "musig"
DESCRIPTORS_KIND = "descriptors"  # fixed descriptors of the audio, no weights
IMPORT_KIND = "import"  # vectors imported from a CSV, no weights

# The kind of model each of audiograph's own spaces holds: no other kind may fill it.
SPACE_KINDS = {
    DESCRIPTORS_SPACE: DESCRIPTORS_KIND,
    ACOUSTIC_SPACE: ACOUSTIC_KIND,
    MUSIG_SPACE: MUSIG_KIND,
    GRAPHSAGE_SPACE: MUSIG_KIND,
}

# The command that makes (or makes again) the vectors of each kind of model.
REMAKE_COMMANDS = {
    DESCRIPTORS_KIND: "embed-audio",
    ACOUSTIC_KIND: "embed-audio",
    MUSIG_KIND: "embed-musig",
    IMPORT_KIND: "import-tracks",
}
