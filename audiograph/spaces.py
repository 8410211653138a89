"""The names of the vector spaces audiograph fills (a store holds any other name too), and the kinds of
model that fill them."""

import hashlib

DESCRIPTORS_SPACE = "descriptors"
ACOUSTIC_SPACE = "acoustic"
MUSIG_SPACE = "musig"
GRAPHSAGE_SPACE = "graphsage"  # single-task MUSIG (`--task-weights graphsage`)
POPULARITY_SPACE = "popularity"  # popularity imported from a CSV

ACOUSTIC_KIND = "audio-encoder"
MUSIG_KIND = "musig"
DESCRIPTORS_KIND = "descriptors"  # fixed descriptors of the audio, no weights
IMPORT_KIND = "import"  # vectors imported from a CSV, no weights

MODEL_KINDS = (ACOUSTIC_KIND, MUSIG_KIND, DESCRIPTORS_KIND, IMPORT_KIND)

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

# A space's name also names its search caches' folder (`<store>.index/<space>/`).
MAX_SPACE_NAME = 100


def is_plain_space_name(space: str) -> bool:
    """Whether `space` is a name a new space may take: 1 to 100 characters, none of them a path separator or a
    control character, and not "." or ".." (so it is one folder name, and prints as one line)."""
    return (
        isinstance(space, str)
        and 0 < len(space) <= MAX_SPACE_NAME
        and space not in (".", "..")
        and not any(c in "/\\" or ord(c) < 32 or 127 <= ord(c) < 160 for c in space)
    )


def space_folder_name(space: str) -> str:
    """The folder name of `space`'s caches: the name itself when plain, else a digest of it (a store from
    elsewhere may hold any name, and a name such as "../x" or "/home" must not choose where files go)."""
    if is_plain_space_name(space):
        return space
    return "space-" + hashlib.sha256(str(space).encode("utf-8", "surrogatepass")).hexdigest()[:16]
