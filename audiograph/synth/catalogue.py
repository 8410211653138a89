"""The catalogue: genres of uneven size, artists with their own variant of the genre's style, albums and tracks
with their formats and latent factors (energy, valence, popularity)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from audiograph.synth.genres import Style
from audiograph.synth.names import ALBUM_FORMS, ARTIST_FORMS, TITLE_FORMS, unique_name
from audiograph.synth.style_space import PARAMETER_RANGES, style_vector, with_vector

FORMATS = {  # share of the tracks, {sample rate: probability}, probability of stereo
    # MP3s lean to low rates and mono: LAME's encoding time dominates the run otherwise.
    "mp3": (0.7, {16000: 0.45, 22050: 0.35, 32000: 0.12, 44100: 0.08}, 0.1),
    "wav": (0.1, {22050: 0.2, 44100: 0.5, 48000: 0.3}, 0.8),
    "flac": (0.1, {32000: 0.2, 44100: 0.4, 48000: 0.4}, 0.8),
    "ogg": (0.1, {22050: 0.3, 32000: 0.2, 44100: 0.5}, 0.6),
}
_ARTIST_SPREAD = 0.05  # standard deviation of an artist's style offset, in unit parameter space


@dataclass(frozen=True)
class Artist:
    """An artist of one genre, playing a slight variation of its style in a usual key and tempo."""

    name: str
    genre: int
    style: Style  # the genre's style with this artist's offsets
    tempo: float  # bpm at energy 0.5
    root: int  # MIDI root of the artist's usual key
    lead_octave: int  # semitones from the root up to the melody
    valence_bias: float
    popularity: float


@dataclass(frozen=True)
class Track:
    """One planned file: where it goes, its tags, its latent factors and its audio format."""

    index: int  # seeds the track's rendering
    path: str  # relative to audio/, with forward slashes
    title: str
    artist: Artist
    album: str
    year: int
    number: int
    energy: float
    valence: float
    popularity: float  # unnormalised: heavy-tailed, popular artists first
    duration: float  # seconds requested
    format: str
    sample_rate: int
    channels: int

    def tags(self) -> dict[str, str]:
        """The tags written into the file."""
        return {
            "title": self.title,
            "artist": self.artist.name,
            "album": self.album,
            "genre": self.artist.style.name,
            "tracknumber": str(self.number),
            "date": str(self.year),
        }


def plan_catalogue(styles: list[Style], count: int, seconds: float, rng: np.random.Generator) -> list[Track]:
    """Genres of uneven size, each of artists with 1-3 albums of 2-7 tracks; formats and latent factors."""
    formats = _formats(count, rng)
    artist_names: set[str] = set()
    tracks: list[Track] = []
    for genre, (style, size) in enumerate(zip(styles, _split(count, rng.uniform(0.6, 1.4, len(styles))), strict=True)):
        left = size
        while left:
            artist = _make_artist(style, genre, artist_names, rng)
            albums = _plan_albums(style, artist, left, formats, seconds, len(tracks), rng)
            tracks += albums
            left -= len(albums)
    return tracks


def _plan_albums(
    style: Style,
    artist: Artist,
    most: int,
    formats: list[str],
    seconds: float,
    first_index: int,
    rng: np.random.Generator,
) -> list[Track]:
    """The tracks of 1-3 albums by `artist`, at most `most`, numbered on from `first_index`.

    `formats` holds the format of every track in the catalogue, by index.
    """
    tracks: list[Track] = []
    album_names: set[str] = set()
    for _ in range(rng.integers(1, 4)):
        album = unique_name(rng, ALBUM_FORMS, album_names)
        year = int(rng.integers(1965, 2025))
        titles: set[str] = set()
        for number in range(1, min(most - len(tracks), rng.integers(2, 8)) + 1):
            title = unique_name(rng, TITLE_FORMS, titles)
            index = first_index + len(tracks)
            fmt = formats[index]
            _, rates, stereo = FORMATS[fmt]
            tracks.append(
                Track(
                    index=index,
                    path=f"{artist.name}/{album}/{number:02d} {title}.{fmt}",
                    title=title,
                    artist=artist,
                    album=album,
                    year=year,
                    number=number,
                    energy=rng.beta(2 + 4 * style.energy_bias, 2 + 4 * (1 - style.energy_bias)),
                    valence=rng.beta(2 + 4 * artist.valence_bias, 2 + 4 * (1 - artist.valence_bias)),
                    popularity=artist.popularity * rng.lognormal(0, 0.6),
                    duration=seconds * rng.uniform(0.75, 1.25),
                    format=fmt,
                    sample_rate=int(rng.choice(list(rates), p=list(rates.values()))),
                    channels=2 if rng.random() < stereo else 1,
                )
            )
        if len(tracks) == most:
            break
    return tracks


def _split(total: int, weights: np.ndarray) -> list[int]:
    """`total` split in proportion to `weights`, at least 1 each (largest-remainder rounding)."""
    shares = weights / weights.sum() * (total - len(weights))
    sizes = np.floor(shares).astype(int)
    sizes[np.argsort(sizes - shares)[: total - len(weights) - sizes.sum()]] += 1
    return (sizes + 1).tolist()


def _formats(count: int, rng: np.random.Generator) -> list[str]:
    """Formats in their shares, shuffled: at least one of each from ten tracks on."""
    minor = {f: round(share * count) for f, (share, _, _) in FORMATS.items() if f != "mp3"}
    formats = ["mp3"] * (count - sum(minor.values())) + [f for f, n in minor.items() for _ in range(n)]
    return [formats[i] for i in rng.permutation(count)]


def _make_artist(style: Style, genre: int, taken: set[str], rng: np.random.Generator) -> Artist:
    varied = with_vector(style, style_vector(style) + rng.normal(0, _ARTIST_SPREAD, len(PARAMETER_RANGES)))
    if rng.random() < 0.3:  # this artist plays the melody on the chord instrument
        varied = replace(varied, lead=varied.chords)
    return Artist(
        name=unique_name(rng, ARTIST_FORMS, taken),
        genre=genre,
        style=varied,
        tempo=rng.uniform(*varied.tempo),
        root=int(rng.integers(varied.root[0], varied.root[1] + 1)),
        lead_octave=int(rng.choice((24, 36), p=(0.7, 0.3))),
        valence_bias=rng.uniform(0.3, 0.7),
        popularity=rng.lognormal(0, 1.0),
    )
