"""A synthetic music collection with ground truth, for tests, demos and experiments.

`synthesize` writes, under OUT_DIR:

    audio/<Artist>/<Album>/<NN> <Title>.<ext>   procedurally rendered tracks: MP3 (~70 %), WAV, FLAC and
                                                 OGG Vorbis at mixed rates, mono and stereo, tagged inside
    playlists/<NNN> <Name>.m3u8                  entries relative to the playlist file
    tracks.csv                                   ground truth of every good track
    faults.csv                                   with_faults only: path,kind of every deliberately broken entry
    .audiograph-synth                            the arguments; marks the folder as synth output to replace

Music model. Each genre is a `Style`: tempo range, drum groove, harmony (scales, progressions, chord
voicing), three instrument timbres (harmonic rolloff, odd/even balance, bell partials, FM, chorus
detune, vibrato, envelope), distortion drive, drum level and colour, and reverb. The first eight
genres are hand-designed archetypes; further genres are drawn far apart in the same parameter space.
Artists vary their genre's style slightly and have their own key and tempo; every track has its own
melody and progression. Two latent factors cut across genres: energy (tempo about +-15 %, drum
velocity and ghost notes, brightness, distortion, loudness) and valence (major or minor scale,
register). Both are in tracks.csv, so a genre is recognisable from audio while single descriptors
such as tempo or spectral centroid overlap between genres.

Playlists come from a latent taste model: heavy-tailed track popularity (popular artists, popular
tracks) drives which tracks are drawn; ~60 % of playlists follow one genre (genres themselves have
skewed popularity; some prefer an energy range or an artist), ~20 % mix 2-3 genres and ~20 % gather
high or low energy or valence from every genre. So co-occurrence is genre-aligned only in part.
Coverage: after the draws, every good track still in no playlist is appended to the shortest
playlist whose pool admits it, up to `playlists.MAX_PLAYLIST_LENGTH` entries and half the catalogue. Every
track therefore ends up in a playlist unless the playlists cannot hold the catalogue (roughly
tracks > playlists * 100) or there are fewer playlists than genres; `SynthResult.unplaylisted`
counts the tracks left out. The duplicate copy written by `with_faults` is never put in a playlist.

Modules, in the order of the pipeline: `genres` (the recipes and archetypes), `style_space` (drawing
further genres and artists' variations), `names`, `catalogue` (artists, albums, tracks), `compose` (notes),
`render` (audio), `audio_files` (encoding and tags), `faults`, `playlists`, and `collection` (`synthesize`).
"""

from audiograph.synth.collection import FAULT_COLUMNS, TRACK_COLUMNS, SynthResult, synthesize
from audiograph.synth.genres import ARCHETYPES, Style, Timbre

__all__ = ["ARCHETYPES", "FAULT_COLUMNS", "TRACK_COLUMNS", "Style", "SynthResult", "Timbre", "synthesize"]
